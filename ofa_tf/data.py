"""tf.data input pipelines: the embedded demo set, ImageNet-style image folders and TFDS.

One entry point, `load_dataset(spec, data_dir, **kwargs)`, with `spec` one of

* ``"demo"`` — the default, needs no download. Real images from declared dependencies:
  scikit-learn's bundled UCI handwritten digits (1,797 8×8 grey images, 10 classes) are
  upscaled (bilinear) to a random size, rotated a little and pasted at a random place onto a
  64×64 RGB canvas whose background is a random crop of one of scikit-image's bundled photos
  (astronaut, coffee, chelsea, rocket, …), with random colours for the digit and the background,
  pixel noise and one distractor: a fragment of another digit. Linear raw-pixel baselines score
  13–17 % on it (chance: 10 %); a plain 8-layer CNN with 75 K weights reaches ~80 % and one with
  0.66 M ~90 % (8 epochs, no augmentation), so larger subnets measurably beat small ones.
  6,000 training images are rendered from 1,497 source digits and 1,500 validation images from
  the other 300 (30 a class): no validation digit image is ever seen in training. Generation is
  deterministic (fixed seed), numpy only, ~6 s on 2 cores, cached in memory per process.
* ``"folder"`` — ``data_dir/train/<class>/*.jpg|jpeg|png`` and ``data_dir/val/<class>/*`` (the
  ImageNet layout). A corrupt or unreadable file is logged with its path and skipped.
* ``"tfds:NAME"`` — a TFDS data set already prepared in ``data_dir``; downloads only with
  ``download=True``.

Preprocessing is the reference's: Inception random-resized-crop (+ optional horizontal flip) for
training, resize the shorter side to ``image_size / 0.875`` and centre crop for evaluation, then
``(pixel / 255 - mean) / std`` with the `DatasetInfo` mean and std, which are saved with every
checkpoint so export can reproduce the input normalization. Training batches come at one fixed
(maximum) size; the trainer resizes each batch to the resolution it samples.

Training pipelines are deterministic given the seed: the epoch order is a stateless permutation
of (seed, epoch) and each element's augmentation is seeded by (seed, position in the stream), so
`skip=` reproduces a resumed stream exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_SCALE = (0.08, 1.0)
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)
EVAL_CROP_RATIO = 0.875
SPLITS = ("train", "val")
AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class DatasetInfo:
    """What a checkpoint must remember about its data: class names and input normalization.

    `mean` and `std` are per RGB channel in [0, 1]-pixel units: a model input is
    ``(pixel / 255 - mean) / std``.
    """

    name: str
    class_names: list[str]
    n_train: int
    n_val: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        self.class_names = [str(c) for c in self.class_names]
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if not self.class_names:
            raise ValueError(f"data set {self.name!r} has no classes")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, not tuples)."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        """Inverse of `to_dict`; keys it does not know are ignored so newer files still load."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


# ----------------------------------------------------------------------------- preprocessing


def normalize(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """[0, 255] pixels (any dtype) → float32 ``(x / 255 - mean) / std``."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def preprocess_for_train(image, image_size: int, seed, *, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         scale=DEFAULT_SCALE, ratio=DEFAULT_RATIO, flip: bool = True) -> tf.Tensor:
    """Inception random-resized-crop (area fraction `scale`, aspect `ratio`), optional
    horizontal flip, normalization. `seed`: int tensor of shape [2] (stateless ops, so the
    result depends on nothing but the seed)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=0.0, aspect_ratio_range=tuple(ratio), area_range=tuple(scale),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, size)
    out = tf.image.resize(crop, [image_size, image_size], method="bilinear", antialias=True)
    if flip:
        out = tf.image.stateless_random_flip_left_right(out, flip_seed)
    return normalize(out, mean, std)


def eval_resize_size(image_size: int, crop_ratio: float = EVAL_CROP_RATIO) -> int:
    """Shorter side before the centre crop, as the reference computes it (224 → 256)."""
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
    return int(math.ceil(image_size / crop_ratio))


