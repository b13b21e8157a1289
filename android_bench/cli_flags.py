"""The flags ``build_lut`` and ``validate`` share (backend, device, benchmark settings, space),
and what they turn into: a ``Runner`` and a layout."""

from __future__ import annotations

import json
import os

from absl import flags

from android_bench.runner import STATISTICS, BenchmarkSettings

FLAGS = flags.FLAGS
BACKENDS = ("host", "adb")


def define_flags() -> None:
    """Define the shared flags (once). CLIs call this before parsing; modules imported only for
    their functions define no flags, so a program (or a test run) may import several CLIs."""
    if "backend" in FLAGS:
        return
    flags.DEFINE_enum("backend", "host", BACKENDS, "Where to measure: 'host' (this CPU, LiteRT) or 'adb' (a "
                      "phone, TFLite's benchmark_model).")
    flags.DEFINE_string("adb", None, "Path of the adb executable (default: adb on PATH).")
    flags.DEFINE_string("serial", None, "Serial of the device to use when several are connected.")
    flags.DEFINE_string("benchmark_binary", None, "TFLite benchmark_model binary built for the phone "
                        "(needed with --backend=adb).")
    flags.DEFINE_float("adb_timeout", 300.0, "Seconds before an adb command is given up.")
    from ofa_tf.arch.space import PRESETS

    flags.DEFINE_string("space", "mbv3_w1.0", f"Search space: a preset ({', '.join(sorted(PRESETS))}), a "
                        "trained supernet (its workdir or supernet.json) or a JSON file of a SearchSpace.")
    flags.DEFINE_integer("n_classes", None, "Classes of the classifier (default: the supernet's, else 1000).")
    flags.DEFINE_string("table", None, "Latency lookup table to read: a directory of <r>_lookup_table.yaml (one "
                        "table per resolution, the reference's form) or one YAML file for every resolution.")
    flags.DEFINE_string("out", None, "The table to write (its settings go to <out>.meta.json): build_lut writes a "
                        "directory of <r>_lookup_table.yaml and resumes an existing one; calibrate keeps "
                        "--table's form.")
    flags.DEFINE_list("resolutions", [], "Input resolutions, e.g. 160 or 128,160,192,224 (build_lut: the ones to "
                      "cover; validate: the ones to sample from, default all the table covers).")
    flags.DEFINE_integer("num_threads", 1, "CPU threads.")
    flags.DEFINE_integer("num_runs", 50, "Timed runs per model.")
    flags.DEFINE_integer("warmup_runs", 5, "Untimed runs per model before the timed ones.")
    flags.DEFINE_bool("use_gpu", False, "GPU delegate (adb only).")
    flags.DEFINE_bool("use_xnnpack", True, "XNNPACK CPU delegate.")
    flags.DEFINE_enum("statistic", "median", STATISTICS, "Which figure of the timed runs a table entry (and a "
                      "validation measurement) holds: median, mean, or min (robust on a machine shared with "
                      "other jobs, where contention only adds time).")
    flags.DEFINE_bool("enable_op_profiling", False, "benchmark_model's per-operator profile (adb only).")


def settings_from_flags() -> BenchmarkSettings:
    return BenchmarkSettings(num_threads=FLAGS.num_threads, num_runs=FLAGS.num_runs,
                             warmup_runs=FLAGS.warmup_runs, use_gpu=FLAGS.use_gpu,
                             use_xnnpack=FLAGS.use_xnnpack, enable_op_profiling=FLAGS.enable_op_profiling)


def runner_from_flags():
    """The Runner of ``--backend`` (checks the device before any model is built)."""
    settings = settings_from_flags()
    if FLAGS.backend == "host":
        from android_bench.host import HostRunner

        return HostRunner(settings)
    from android_bench.adb import AdbDevice
    from android_bench.benchmark_model import BenchmarkModelRunner

    if not FLAGS.benchmark_binary:
        raise ValueError("--backend=adb needs --benchmark_binary (TFLite's benchmark_model for the phone)")
    if os.path.isdir(FLAGS.benchmark_binary):
        raise ValueError(f"--benchmark_binary={FLAGS.benchmark_binary} is a directory, not the benchmark_model "
                         "binary")
    if not os.path.isfile(FLAGS.benchmark_binary):
        raise FileNotFoundError(f"--benchmark_binary={FLAGS.benchmark_binary} does not exist")
    device = AdbDevice(FLAGS.adb, FLAGS.serial, FLAGS.adb_timeout)
    return BenchmarkModelRunner(device, FLAGS.benchmark_binary, settings)


def layout_from_flags():
    """The layout of ``--space`` with ``--n_classes`` (a supernet's own class count by default)."""
    from ofa_tf.arch.layout import build_layout
    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.artifacts import read_supernet_meta

    spec, n_classes = FLAGS.space, None
    if os.path.isdir(spec) or os.path.basename(spec) == "supernet.json":
        model = read_supernet_meta(spec)["model"]
        space, n_classes = SearchSpace.from_dict(model["space"]), model["n_classes"]
    elif spec.endswith(".json"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"--space={spec} does not exist")
        with open(spec, encoding="utf-8") as f:
            try:
                space = SearchSpace.from_dict(json.load(f))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"--space={spec} is not a SearchSpace JSON: {err}") from None
    else:
        space = SearchSpace.preset(spec)
    return build_layout(space, FLAGS.n_classes or n_classes or 1000)


def int_list(name: str, values) -> list[int]:
    """A list flag's values as ints; one error naming the flag and the bad value."""
    out = []
    for value in values:
        try:
            out.append(int(value))
        except ValueError:
            raise ValueError(f"--{name}: {value!r} is not an integer") from None
    return out
