"""TensorFlow Datasets sources, read from a prepared data_dir (never downloading unasked)."""

from __future__ import annotations

import os

import tensorflow as tf

from ofa_tf.data.decoding import decode_image_checked
from ofa_tf.data.info import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from ofa_tf.data.pipelines import ImageSource, check_split


class TfdsSource(ImageSource):
    """A TFDS data set prepared in `data_dir`; images stay encoded until after the shuffle."""

    def __init__(self, name: str, data_dir: str | None = None, *, download: bool = False,
                 train_split: str = "train", val_split: str | None = None,
                 image_key: str = "image", label_key: str = "label",
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, shuffle_buffer: int = 16384):
        try:
            import tensorflow_datasets as tfds  # optional extra "tfds"
        except ImportError as e:
            raise ImportError(
                f"dataset 'tfds:{name}' needs the tensorflow-datasets package: "
                f"pip install 'ofa-tf[tfds]'") from e
        self._tfds = tfds
        builder = tfds.builder(name, data_dir=data_dir)  # unknown name: a ValueError of tfds
        if not _tfds_prepared(builder):
            if not download:
                where = data_dir or "the default TFDS directory (~/tensorflow_datasets)"
                raise FileNotFoundError(
                    f"TFDS dataset {name!r} is not prepared in {where} (looked for "
                    f"{builder.data_dir}); nothing is downloaded unless asked. Prepare it once "
                    f"with `tfds build {name} --data_dir={data_dir or '~/tensorflow_datasets'}` "
                    f"(for manual-download data sets such as imagenet2012 put the archives in "
                    f"<data_dir>/downloads/manual first), or pass download=True.")
            builder.download_and_prepare()
        splits = builder.info.splits
        if val_split is None:
            val_split = next((s for s in ("validation", "test") if s in splits), None)
        sizes = {}
        for split in (train_split, val_split):
            try:  # also takes slices such as "train[:95%]"
                sizes[split] = splits[split].num_examples
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"TFDS dataset {name!r} has no split {split!r}; it has "
                                 f"{sorted(splits)} (choose with train_split=/val_split=)") from e
        label = builder.info.features[label_key]
        names = getattr(label, "names", None) or [str(i) for i in range(label.num_classes)]
        self.builder, self.name = builder, name
        self._splits = {"train": train_split, "val": val_split}
        self._keys = (image_key, label_key)
        self._buffer = shuffle_buffer
        self.info = DatasetInfo(
            name=f"tfds:{name}", class_names=names, n_train=sizes[train_split],
            n_val=sizes[val_split], mean=mean, std=std)

    def keys(self, split, seed, repeat):
        tfds, (image_key, label_key) = self._tfds, self._keys
        ds = self.builder.as_dataset(
            split=self._splits[check_split(split)], shuffle_files=seed is not None,
            decoders={image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed))
        ds = ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))
        if seed is not None:
            ds = ds.shuffle(min(self._buffer, self.split_size(split)), seed=seed)
        return ds.repeat() if repeat else ds

    def decoder(self, split):
        where = tf.constant(f"tfds:{self.name}[{self._splits[split]}]")

        def decode(key):
            data, label = key
            image, ok = decode_image_checked(data, where)
            return image, label, ok

        return decode


def _tfds_prepared(builder) -> bool:
    if hasattr(builder, "is_prepared"):
        return builder.is_prepared()
    return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))
