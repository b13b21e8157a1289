"""In-memory data sets (uint8 numpy arrays), normalized by their own channel statistics."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ofa_tf.data.info import DatasetInfo
from ofa_tf.data.pipelines import ImageSource, check_split, shuffled_indices


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
            x, y = self._splits[check_split(split)]
            self._tensors[split] = (tf.constant(x), tf.constant(y))
        images, labels = self._tensors[split]
        return lambda i: (tf.gather(images, i), tf.gather(labels, i), tf.constant(True))
