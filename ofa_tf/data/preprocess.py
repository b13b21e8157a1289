"""The reference's image preprocessing: Inception crop for training, centre crop for evaluation."""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from ofa_tf.data.info import (DEFAULT_RATIO, DEFAULT_SCALE, EVAL_CROP_RATIO, IMAGENET_MEAN,
                             IMAGENET_STD)


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
