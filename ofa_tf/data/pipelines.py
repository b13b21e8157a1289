"""tf.data pipelines over any `ImageSource`: shuffled keys, decode, augment, batch.

Training pipelines are deterministic given the seed: the epoch order is a stateless permutation
of (seed, epoch) and each element's augmentation is seeded by (seed, position in the stream), so
`skip=` reproduces a resumed stream exactly. Training batches come at one fixed (maximum) size;
the trainer resizes each batch to the resolution it samples.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import tensorflow as tf

from ofa_tf.data.info import DEFAULT_RATIO, DEFAULT_SCALE, EVAL_CROP_RATIO, SPLITS, DatasetInfo
from ofa_tf.data.preprocess import preprocess_for_eval, preprocess_for_train

AUTOTUNE = tf.data.AUTOTUNE



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
        return {"train": self.info.n_train, "val": self.info.n_val}[check_split(split)]

    def train(self, batch_size: int, image_size: int, seed: int = 0, **kwargs) -> tf.data.Dataset:
        """Augmented training batches; see `make_train_dataset`."""
        return make_train_dataset(self, batch_size, image_size, seed, **kwargs)

    def val(self, batch_size: int, image_size: int, **kwargs) -> tf.data.Dataset:
        """Validation batches, each image once, in a fixed order; see `make_eval_dataset`."""
        return make_eval_dataset(self, "val", batch_size, image_size, **kwargs)


def check_split(split: str) -> str:
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
    ds = source.keys(check_split(split), seed=None, repeat=False).enumerate()
    ds = _decoded(source, split, ds, deterministic)

    def prepare(index, image, label):
        del index
        return preprocess_for_eval(image, image_size, mean=info.mean, std=info.std,
                                   crop_ratio=crop_ratio), label

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size).prefetch(AUTOTUNE)
    return _with_options(ds, deterministic)
