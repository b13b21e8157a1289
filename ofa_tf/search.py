"""Specialize a trained supernet: evolutionary search under MACs or latency budgets.

    python -m ofa_tf.search --workdir=runs/demo --constraint=mmacs=2,mmacs=4,mmacs=8
    python -m ofa_tf.search --workdir=runs/demo --constraint=latency_ms=25 --table=phone

Needs the accuracy predictor trained by ``python -m ofa_tf.nas.collect``. For each constraint
(``mmacs=<millions of MACs>`` or ``latency_ms=<ms>``, predicted from the lookup table
``--table``, from the table of each arch's resolution) it runs the reference's evolution and prints and saves the best arch with its
predicted accuracy, MACs and latency (``<output_dir>/<metric>_<value>.json``, all of them in
``search.json``) and a Pareto plot per metric (``pareto_<metric>.png``). ``--measure`` also
measures each found subnet (BN recalibrated) on the validation half the predictor never saw;
``--export=float32`` (or int8, float16, ...) hands each one to the TFLite exporter (ofa_tf.export).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ofa_tf.cli import run_absl_main  # noqa: E402
from ofa_tf.errors import user_input  # noqa: E402
from ofa_tf.nas.accuracy_dataset import EVAL_SPLITS  # noqa: E402 (no TensorFlow: it loads after the re-exec)

FLAGS = flags.FLAGS
METRICS = ("mmacs", "latency_ms")


def define_flags() -> None:
    """The CLI's flags, defined when it runs (importing this module defines none)."""
    from ofa_tf import cli_flags

    cli_flags.define_workdir_flag("Workdir of a trained supernet (supernet.json, nas/accuracy_predictor.keras).")
    cli_flags.define_data_flags("Data set for --measure and --export (default: the training one).")
    cli_flags.define_calibration_flags(help_suffix=" with --measure and --export")
    cli_flags.define_seed_flag("Seed of the evolution (same seed, same result).")
    flags.DEFINE_list("constraint", None, "Budgets, e.g. mmacs=4 or latency_ms=25; several separated by "
                      "commas (each is searched separately).")
    flags.DEFINE_string("table", None, "Latency lookup table: a directory of <r>_lookup_table.yaml (one table "
                        "per resolution, the reference's form) or one YAML file; needed for latency_ms "
                        "constraints.")
    flags.DEFINE_string("predictor", None, "Accuracy predictor (default <workdir>/nas/accuracy_predictor.keras).")
    flags.DEFINE_string("output_dir", None, "Where results and plots go (default <workdir>/search).")
    flags.DEFINE_integer("population_size", 100, "Population size (reference: 100).")
    flags.DEFINE_integer("generations", 500, "Generations, the reference's max_time_budget (500).")
    flags.DEFINE_float("parent_ratio", 0.25, "Share of the population kept as parents (reference: 0.25).")
    flags.DEFINE_float("mutation_ratio", 0.5, "Share of children made by mutation (reference: 0.5).")
    flags.DEFINE_float("arch_mutate_prob", 0.1, "Per-gene mutation probability (reference: 0.1).")
    flags.DEFINE_float("resolution_mutate_prob", 0.5, "Resolution mutation probability (reference: 0.5).")
    flags.DEFINE_bool("plot", True, "Save a Pareto plot per metric.")
    flags.DEFINE_integer("plot_samples", 2000, "Random subnets drawn as the plot's background.")
    flags.DEFINE_bool("measure", False, "Measure each found subnet's top-1 (BN recalibrated) on the odd half of "
                      "the validation split, which the accuracy dataset (val_even) never used.")
    flags.DEFINE_enum("measure_split", "val_odd", EVAL_SPLITS,
                      "Images for --measure.")
    flags.DEFINE_list("export", [], "Hand each found subnet to the TFLite exporter (ofa_tf.export) in these "
                      "modes, e.g. float32 or int8,float16 (empty: no export).")
    flags.DEFINE_string("export_dir", None, "Where exported .tflite files go (default <output_dir>/tflite).")
    flags.mark_flag_as_required("constraint")


def default_output_dir(workdir: str) -> str:
    return os.path.join(workdir, "search")


