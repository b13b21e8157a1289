"""Validate a latency lookup table: predicted against measured end-to-end latency of random subnets.

    python -m android_bench.validate --backend=host --space=mbv3_w1.0 --table=host160 --n=30

Draws ``--n`` distinct random subnets (fixed by ``--seed``) at the resolutions the table covers
completely, predicts each one's latency with ``ofa_tf.nas.efficiency.latency_predictor`` (the
search's own predictor: the sum of the entries of the ops it runs), exports it whole as a
float32 .tflite (batch 1) and measures it with the same backend and settings as the table.
Each measurement is appended to ``<out_dir>/measurements.jsonl`` as it finishes (a re-run
resumes). For a table made by ``android_bench.calibrate``, the subnets it was calibrated on
are never drawn. Writes ``report.md`` (table, MAPE, Spearman), ``report.json`` and ``latency_scatter.png``
(predicted vs measured with the y = x line).
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
    flags.DEFINE_integer("n", 30, "Random subnets to measure.")
    flags.DEFINE_integer("seed", 0, "Seed of the subnet sample.")
    flags.DEFINE_string("out_dir", None, "Where the report goes (default: <table>.validation/).")


def mape_percent(predicted, measured) -> float:
    import numpy as np

    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    return float(100 * np.mean(np.abs(predicted - measured) / measured))


def spearman(predicted, measured) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(predicted, measured).statistic)


def save_scatter_plot(path: str, predicted, measured, title: str) -> None:
    """Predicted against measured latency with the y = x line, written atomically (PNG)."""
    import io

    import matplotlib

    from ofa_tf.atomic_files import atomic_write_bytes

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=120)
    low, high = 0.9 * min(min(predicted), min(measured)), 1.1 * max(max(predicted), max(measured))
    ax.plot([low, high], [low, high], c="0.5", lw=1, ls="--", label="y = x")
    ax.scatter(measured, predicted, s=18, zorder=3, label=f"{len(measured)} random subnets")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("predicted latency, sum of table entries (ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())


def write_report(out_dir: str, records: list[dict], description: dict) -> dict:
    """report.md, report.json and latency_scatter.png; returns the summary."""
    import json

    from ofa_tf.atomic_files import atomic_write_text

    predicted = [r["predicted_ms"] for r in records]
    measured = [r["measured_ms"] for r in records]
    summary = {"n": len(records), "mape_percent": mape_percent(predicted, measured),
               "spearman": spearman(predicted, measured), **description}
    lines = [f"# Latency table validation: {summary['n']} random subnets\n",
             f"MAPE {summary['mape_percent']:.2f} %, Spearman {summary['spearman']:.4f}\n",
             "| # | r | depths | predicted ms | measured ms | error % |", "|---|---|---|---|---|---|"]
    for i, r in enumerate(records):
        error = 100 * (r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"]
        lines.append(f"| {i} | {r['arch']['r'][0]} | {','.join(map(str, r['arch']['d']))} | "
                     f"{r['predicted_ms']:.3f} | {r['measured_ms']:.3f} | {error:+.1f} |")
    atomic_write_text(os.path.join(out_dir, "report.md"), "\n".join(lines) + "\n")
    atomic_write_text(os.path.join(out_dir, "report.json"),
                      json.dumps({**summary, "subnets": records}, indent=2))
    title = (f"{description.get('table', '')}: MAPE {summary['mape_percent']:.1f} %, "
             f"Spearman {summary['spearman']:.3f}")
    save_scatter_plot(os.path.join(out_dir, "latency_scatter.png"), predicted, measured, title)
    return summary


def validate_from_flags() -> None:
    import dataclasses

    from android_bench.subnet_latency import measure_subnets, sample_subnets
    from android_bench.table_meta import check_meta, measurement_settings, read_meta
    from ofa_tf.nas.efficiency import latency_predictor
    from ofa_tf.nas.latency_table import load_latency_table

    with user_input():
        if not FLAGS.table:
            raise ValueError("--table is required (a latency table from python -m android_bench.build_lut)")
        if FLAGS.n < 2:
            raise ValueError(f"--n must be at least 2 (Spearman needs pairs), got {FLAGS.n}")
        table = load_latency_table(FLAGS.table)
        resolutions = cli_flags.int_list("resolutions", FLAGS.resolutions)
        runner = cli_flags.runner_from_flags()   # the device is checked before TensorFlow loads
    with runner:
        with user_input():
            layout = cli_flags.layout_from_flags()
            check_meta(FLAGS.table, measurement_settings(layout, runner, FLAGS.statistic),
                       "validate with the backend, space and benchmark flags the table was built with")
            predictor = latency_predictor(table, layout.space, layout.n_classes)
            calibration = read_meta(FLAGS.table).get("calibration", {})
            archs = sample_subnets(predictor, FLAGS.n, FLAGS.seed, resolutions,
                                   exclude=calibration.get("archs", ()))
        out_dir = FLAGS.out_dir or FLAGS.table.rstrip("/") + ".validation"
        os.makedirs(out_dir, exist_ok=True)
        records = measure_subnets(layout, archs, predictor, runner, os.path.join(out_dir, "measurements.jsonl"),
                                  FLAGS.statistic)
        description = {"table": os.path.basename(FLAGS.table.rstrip("/")), "runner": runner.describe(),
                       "settings": dataclasses.asdict(runner.settings), "statistic": FLAGS.statistic}
    summary = write_report(out_dir, records, description)
    print(f"{summary['n']} subnets: MAPE {summary['mape_percent']:.2f} %, Spearman {summary['spearman']:.4f}; "
          f"report in {out_dir}/report.md, plot {out_dir}/latency_scatter.png")


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    return exit_code_of(validate_from_flags)


if __name__ == "__main__":
    run_absl_main(main, define_flags)
