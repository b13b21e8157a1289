"""Scale a lookup table so that its sums match whole networks measured end to end.

    python -m android_bench.calibrate --backend=host --space=mbv3_w1.0 --table=host160 \\
        --n_calibration=10 --out=host160_calibrated

Why: each op of a table is timed alone, over and over, so its weights and input stay in the
core's cache; inside a network every op's weights arrive from further away. On this host the
sum of a table's entries comes out ~15 % under the whole network, nearly the same fraction for
every subnet (BENCHMARKS.md). This measures ``--n_calibration`` random subnets end to end
(``--calibration_seed``; journaled, resumable), takes the median measured / predicted ratio
and writes the table with every entry times that ratio (``var`` times its square). The ratio
and the calibration subnets go into the new table's meta file; ``validate`` never draws those
subnets, so a validation of the calibrated table is on subnets it was not fitted to.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from android_bench import cli_flags  # noqa: E402
from ofa_tf.cli import exit_code_of, run_absl_main  # noqa: E402
from ofa_tf.errors import user_input  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This CLI's flags (defined when it runs, not when it is imported)."""
    cli_flags.define_flags()
    flags.DEFINE_integer("n_calibration", 10, "Random subnets measured end to end to fit the scale.")
    flags.DEFINE_integer("calibration_seed", 1000, "Seed of the calibration subnets (validate draws with --seed, "
                         "default 0, and skips these).")


def fitted_scale(records) -> float:
    """Median of measured / predicted over the calibration subnets."""
    import numpy as np

    return float(np.median([r["measured_ms"] / r["predicted_ms"] for r in records]))


def scaled_table(table, scale: float):
    """``table`` (of the same form: one file, or one table per resolution) with each entry's
    mean and std times ``scale`` and var times its square."""
    def scaled(entry):
        entry["mean"] = round(entry["mean"] * scale, 6)
        if "std" in entry:
            entry["std"] = round(entry["std"] * scale, 9)
        if "var" in entry:
            entry["var"] = round(entry["var"] * scale ** 2, 9)
        return entry

    return table.map_entries(scaled)


def calibrate_from_flags() -> None:
    import json

    from android_bench.subnet_latency import measure_subnets, sample_subnets
    from android_bench.table_meta import check_meta, measurement_settings, meta_path, read_meta
    from ofa_tf.atomic_files import atomic_write_text
    from ofa_tf.nas.efficiency import latency_predictor
    from ofa_tf.nas.latency_table import load_latency_table

    with user_input():
        if not FLAGS.table or not FLAGS.out:
            raise ValueError("--table (the measured table) and --out (the calibrated one) are required")
        if os.path.abspath(FLAGS.table) == os.path.abspath(FLAGS.out):
            raise ValueError("--out must differ from --table (the measured table is kept as it is)")
        if FLAGS.n_calibration < 1:
            raise ValueError(f"--n_calibration must be at least 1, got {FLAGS.n_calibration}")
        table = load_latency_table(FLAGS.table)
        runner = cli_flags.runner_from_flags()   # the device is checked before TensorFlow loads
    with runner:
        with user_input():
            layout = cli_flags.layout_from_flags()
            settings = measurement_settings(layout, runner, FLAGS.statistic)
            check_meta(FLAGS.table, settings, "calibrate with the backend, space and benchmark flags the "
                       "table was built with")
            predictor = latency_predictor(table, layout.space, layout.n_classes)
            archs = sample_subnets(predictor, FLAGS.n_calibration, FLAGS.calibration_seed,
                                   cli_flags.int_list("resolutions", FLAGS.resolutions))
        records = measure_subnets(layout, archs, predictor, runner, FLAGS.out + ".calibration.jsonl",
                                  FLAGS.statistic)
    scale = fitted_scale(records)
    meta = {**read_meta(FLAGS.table), **settings,
            "calibration": {"scale": scale, "from_table": os.path.basename(FLAGS.table),
                            "seed": FLAGS.calibration_seed, "archs": archs,
                            "ratios": [r["measured_ms"] / r["predicted_ms"] for r in records]}}
    scaled_table(table, scale).save(FLAGS.out)
    atomic_write_text(meta_path(FLAGS.out), json.dumps(meta, indent=2))
    print(f"measured / predicted over {len(records)} subnets: median {scale:.4f} (min "
          f"{min(meta['calibration']['ratios']):.4f}, max {max(meta['calibration']['ratios']):.4f}); "
          f"{len(table)} entries scaled into {FLAGS.out}")


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    return exit_code_of(calibrate_from_flags)


if __name__ == "__main__":
    run_absl_main(main, define_flags)
