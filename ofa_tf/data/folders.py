"""ImageNet-style image folders: data_dir/{train,val}/<class>/*.jpg|jpeg|png."""

from __future__ import annotations

import os

import tensorflow as tf

from ofa_tf.data.decoding import decode_image_checked
from ofa_tf.data.info import IMAGE_EXTENSIONS, IMAGENET_MEAN, IMAGENET_STD, SPLITS, DatasetInfo
from ofa_tf.data.pipelines import ImageSource, check_split, shuffled_indices

def _class_dirs(split_dir: str) -> list[str]:
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(
            f"{split_dir} is missing: an image folder needs train/<class>/*.jpg and "
            f"val/<class>/*.jpg under its root")
    names = sorted(e.name for e in os.scandir(split_dir)
                   if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise ValueError(f"{split_dir} has no class subdirectories (expected {split_dir}/<class>/)")
    return names


def _image_files(split_dir: str, classes: list[str]) -> tuple[list[str], list[int]]:
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        files = sorted(e.path for e in os.scandir(class_dir) if e.is_file()
                       and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"{class_dir} has no {'/'.join(IMAGE_EXTENSIONS)} images")
        paths += files
        labels += [label] * len(files)
    return paths, labels


class FolderSource(ImageSource):
    """``root/train/<class>/*`` and ``root/val/<class>/*``; classes = sorted train subdirs."""

    def __init__(self, root: str | os.PathLike, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image folder {root} does not exist")
        dirs = {split: os.path.join(root, split) for split in SPLITS}
        classes = _class_dirs(dirs["train"])
        val_classes = _class_dirs(dirs["val"])
        if val_classes != classes:
            missing = sorted(set(classes) - set(val_classes))
            extra = sorted(set(val_classes) - set(classes))
            raise ValueError(
                f"{dirs['val']} must have the same class subdirectories as {dirs['train']}: "
                f"missing in val: {missing}; not in train: {extra}")
        self.root = root
        self._files = {split: _image_files(dirs[split], classes) for split in SPLITS}
        self.info = DatasetInfo(
            name=f"folder:{os.path.basename(os.path.normpath(root))}", class_names=classes,
            n_train=len(self._files["train"][0]), n_val=len(self._files["val"][0]),
            mean=mean, std=std)

    def keys(self, split, seed, repeat):
        return shuffled_indices(len(self._files[check_split(split)][0]), seed, repeat)

    def decoder(self, split):
        paths, labels = self._files[check_split(split)]
        paths = tf.constant(paths, tf.string)
        labels = tf.constant(labels, tf.int32)

        def decode(index):
            path = tf.gather(paths, index)
            image, ok = decode_image_checked(tf.io.read_file(path), path)
            return image, tf.gather(labels, index), ok

        return decode
