"""Data sets for training, search and export: one entry point, `load_dataset(spec, data_dir)`.

``spec`` is one of

* ``"demo"`` — the default, needs no download: digits pasted on photos (`ofa_tf.data.demo`).
* ``"folder"`` — ``data_dir/train/<class>/*.jpg|jpeg|png`` and ``data_dir/val/<class>/*`` (the
  ImageNet layout). A corrupt or unreadable file is logged with its path and skipped.
* ``"tfds:NAME"`` — a TFDS data set already prepared in ``data_dir``; downloads only with
  ``download=True``.

Preprocessing is the reference's: Inception random-resized-crop (+ optional horizontal flip) for
training, resize the shorter side to ``image_size / 0.875`` and centre crop for evaluation, then
``(pixel / 255 - mean) / std`` with the `DatasetInfo` mean and std, which are saved with every
checkpoint so export can reproduce the input normalization.

Modules: `info` (DatasetInfo, constants), `preprocess`, `pipelines` (ImageSource and the tf.data
pipelines), `folders`, `tfds`, `arrays` (in-memory), `demo` (the embedded renderer).
"""

from __future__ import annotations

import os

from ofa_tf.data.arrays import ArraySource
from ofa_tf.data.decoding import decode_image_checked
from ofa_tf.data.demo import DemoSource, demo_arrays
from ofa_tf.data.folders import FolderSource
from ofa_tf.data.info import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from ofa_tf.data.pipelines import (ImageSource, make_eval_dataset, make_train_dataset,
                                   shuffled_indices)
from ofa_tf.data.preprocess import (eval_resize_size, normalize, preprocess_for_eval,
                                    preprocess_for_train)
from ofa_tf.data.tfds import TfdsSource

__all__ = ["ArraySource", "DatasetInfo", "DemoSource", "FolderSource", "IMAGENET_MEAN", "IMAGENET_STD",
           "ImageSource", "TfdsSource", "decode_image_checked", "demo_arrays", "eval_resize_size",
           "load_dataset", "make_eval_dataset", "make_train_dataset", "normalize", "preprocess_for_eval",
           "preprocess_for_train", "shuffled_indices"]



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