def parse_constraints(values) -> list[tuple[str, float]]:
    """``["mmacs=4", "latency_ms=25"]`` -> ``[("mmacs", 4.0), ("latency_ms", 25.0)]``."""
    out = []
    for text in values:
        metric, sep, number = text.partition("=")
        if not sep or metric.strip() not in METRICS:
            raise ValueError(f"--constraint {text!r} must be <metric>=<value> with metric one of {METRICS}")
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"--constraint {text!r}: {number!r} is not a number") from None
        if not value > 0:
            raise ValueError(f"--constraint {text!r} must be positive")
        out.append((metric.strip(), value))
    if not out:
        raise ValueError("give at least one --constraint, e.g. --constraint=mmacs=4")
    return out


def efficiency_predictors(space, n_classes: int, metrics, table_path: str | None) -> dict:
    from ofa_tf.nas.efficiency import latency_predictor, macs_predictor
    from ofa_tf.nas.latency_table import load_latency_table

    predictors = {"mmacs": macs_predictor(space, n_classes)}
    if table_path:
        predictors["latency_ms"] = latency_predictor(load_latency_table(table_path), space, n_classes)
    elif "latency_ms" in metrics:
        raise ValueError("a latency_ms constraint needs --table (a latency lookup table)")
    return predictors


def cost_or_none(predictor, arch):
    """The arch's cost, or None where the predictor cannot tell (a table without its ops)."""
    try:
        return predictor.get_efficiency(arch)
    except ValueError:
        return None


def describe(result, costs: dict) -> str:
    parts = [f"predicted top-1 {100 * result.accuracy:.2f} %"]
    parts += [f"{value:.3f} {unit}" for value, unit in costs.values() if value is not None]
    return ", ".join(parts)


def run_search(workdir: str, constraints, predictor_path: str | None, table_path: str | None,
               output_dir: str | None, seed: int, finder_kwargs: dict, plot: bool = True,
               plot_samples: int = 2000, measure=None, export=None) -> list[dict]:
    """Everything the CLI does; returns one summary dict per constraint. ``measure``: an optional
    callable arch -> measured top-1 (%); ``export``: an optional callable arch -> list of files."""
    import numpy as np

    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.artifacts import read_supernet_meta
    from ofa_tf.atomic_files import atomic_write_text
    from ofa_tf.nas.accuracy_dataset import workdir_paths
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor
    from ofa_tf.nas.evolution import EvolutionFinder

    with user_input():   # the inputs, each checked before the first search
        meta = read_supernet_meta(workdir)
        space = SearchSpace.from_dict(meta["model"]["space"])
        accuracy = AccuracyPredictor.load(predictor_path or workdir_paths(workdir)["predictor"])
        if accuracy.space != space:
            raise ValueError("the accuracy predictor was trained for another search space than the supernet's")
        predictors = efficiency_predictors(space, meta["model"]["n_classes"], {m for m, _ in constraints},
                                           table_path)
        finders = {metric: EvolutionFinder(predictors[metric], accuracy, **finder_kwargs)
                   for metric in dict.fromkeys(m for m, _ in constraints)}
        for metric, value in constraints:
            finders[metric].check_constraint(value)
        output_dir = output_dir or default_output_dir(workdir)
        os.makedirs(output_dir, exist_ok=True)
    summaries, by_metric = [], {}
    for metric, value in constraints:
        result = finders[metric].run_evolution_search(value, seed=seed)
        costs = {m: (cost_or_none(p, result.arch), p.unit) for m, p in predictors.items()}
        summary = {**result.to_dict(), **{m: c for m, (c, _) in costs.items()}}
        if measure is not None:
            summary["measured_top1"] = measure(result.arch)
        print(f"{metric} <= {value:g}: {describe(result, costs)}"
              + (f", measured top-1 {summary['measured_top1']:.2f} %" if measure else ""))
        print(f"  arch {json.dumps(result.arch)}")
        if export is not None:
            summary["exported"] = export(result.arch)
        atomic_write_text(os.path.join(output_dir, f"{metric}_{value:g}.json"), json.dumps(summary, indent=2))
        summaries.append(summary)
        by_metric.setdefault(metric, []).append(result)
    atomic_write_text(os.path.join(output_dir, "search.json"), json.dumps(summaries, indent=2))
    if plot:
        from ofa_tf.nas.pareto_plot import save_pareto_plot

        for metric, results in by_metric.items():
            finder = finders[metric]
            sample = finder.random_batch(np.random.default_rng(seed), plot_samples)
            path = os.path.join(output_dir, f"pareto_{metric}.png")
            save_pareto_plot(path, predictors[metric].predict_batch(sample), accuracy.predict_batch(sample),
                             results, f"{predictors[metric].unit} (predicted)" if metric != "mmacs"
                             else "MMACs", f"Search on {meta['data']['name']}: predicted accuracy vs {metric}")
            print(f"Pareto plot: {path}")
    print(f"results: {os.path.join(output_dir, 'search.json')}")
    return summaries