def preprocess_for_eval(image, image_size: int, *, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        crop_ratio: float = EVAL_CROP_RATIO) -> tf.Tensor:
    """Resize the shorter side to ``ceil(image_size / crop_ratio)`` (aspect kept, longer side
    truncated as torchvision does), centre crop ``image_size``, normalize."""
    target = eval_resize_size(image_size, crop_ratio)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(hw * (target / tf.reduce_min(hw)), tf.int32)
    new_hw = tf.maximum(new_hw, target)  # the shorter side is exactly `target` despite rounding
    resized = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    offset = tf.cast(tf.round(tf.cast(new_hw - image_size, tf.float32) / 2.0), tf.int32)
    crop = tf.slice(resized, tf.concat([offset, [0]], 0), [image_size, image_size, 3])
    return normalize(crop, mean, std)


# ----------------------------------------------------------------------------- pipelines


class ImageSource:
    """A data set: `info` plus the two pipelines the trainer needs (`train`, `val`).

    Subclasses provide `keys` (a dataset of cheap per-example keys, shuffled when a seed is
    given) and `decoder` (key → uint8 image [H, W, 3], int32 label, ok flag). Shuffling keys
    rather than decoded images keeps the shuffle buffer small and the order exact.
    """

    info: DatasetInfo
    default_flip = True
    default_scale = DEFAULT_SCALE

    def keys(self, split: str, seed: int | None, repeat: bool) -> tf.data.Dataset:
        raise NotImplementedError

    def decoder(self, split: str) -> Callable[[Any], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
        raise NotImplementedError

    def split_size(self, split: str) -> int:
        return {"train": self.info.n_train, "val": self.info.n_val}[_check_split(split)]

    def train(self, batch_size: int, image_size: int, seed: int = 0, **kwargs) -> tf.data.Dataset:
        """Augmented training batches; see `make_train_dataset`."""
        return make_train_dataset(self, batch_size, image_size, seed, **kwargs)

    def val(self, batch_size: int, image_size: int, **kwargs) -> tf.data.Dataset:
        """Validation batches, each image once, in a fixed order; see `make_eval_dataset`."""
        return make_eval_dataset(self, "val", batch_size, image_size, **kwargs)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
    return split


def shuffled_indices(n: int, seed: int | None, repeat: bool) -> tf.data.Dataset:
    """0..n-1 (int64); with a seed, each epoch is a stateless permutation of (seed, epoch)."""
    if seed is None:
        ds = tf.data.Dataset.range(n)
        return ds.repeat() if repeat else ds
    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    seed = tf.constant(seed, tf.int64)

    def epoch_order(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([seed, tf.cast(epoch, tf.int64)]))
        return tf.data.Dataset.from_tensor_slices(order)

    return epochs.flat_map(epoch_order)


def _decoded(source: ImageSource, split: str, ds: tf.data.Dataset,
             deterministic: bool) -> tf.data.Dataset:
    """(tag, key) → (tag, image, label); a key that fails to decode is dropped, not raised.

    The decoder reports every file it cannot decode with its path (`decode_image_checked`).
    Whatever else fails (a file deleted after listing: TF's message names it) is dropped by
    `ignore_errors`, which logs TF's error message."""
    decode = source.decoder(split)
    ds = ds.map(lambda tag, key: (tag, *decode(key)), num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    ds = ds.filter(lambda tag, image, label, ok: ok)
    ds = ds.map(lambda tag, image, label, ok: (tag, image, label))
    return ds.ignore_errors(log_warning=True)


def _with_options(ds: tf.data.Dataset, deterministic: bool) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = deterministic
    # The only stateful op is the py_function that logs bad files; ignoring it lets the trainer
    # checkpoint the iterator.
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return ds.with_options(options)


def make_train_dataset(source: ImageSource, batch_size: int, image_size: int, seed: int, *,
                       repeat: bool = True, flip: bool | None = None,
                       scale: Sequence[float] | None = None,
                       ratio: Sequence[float] = DEFAULT_RATIO, skip: int = 0,
                       deterministic: bool = True, drop_remainder: bool = True) -> tf.data.Dataset:
    """Batches (images float32 [B, S, S, 3], labels int32 [B]) with S = `image_size`, the
    largest resolution the trainer uses (it resizes each batch to the one it samples).

    `flip` and `scale` default to the source's choice (no flip and milder crops for the digits
    demo). `skip`: examples already consumed by an interrupted run; the resumed stream is the
    same as the uninterrupted one. `drop_remainder` keeps one batch shape for the compiled step.
    """
    flip = source.default_flip if flip is None else flip
    scale = source.default_scale if scale is None else scale
    info = source.info
    ds = source.keys("train", seed=seed, repeat=repeat).enumerate()
    if skip:
        ds = ds.skip(skip)
    ds = _decoded(source, "train", ds, deterministic)
    seed_t = tf.constant(seed, tf.int64)

    def augment(index, image, label):
        element_seed = tf.stack([seed_t, tf.cast(index, tf.int64)])
        image = preprocess_for_train(image, image_size, element_seed, mean=info.mean,
                                     std=info.std, scale=scale, ratio=ratio, flip=flip)
        return image, label

    ds = ds.map(augment, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)
    return _with_options(ds, deterministic)


def make_eval_dataset(source: ImageSource, split: str, batch_size: int, image_size: int, *,
                      crop_ratio: float = EVAL_CROP_RATIO, deterministic: bool = True
                      ) -> tf.data.Dataset:
    """Batches (images float32 [B, S, S, 3], labels int32 [B]) of `split`, each example once,
    resized and centre-cropped; the last batch may be smaller."""
    info = source.info
    ds = source.keys(_check_split(split), seed=None, repeat=False).enumerate()
    ds = _decoded(source, split, ds, deterministic)

    def prepare(index, image, label):
        del index
        return preprocess_for_eval(image, image_size, mean=info.mean, std=info.std,
                                   crop_ratio=crop_ratio), label

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size).prefetch(AUTOTUNE)
    return _with_options(ds, deterministic)


# ----------------------------------------------------------------------------- decoding files

def _careful_decode(data: tf.Tensor, where: tf.Tensor):
    """Eager decode that reports failure instead of raising (runs in `tf.py_function`)."""
    try:
        return tf.io.decode_image(data, channels=3, expand_animations=False), True
    except tf.errors.OpError as e:
        reason = e.message.split("}}")[-1].split("[Op:")[0].strip() or type(e).__name__
        if not data.numpy():
            reason = "empty file"
        logging.warning("Skipping corrupt or unreadable image %s: %s",
                        where.numpy().decode("utf-8", "replace"), reason)
        return tf.zeros([1, 1, 3], tf.uint8), False


def decode_image_checked(data: tf.Tensor, where: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded bytes → (uint8 [H, W, 3], ok). A bad image gives ok=False and a warning that
    names `where` (its path), instead of an error that would end the epoch. Every file takes
    this path: a JPEG whose first and last bytes are intact can still be corrupt inside."""
    image, ok = tf.py_function(_careful_decode, [data, where], [tf.uint8, tf.bool])
    image.set_shape([None, None, 3])
    ok.set_shape([])
    return image, ok


# ----------------------------------------------------------------------------- image folders


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
        return shuffled_indices(len(self._files[_check_split(split)][0]), seed, repeat)

    def decoder(self, split):
        paths, labels = self._files[_check_split(split)]
        paths = tf.constant(paths, tf.string)
        labels = tf.constant(labels, tf.int32)

        def decode(index):
            path = tf.gather(paths, index)
            image, ok = decode_image_checked(tf.io.read_file(path), path)
            return image, tf.gather(labels, index), ok

        return decode


# ----------------------------------------------------------------------------- TFDS


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
            split=self._splits[_check_split(split)], shuffle_files=seed is not None,
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


# ----------------------------------------------------------------------------- demo data

DEMO_SIZE = 64
DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
               "immunohistochemistry", "retina", "brick", "grass", "gravel", "camera", "moon",
               "coins")
_PHOTO_SIZE = 256
_VAL_PER_CLASS = 30
_CHUNK = 32  # images rendered at once: keeps the temporaries in cache, ~3x faster than 500


class DemoArrays(NamedTuple):
    """The rendered demo set. `source_*` / `fragment_*`: index into `load_digits()` of each
    image's digit / of the digit its distractor fragment comes from."""

    x_train: np.ndarray
    y_train: np.ndarray
    source_train: np.ndarray
    fragment_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source_val: np.ndarray
    fragment_val: np.ndarray


def _area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Box-filter a [H, W, C] float image (H, W >= size) down to [size, size, C]."""
    for axis in (0, 1):
        bins = (np.arange(image.shape[axis]) * size) // image.shape[axis]
        starts = np.flatnonzero(np.diff(bins, prepend=-1))
        counts = np.diff(np.append(starts, image.shape[axis]))
        shape = [1, 1, 1]
        shape[axis] = size
        image = np.add.reduceat(image, starts, axis=axis) / counts.reshape(shape)
    return image


@functools.lru_cache(maxsize=1)
def _demo_photos() -> np.ndarray:
    """scikit-image's bundled photos as float32 [P, 256, 256, 3] in [0, 1] (centre squares)."""
    try:
        import skimage.data
    except ImportError as e:
        raise ImportError("the demo data set needs scikit-image (pip install scikit-image)") from e
    photos = []
    for name in DEMO_PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        h, w = img.shape[:2]
        s = min(h, w)
        square = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
        photos.append(_area_resize(square.astype(np.float32) / 255.0, _PHOTO_SIZE))
    return np.stack(photos).astype(np.float32)


def _bilinear(src: np.ndarray, index: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample images src[index] ([N, H, W, C]) at float pixel coordinates y, x (broadcastable
    to [m, h, w]; clamped to the image) → [m, h, w, C] float32."""
    _, h, w, c = src.shape
    flat = src.reshape(-1, c)
    y = np.clip(y, 0, h - 1).astype(np.float32)
    x = np.clip(x, 0, w - 1).astype(np.float32)
    y0 = np.minimum(y.astype(np.int32), h - 2)
    x0 = np.minimum(x.astype(np.int32), w - 2)
    fy = (y - y0.astype(np.float32))[..., None]  # float32 - int32 would promote to float64
    fx = (x - x0.astype(np.float32))[..., None]
    i00 = (index.astype(np.int32)[:, None, None] * h + y0) * w + x0
    p00, p01 = np.take(flat, i00, axis=0), np.take(flat, i00 + 1, axis=0)
    p10, p11 = np.take(flat, i00 + w, axis=0), np.take(flat, i00 + w + 1, axis=0)
    top = p00 + (p01 - p00) * fx
    return top + (p10 + (p11 - p10) * fx - top) * fy


def _glyph_alpha(glyphs, index, size, angle, cy, cx, window=None):
    """Coverage [m, S, S] of digits glyphs[index] (8×8 cells, zero-padded to 10×10) drawn
    `size` pixels wide, rotated by `angle`, centred at (cy, cx); `window` = (r0, c0, h, w) in
    cells keeps only that part of the glyph (a fragment)."""
    g = np.arange(DEMO_SIZE, dtype=np.float32) + 0.5
    per_px = (8.0 / size).astype(np.float32)[:, None, None]
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    dy = g[None, :, None] - cy.astype(np.float32)[:, None, None]
    dx = g[None, None, :] - cx.astype(np.float32)[:, None, None]
    row = (cos * dy + sin * dx) * per_px + 4.0  # glyph coordinates in cells, centre (4, 4)
    col = (cos * dx - sin * dy) * per_px + 4.0
    alpha = _bilinear(glyphs, index, row + 0.5, col + 0.5)[..., 0]  # +1 pad, -0.5 centre
    if window is not None:
        r0, c0, wh, ww = (v[:, None, None] for v in window)
        alpha = alpha * ((row >= r0) & (row < r0 + wh) & (col >= c0) & (col < c0 + ww))
    return alpha


def _ink(base: np.ndarray, dark: np.ndarray) -> np.ndarray:
    """Colours that contrast with the background: dark ink on bright ones, bright on dark."""
    return np.where(dark[:, None], 0.35 * base, 0.65 + 0.35 * base).astype(np.float32)


def _render_digits(glyphs: np.ndarray, digit: np.ndarray, fragment: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """uint8 [n, 64, 64, 3]: glyphs[digit] over a photo crop, glyphs[fragment] as distractor."""
    photos = _demo_photos()
    n, s = len(digit), DEMO_SIZE
    # Every random parameter is drawn up front, so chunking never changes the result.
    photo = rng.integers(0, len(photos), n)
    crop = rng.uniform(48, 224, n)
    y0 = rng.uniform(0, 1, n) * (_PHOTO_SIZE - 1 - crop)
    x0 = rng.uniform(0, 1, n) * (_PHOTO_SIZE - 1 - crop)
    mirror = rng.random(n) < 0.5
    contrast = rng.uniform(0.3, 1.0, n)
    tint = rng.uniform(0.4, 1.2, (n, 3))
    size = rng.uniform(26, 44, n)
    angle = np.deg2rad(rng.uniform(-15, 15, n))
    margin = 0.42 * size + 4  # the glyph stays inside the eval centre crop
    cy = margin + rng.uniform(0, 1, n) * (s - 2 * margin)
    cx = margin + rng.uniform(0, 1, n) * (s - 2 * margin)
    ink = rng.random((n, 3))
    f_size = size * rng.uniform(0.6, 1.0, n)
    f_angle = np.deg2rad(rng.uniform(-30, 30, n))
    f_cy, f_cx = rng.uniform(0, s, n), rng.uniform(0, s, n)
    f_window = (rng.integers(0, 4, n), rng.integers(0, 4, n),
                rng.integers(3, 6, n), rng.integers(3, 6, n))
    f_ink = np.where((rng.random(n) < 0.5)[:, None], ink, rng.random((n, 3)))
    noise_sd = rng.uniform(0, 0.04, n).astype(np.float32)
    noise_rng = np.random.default_rng(rng.integers(2**63))

    g = np.arange(s, dtype=np.float32) + 0.5
    out = np.empty((n, s, s, 3), np.uint8)
    for start in range(0, n, _CHUNK):
        i = slice(start, min(n, start + _CHUNK))
        step = (crop[i] / s)[:, None]
        ys = y0[i, None] + g * step - 0.5
        xs = x0[i, None] + g * step - 0.5
        xs = np.where(mirror[i, None], xs[:, ::-1], xs)
        bg = _bilinear(photos, photo[i], ys[:, :, None], xs[:, None, :])
        mean = bg.mean(axis=(1, 2), keepdims=True)
        bg = np.clip((mean + (bg - mean) * contrast[i, None, None, None])
                     * tint[i, None, None, :], 0, 1)
        dark = bg.mean(axis=(1, 2, 3)) > 0.5
        a = _glyph_alpha(glyphs, fragment[i], f_size[i], f_angle[i], f_cy[i], f_cx[i],
                         tuple(v[i] for v in f_window))[..., None]
        img = bg * (1 - a) + _ink(f_ink[i], dark)[:, None, None, :] * a
        a = np.clip(1.3 * _glyph_alpha(glyphs, digit[i], size[i], angle[i], cy[i], cx[i]),
                    0, 1)[..., None]
        img = img * (1 - a) + _ink(ink[i], dark)[:, None, None, :] * a
        img += noise_rng.standard_normal(img.shape, dtype=np.float32) * noise_sd[i, None, None,
                                                                                 None]
        out[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def demo_arrays(n_train: int = 6000, n_val: int = 1500, seed: int = 0) -> DemoArrays:
    """Render the demo set (deterministic in its arguments; cached per process, read-only).

    The source digits are split by index, 30 a class for validation, before any rendering, so
    a validation image never shows a digit image that training saw (distractors included)."""
    return _render_demo(int(n_train), int(n_val), int(seed))  # one cache key per value


@functools.lru_cache(maxsize=2)
def _render_demo(n_train: int, n_val: int, seed: int) -> DemoArrays:
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int32)
    glyphs = np.pad(digits.images / 16.0, ((0, 0), (1, 1), (1, 1)))[..., None].astype(np.float32)
    rng = np.random.default_rng([seed, 0])
    val_src = np.sort(np.concatenate([
        rng.permutation(np.flatnonzero(labels == k))[:_VAL_PER_CLASS] for k in range(10)]))
    train_src = np.setdiff1d(np.arange(len(labels)), val_src)
    out = []
    for split_id, (pool, count) in enumerate(((train_src, n_train), (val_src, n_val)), 1):
        split_rng = np.random.default_rng([seed, split_id])
        # Every source digit is rendered equally often (±1), in shuffled order.
        digit = split_rng.permutation(np.resize(split_rng.permutation(pool), count))
        fragment = split_rng.choice(pool, count)
        images = _render_digits(glyphs, digit, fragment, split_rng)
        for array in (images, labels[digit], digit, fragment):
            array.setflags(write=False)
            out.append(array)
    return DemoArrays(*out)


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images in [0, 1] units, from histograms (exact, and
    without a float64 copy of the whole set)."""
    levels = np.arange(256) / 255.0
    hist = np.stack([np.bincount(images[..., c].ravel(), minlength=256) for c in range(3)])
    p = hist / hist.sum(axis=1, keepdims=True)
    mean = p @ levels
    return mean, np.sqrt(p @ levels**2 - mean**2)


class ArraySource(ImageSource):
    """A data set held in memory as uint8 arrays [N, H, W, 3] and integer labels [N].

    For data already in numpy (and the embedded demo); normalization defaults to the training
    images' own per-channel statistics.
    """

    def __init__(self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 class_names: Sequence[str], name: str = "arrays", mean=None, std=None):
        for split, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"{split} images must be uint8 [N, H, W, 3], got {x.dtype} {list(x.shape)}")
            if len(y) != len(x):
                raise ValueError(f"{split}: {len(x)} images but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
                raise ValueError(f"{split} labels must be in [0, {len(class_names)})")
        self._splits = {"train": (x_train, y_train.astype(np.int32)), "val": (x_val, y_val.astype(np.int32))}
        if mean is None or std is None:
            stats_mean, stats_std = _channel_stats(x_train)
            mean = tuple(np.round(stats_mean, 4)) if mean is None else mean
            std = tuple(np.round(stats_std, 4)) if std is None else std
        self.info = DatasetInfo(name=name, class_names=list(class_names), n_train=len(x_train),
                                n_val=len(x_val), mean=mean, std=std)
        self._tensors: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}

    def keys(self, split, seed, repeat):
        return shuffled_indices(self.split_size(split), seed, repeat)

    def decoder(self, split):
        if split not in self._tensors:
            x, y = self._splits[_check_split(split)]
            self._tensors[split] = (tf.constant(x), tf.constant(y))
        images, labels = self._tensors[split]
        return lambda i: (tf.gather(images, i), tf.gather(labels, i), tf.constant(True))


class DemoSource(ArraySource):
    """The embedded demo set (see the module docstring), served from memory."""

    default_flip = False  # a mirrored digit is not the same digit
    default_scale = (0.5, 1.0)  # keep most of the digit in the crop

    def __init__(self, n_train: int = 6000, n_val: int = 1500, seed: int = 0):
        self.arrays = demo_arrays(n_train, n_val, seed)
        a = self.arrays
        super().__init__(a.x_train, a.y_train, a.x_val, a.y_val, [str(k) for k in range(10)], name="demo")


# ----------------------------------------------------------------------------- entry point


def load_dataset(spec: str, data_dir: str | os.PathLike | None = None, **kwargs) -> ImageSource:
    """"demo" | "folder" (root in `data_dir`) | "tfds:NAME" → an `ImageSource` with `.info`,
    `.train(...)` and `.val(...)`. `kwargs` go to the source (e.g. mean/std, download=True)."""
    if spec == "demo":
        return DemoSource(**kwargs)  # data_dir is not used: the demo is embedded
    if spec == "folder":
        if data_dir is None:
            raise ValueError("dataset 'folder' needs data_dir=<root holding train/ and val/>")
        return FolderSource(data_dir, **kwargs)
    if spec.startswith("tfds:") and len(spec) > len("tfds:"):
        return TfdsSource(spec[len("tfds:"):], None if data_dir is None else os.fspath(data_dir),
                          **kwargs)
    raise ValueError(f"unknown dataset {spec!r}: expected 'demo', 'folder' or 'tfds:NAME'")
