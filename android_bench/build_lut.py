"""Build a latency lookup table: time every distinct op of a search space on a phone or the host.

    python -m android_bench.build_lut --backend=host --space=mbv3_w1.0 --resolutions=160 --out=host160
    python -m android_bench.build_lut --backend=adb --benchmark_binary=benchmark_model \\
        --space=runs/demo --resolutions=32,48,64 --out=phone

Each op (stem, every MBConv variant by input size, kernel, expand, stride, shortcut, SE and
activation, and the four head ops; for a ResNet space every stem conv, max pool, bottleneck and
classifier by its widths) is exported alone as a float32 .tflite with a batch of 1 and timed by
the backend. ``--out`` is a directory in the reference's form: one table per
resolution, ``<r>_lookup_table.yaml`` (``key: {count, mean, var}``, ms; mean = median of the
timed runs), each holding every op a subnet at that resolution runs. An op that several
resolutions share (the same key) is measured once and written into each of their tables. A
table is rewritten atomically after each op it gains: re-running the same command skips the
finished keys, so a crash or a kill loses at most the op in flight. Settings live next to the
directory (``<out>.meta.json``); resuming with different ones is refused.

Per-invoke overhead: a network is one invoke, but the table times each op in its own invoke.
The builder times a trivial one-op model first and stores every entry net of that overhead
(the figure is in the meta file), so a sum of entries does not count it once per op.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from android_bench import cli_flags  # noqa: E402
from ofa_tf.cli import exit_code_of, run_absl_main  # noqa: E402
from ofa_tf.errors import user_input  # noqa: E402

FLAGS = flags.FLAGS

def trivial_model():
    """One RELU on a single number: what an invoke costs when the op itself costs nothing."""
    import keras

    inputs = keras.Input((1, 1, 1), batch_size=1, name="input")
    return keras.Model(inputs, keras.layers.ReLU(name="relu")(inputs), name="invoke_overhead")


def build_table(layout, resolutions, out: str, runner, statistic: str = "median") -> dict:
    """Measure the ops of ``layout`` at ``resolutions`` that the tables in directory ``out``
    lack; returns ``{resolution: entries}`` (``statistic`` of each op's timed runs, in ms)."""
    import json
    import tempfile

    import keras

    from android_bench.op_models import table_ops
    from android_bench.progress import Progress
    from android_bench.table_meta import check_meta, measurement_settings, meta_path
    from ofa_tf.atomic_files import atomic_write_text
    from ofa_tf.export import to_tflite
    from ofa_tf.nas.latency_table import entries_yaml, load_latency_table, table_file, table_files

    if os.path.isfile(out):
        raise ValueError(f"--out {out} is a file; it must be a directory (it gets one "
                         "<r>_lookup_table.yaml per resolution)")
    ops = table_ops(layout, resolutions)
    needed = {r: {op.key for op in table_ops(layout, [r])} for r in resolutions}
    wanted = measurement_settings(layout, runner, statistic)
    meta = check_meta(out, wanted, "use another --out, or the same flags to resume")
    tables = dict(load_latency_table(out).tables) if os.path.isdir(out) and table_files(out) else {}
    tables = {r: dict(tables.get(r, {})) for r in resolutions}
    todo = [op for op in ops if any(op.key in needed[r] and op.key not in tables[r] for r in resolutions)]
    print(f"{len(ops)} distinct ops at {','.join(map(str, resolutions))} px; {len(ops) - len(todo)} "
          f"already in {out}, {len(todo)} to measure", flush=True)
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        def measure(model, name):
            path = os.path.join(tmp, f"{name}.tflite")
            with open(path, "wb") as f:
                f.write(to_tflite(model, "float32"))
            try:
                return runner.benchmark(path)
            finally:
                os.remove(path)

        if "invoke_overhead_ms" not in meta:
            meta = {**wanted, "invoke_overhead_ms": measure(trivial_model(), "invoke_overhead").statistic(statistic)}
            atomic_write_text(meta_path(out), json.dumps(meta, indent=2))
        overhead = meta["invoke_overhead_ms"]
        progress = Progress(len(ops), len(ops) - len(todo))
        for i, op in enumerate(todo):
            result = measure(op.build_model(layout), f"op{i}")
            keras.backend.clear_session()
            entry = result.table_entry(statistic)
            if entry["mean"] <= overhead:   # an op cannot take 0 ms: the timer's resolution was too coarse
                print(f"warning: {op.key}: {entry['mean']:.6f} ms measured, not more than the per-invoke "
                      f"overhead {overhead:.6f} ms; stored as 0 ms (time it again with more --num_runs)",
                      file=sys.stderr, flush=True)
            entry["mean"] = round(max(entry["mean"] - overhead, 0.0), 6)
            for r in resolutions:
                if op.key in needed[r] and op.key not in tables[r]:
                    tables[r][op.key] = dict(entry)
                    atomic_write_text(table_file(out, r), entries_yaml(tables[r]))
            progress.step(f"{entry['mean']:.4f} ms  {op.key}")
    return tables


def build_lut_from_flags() -> None:
    with user_input():
        if not FLAGS.out:
            raise ValueError("--out is required (the table directory to write, e.g. --out=host160)")
        if os.path.isfile(FLAGS.out) or FLAGS.out.endswith((".yaml", ".yml")):
            raise ValueError(f"--out takes a directory (it gets one <r>_lookup_table.yaml per resolution), "
                             f"got {FLAGS.out!r}")
        resolutions = cli_flags.int_list("resolutions", FLAGS.resolutions)
        if not resolutions:
            raise ValueError("--resolutions is required (e.g. --resolutions=160)")
        parent = os.path.dirname(os.path.abspath(FLAGS.out))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"the directory {parent} that --out goes into does not exist")
        runner = cli_flags.runner_from_flags()   # the device is checked before TensorFlow loads
    with runner:
        with user_input():
            layout = cli_flags.layout_from_flags()
        tables = build_table(layout, resolutions, FLAGS.out, runner, FLAGS.statistic)
    files = ", ".join(f"{r}_lookup_table.yaml ({len(entries)} ops)" for r, entries in tables.items())
    print(f"{FLAGS.out}: {files} (settings in {FLAGS.out.rstrip('/')}.meta.json)")


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    return exit_code_of(build_lut_from_flags)


if __name__ == "__main__":
    run_absl_main(main, cli_flags.define_flags)
