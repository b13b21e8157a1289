"""Measuring subnets of a trained supernet on a chosen split (BN recalibrated first).

The trainer learns from every training image, so the accuracy dataset and the final report
need images it never trained on, and the two must not be the same images either: by default the
collector measures on the even-indexed half of the validation split (``val_even``) and the
search reports its subnets on the odd-indexed half (``val_odd``). ``train`` is there for
supernets trained without some training images (the reference holds out 10K of ImageNet's).
"""

from __future__ import annotations

import time

import tensorflow as tf

from ofa_tf.data import ImageSource, make_eval_dataset
from ofa_tf.evaluation import SubnetValidator
from ofa_tf.nas.accuracy_dataset import EVAL_SPLITS

CALIBRATION_SEED_OFFSET = 7919  # the trainer's calibration stream (pipeline.py) uses seed + 7919


def eval_batches(source: ImageSource, split: str, batch_size: int, image_size: int,
                 limit: int = 0) -> tf.data.Dataset:
    """Evaluation batches of ``split`` (one of EVAL_SPLITS), each image once, in a fixed order;
    ``limit`` > 0 keeps only the first ``limit`` images."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {EVAL_SPLITS}")
    if split in ("val", "train"):
        ds = make_eval_dataset(source, split, batch_size, image_size).unbatch()
    else:
        parity = 0 if split == "val_even" else 1

        def in_half(index, example):
            return tf.equal(index % 2, parity)

        def drop_index(index, example):
            return example

        ds = source.val(batch_size, image_size).unbatch().enumerate().filter(in_half).map(drop_index)
    if limit:
        ds = ds.take(limit)
    return ds.batch(batch_size)


def make_validator(supernet, source: ImageSource, split: str, *, eval_images: int = 0,
                   n_calibration_images: int = 2000, calibration_batch_size: int = 200,
                   eval_batch_size: int = 500, seed: int = 0) -> SubnetValidator:
    """A :class:`SubnetValidator` that recalibrates on training images and measures on ``split``."""
    return SubnetValidator(
        supernet,
        calibration_data=lambda size: source.train(calibration_batch_size, size,
                                                   seed=seed + CALIBRATION_SEED_OFFSET),
        eval_data=lambda size: eval_batches(source, split, eval_batch_size, size, eval_images),
        n_calibration_images=n_calibration_images)


def collect(validator: SubnetValidator, dataset, archs, split: str) -> int:
    """Measure every arch not in ``dataset`` (an AccuracyDataset) yet, appending each result as
    soon as it is measured; returns how many were measured now."""
    todo = [a for a in archs if a not in dataset]
    other = {r.get("split") for r in dataset} - {split}
    if other:
        raise ValueError(f"{dataset.path} holds subnets measured on {sorted(other)}, not {split!r}; "
                         "use another --output")
    print(f"{len(archs) - len(todo)} of {len(archs)} subnets already measured in {dataset.path}; "
          f"measuring {len(todo)} on {split}", flush=True)
    for i, arch in enumerate(todo, 1):
        start = time.perf_counter()
        result = validator.evaluate(arch)
        seconds = time.perf_counter() - start
        dataset.append({"arch": arch, "top1": result["top1"], "top5": result["top5"],
                        "loss": result["loss"], "n_images": result["n"], "split": split,
                        "seconds": round(seconds, 3)})
        if i % 10 == 0 or i == len(todo):
            print(f"  {len(dataset)}/{len(archs)}: r={arch['r'][0]} top1 {result['top1']:.1f} % "
                  f"({seconds:.1f} s)", flush=True)
    return len(todo)