def load_trained(workdir: str):
    """The supernet, its DatasetInfo and its data set (for --measure and --export)."""
    from ofa_tf.artifacts import load_supernet
    from ofa_tf.artifacts import load_data_source

    supernet, info, _ = load_supernet(workdir)
    return supernet, info, load_data_source(workdir, info, FLAGS.dataset, FLAGS.data_dir)


def make_measure(supernet, source):
    """arch -> top-1 (%) on --measure_split, BN recalibrated (the collector's validator)."""
    from ofa_tf.nas.subnet_measurement import make_validator

    validator = make_validator(supernet, source, FLAGS.measure_split,
                               n_calibration_images=FLAGS.n_calibration_images, seed=FLAGS.seed)
    return lambda arch: validator.evaluate(arch)["top1"]


def make_export(supernet, info, source, workdir: str, modes, out_dir: str):
    """arch -> the .tflite files that ofa_tf.export's SubnetExporter wrote, one per mode."""
    from ofa_tf.errors import CheckFailed
    from ofa_tf.export import ExportCheckError, ExportSettings, SubnetExporter
    from ofa_tf.export.resume import export_or_keep

    exporter = SubnetExporter(supernet, info, source, source=os.path.abspath(workdir))
    with user_input("--export"):   # bad modes fail here, before any search
        settings = [ExportSettings(mode=m, n_bn_calibration_images=FLAGS.n_calibration_images, seed=FLAGS.seed)
                    for m in modes]

    def export(arch):
        paths = []
        for s in settings:
            try:
                with user_input():   # an existing export of other settings is refused
                    result, path = export_or_keep(exporter, arch, out_dir, s)
            except ExportCheckError as err:
                raise CheckFailed(f"verification failed, nothing written: {err}") from None
            if result is None:
                print(f"  kept {path} ({s.mode}: already exported with the same settings)")
            else:
                a = result.agreement
                print(f"  exported {path} ({result.mode}, {result.size_bytes / 1024:.0f} KiB; "
                      f"top-1 agreement with Keras {100 * a.top1_agreement:.1f} % on {a.n} images)")
            paths.append(path)
        return paths

    return export


def search_from_flags() -> None:
    with user_input():
        constraints = parse_constraints(FLAGS.constraint)
    finder_kwargs = {"population_size": FLAGS.population_size, "max_time_budget": FLAGS.generations,
                     "parent_ratio": FLAGS.parent_ratio, "mutation_ratio": FLAGS.mutation_ratio,
                     "arch_mutate_prob": FLAGS.arch_mutate_prob,
                     "resolution_mutate_prob": FLAGS.resolution_mutate_prob}
    measure = export = None
    modes = [m.strip() for m in FLAGS.export if m.strip()]
    if FLAGS.measure or modes:
        with user_input():
            supernet, info, source = load_trained(FLAGS.workdir)
        if FLAGS.measure:
            measure = make_measure(supernet, source)
        if modes:
            output_dir = FLAGS.output_dir or default_output_dir(FLAGS.workdir)
            export = make_export(supernet, info, source, FLAGS.workdir, modes,
                                 FLAGS.export_dir or os.path.join(output_dir, "tflite"))
    run_search(FLAGS.workdir, constraints, FLAGS.predictor, FLAGS.table, FLAGS.output_dir, FLAGS.seed,
               finder_kwargs, FLAGS.plot, FLAGS.plot_samples, measure, export)


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    search_from_flags()


if __name__ == "__main__":
    run_absl_main(main, define_flags)
