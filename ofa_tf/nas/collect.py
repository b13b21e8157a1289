"""Measure subnets of a trained supernet for the accuracy predictor, then train it.

    python -m ofa_tf.nas.collect --workdir=runs/demo --n=2000

Samples ``--n`` distinct subnets (resolution included, fixed by ``--seed``), and for each one
recalibrates its BN statistics on training images and measures top-1 on ``--eval_split``,
appending one line to ``<workdir>/nas/accuracy.jsonl`` as soon as it is measured. Re-running
resumes (finished subnets are skipped; a kill loses at most the subnet in flight). Then it trains
the accuracy predictor on all measured subnets (``<workdir>/nas/accuracy_predictor.keras``) and
prints its RMSE and Kendall tau on held-out subnets.

Which images: the trainer learns from every training image, so no training image is held out.
By default subnets are measured on the even-indexed half of the validation split (``val_even``)
and the odd-indexed half (``val_odd``) stays unseen by the predictor, for reporting the searched
subnets' measured accuracy (``python -m ofa_tf.search --measure``). With real data trained
without some training images, point ``--eval_split=train`` there instead (the reference measures
on 10K held-out training images).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ofa_tf.cli import run_absl_main  # noqa: E402
from ofa_tf.errors import user_input  # noqa: E402
from ofa_tf.nas.accuracy_dataset import EVAL_SPLITS  # noqa: E402 (no TensorFlow: it loads after the re-exec)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags, defined when it runs (importing this module defines none)."""
    from ofa_tf import cli_flags

    cli_flags.define_workdir_flag("Workdir of a trained supernet (holds supernet.json).")
    cli_flags.define_data_flags("Data set (default: the one the supernet was trained on, from "
                                "<workdir>/config.json): demo, folder, tfds:NAME.")
    cli_flags.define_calibration_flags(help_suffix=", for each subnet")
    cli_flags.define_seed_flag("Seed of the subnet sample and of the predictor's train/validation split.")
    flags.DEFINE_integer("n", 2000, "How many distinct subnets to have measured in all.")
    flags.DEFINE_string("output", None, "JSONL of measured subnets (default <workdir>/nas/accuracy.jsonl).")
    flags.DEFINE_string("predictor", None,
                        "Where to save the accuracy predictor (default <workdir>/nas/accuracy_predictor.keras).")
    flags.DEFINE_bool("train_predictor", True, "Train the accuracy predictor on the measured subnets at the end.")
    flags.DEFINE_enum("eval_split", "val_even", EVAL_SPLITS,
                      "Images to measure top-1 on: val_even / val_odd (alternate halves of the validation "
                      "split), val (all of it), train (the training split, evaluation preprocessing).")
    flags.DEFINE_integer("eval_images", 0, "Use only the first this many images of --eval_split (0: all).")
    flags.DEFINE_integer("eval_batch_size", 500, "Batch size of evaluation.")
    flags.DEFINE_float("val_fraction", 0.2, "Share of measured subnets held out to validate the predictor.")
    flags.DEFINE_integer("epochs", 300, "Maximum epochs of predictor training (early stopping on the "
                         "held-out part).")


def train_predictor(space, dataset, path: str, val_fraction: float, epochs: int, seed: int):
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor

    records = list(dataset)
    predictor = AccuracyPredictor.fit(space, [r["arch"] for r in records],
                                      [r["top1"] / 100.0 for r in records],
                                      val_fraction=val_fraction, epochs=epochs, seed=seed)
    predictor.save(path)
    m = predictor.metrics
    print(f"accuracy predictor: {m['n_train']} training / {m['n_val']} held-out subnets; held-out "
          f"RMSE {100 * m['val_rmse']:.2f} points of top-1, Kendall tau {m['val_kendall_tau']:.3f} "
          f"(training RMSE {100 * m['train_rmse']:.2f}, tau {m['train_kendall_tau']:.3f})")
    print(f"saved {path}")
    return predictor


def collect_and_train() -> None:
    from ofa_tf.artifacts import load_data_source, load_supernet, read_supernet_meta
    from ofa_tf.nas.accuracy_dataset import AccuracyDataset, sample_distinct_archs, workdir_paths

    with user_input():
        if FLAGS.n < 1:
            raise ValueError(f"--n must be >= 1, got {FLAGS.n}")
        paths = workdir_paths(FLAGS.workdir)
        read_supernet_meta(FLAGS.workdir)  # clear error before the slow imports and data loading
        held_out = int(round(FLAGS.n * FLAGS.val_fraction))
        if FLAGS.train_predictor and (held_out < 2 or FLAGS.n - held_out < 2):
            raise ValueError(f"--n={FLAGS.n} with --val_fraction={FLAGS.val_fraction:g} holds out {held_out} "
                             f"subnets; the predictor needs at least 2 to train on and 2 held out (raise --n, "
                             "or pass --train_predictor=false)")
        dataset = AccuracyDataset(FLAGS.output or paths["accuracy"])
        supernet, info, _ = load_supernet(FLAGS.workdir)
        archs = sample_distinct_archs(supernet.space, FLAGS.n, FLAGS.seed)
        todo = any(a not in dataset for a in archs)
        source = load_data_source(FLAGS.workdir, info, FLAGS.dataset, FLAGS.data_dir) if todo else None
    from ofa_tf.nas.subnet_measurement import collect, make_validator

    if todo:
        validator = make_validator(supernet, source, FLAGS.eval_split, eval_images=FLAGS.eval_images,
                                   n_calibration_images=FLAGS.n_calibration_images,
                                   calibration_batch_size=FLAGS.calibration_batch_size,
                                   eval_batch_size=FLAGS.eval_batch_size, seed=FLAGS.seed)
        collect(validator, dataset, archs, FLAGS.eval_split)
    else:
        print(f"all {len(archs)} subnets already measured in {dataset.path}")
    if FLAGS.train_predictor:
        train_predictor(supernet.space, dataset, FLAGS.predictor or paths["predictor"],
                        FLAGS.val_fraction, FLAGS.epochs, FLAGS.seed)


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    collect_and_train()


if __name__ == "__main__":
    run_absl_main(main, define_flags)
