"""The LUT builder: its ops are exactly the keys the predictor asks for, each op model has the
key's shapes, and a host table of a reduced space builds, survives a kill and resumes."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from cli_harness import run_cli
from android_bench.op_models import table_ops
from ofa_tf.arch.layout import build_layout
from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.efficiency import LatencyPredictor
from ofa_tf.nas.latency_table import load_latency_table, op_keys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_table_ops_are_exactly_the_keys_subnets_run():
    space = SearchSpace.tiny()
    layout = build_layout(space, n_classes=10)
    ops = table_ops(layout, [32, 48])
    keys = [op.key for op in ops]
    assert len(keys) == len(set(keys))
    run = set()
    rng = np.random.default_rng(0)
    for _ in range(400):
        arch = space.sample(rng)
        for r in (32, 48):
            run.update(op_keys(layout, arch, r))
    for k in space.ks_list:       # the uniform archs reach the rare corners (e.g. all-k7 at depth 3)
        for e in space.expand_ratio_list:
            for d in space.depth_list:
                for r in (32, 48):
                    run.update(op_keys(layout, space.uniform(k, e, d), r))
    assert set(keys) == run
    with pytest.raises(ValueError, match="resolution 36 is not in the space's resolutions"):
        table_ops(layout, [36])


def test_op_models_have_the_shapes_their_keys_name():
    layout = build_layout(SearchSpace.tiny(), n_classes=10)
    ops = table_ops(layout, [40])
    picked = [ops[0], ops[1], ops[2]] + [op for op in ops if "se:1" in op.key][:1] + ops[-4:]
    for op in picked:
        model = op.build_model(layout)
        shapes = re.findall(r"(?:input|output):([\dx]+)", op.key)
        assert tuple(model.inputs[0].shape) == (1,) + tuple(int(v) for v in shapes[0].split("x")), op.key
        assert tuple(model.outputs[0].shape)[1:] == tuple(int(v) for v in shapes[1].split("x")), op.key


def _build_args(space_json, out, *extra):
    return ["--backend=host", f"--space={space_json}", "--resolutions=56,64", f"--out={out}", "--num_runs=5",
            "--warmup_runs=1", *extra]


def test_host_lut_survives_a_kill_and_resumes(tmp_path):
    """Two resolutions, one table each (the reference's directory form). At 56 and 64 px the
    reduced space's last stage ends on the same 4x4 map: its later block and the head ops are
    in both tables, measured once."""
    space = SearchSpace.from_dict({**SearchSpace.tiny().to_dict(), "ks_list": [3], "expand_ratio_list": [3],
                                   "depth_list": [1, 2], "resolutions": [56, 64]})
    space_json = tmp_path / "space.json"
    space_json.write_text(space.to_json())
    out = tmp_path / "table"
    first_table = out / "56_lookup_table.yaml"    # 56 px ops come first
    env = {**os.environ, "PYTHONPATH": REPO, "OFA_TF_ALLOCATOR": "system"}
    layout = build_layout(space, 1000)
    n_ops = len(table_ops(layout, [56, 64]))
    per_resolution = {r: len(table_ops(layout, [r])) for r in (56, 64)}
    assert n_ops == sum(per_resolution.values()) - 5

    first = subprocess.Popen([sys.executable, "-m", "android_bench.build_lut", *_build_args(space_json, out)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline, kept = time.monotonic() + 240, {}
    while time.monotonic() < deadline and first.poll() is None:
        if first_table.exists():
            kept = yaml.safe_load(first_table.read_text())   # never half-written: replaced atomically
            if len(kept) >= 4:
                first.send_signal(signal.SIGKILL)
                break
        time.sleep(0.1)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, first.stdout.read().decode()[-2000:]
    kept = yaml.safe_load(first_table.read_text())
    assert 4 <= len(kept) < per_resolution[56]

    second = run_cli("android_bench.build_lut", *_build_args(space_json, out))
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"{n_ops} distinct ops at 56,64 px; {len(kept)} already in" in second.stdout
    assert sorted(os.listdir(out)) == ["56_lookup_table.yaml", "64_lookup_table.yaml"]
    table = load_latency_table(str(out))
    assert table.resolutions == (56, 64)
    assert {r: len(entries) for r, entries in table.tables.items()} == per_resolution
    entries = table.tables[56]
    assert {key: entries[key] for key in kept} == kept          # finished entries kept as they were
    assert all(e["count"] == 5 and e["mean"] >= 0 and e["var"] >= 0 for e in table.tables[64].values())
    shared = set(table.tables[56]) & set(table.tables[64])
    assert len(shared) == 5 and all(table.tables[56][k] == table.tables[64][k] for k in shared)
    assert re.search(rf"\[{n_ops}/{n_ops}\] 100 %  ETA 0:00", second.stderr)

    predictor = LatencyPredictor(table, space, 1000)
    assert predictor.supported_resolutions() == (56, 64)
    archs = [space.sample(seed) for seed in range(20)]
    expected = [sum(table.mean(k, a["r"][0]) for k in op_keys(predictor.layout, a)) for a in archs]
    np.testing.assert_allclose(predictor.predict(archs), expected, rtol=1e-9)

    other = run_cli("android_bench.build_lut", *_build_args(space_json, out, "--num_threads=2"))
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines()[-1] == (
        f"error: {out} was measured with other settings (settings.num_threads: table 1, flags 2): use "
        "another --out, or the same flags to resume")
    as_file = run_cli("android_bench.build_lut", *_build_args(space_json, tmp_path / "table.yaml"))
    assert as_file.returncode == 2 and not (tmp_path / "table.yaml").exists()
    assert as_file.stderr.strip().splitlines()[-1].startswith("error: --out takes a directory")


def test_validation_report_on_the_tiny_table(tmp_path):
    """Predict, export and measure 3 subnets against a table of the tiny space at 32 px
    (measured op by op here), then the report; a re-run finds every subnet in the journal."""
    from android_bench.build_lut import build_table
    from android_bench.calibrate import fitted_scale, scaled_table
    from android_bench.host import HostRunner
    from android_bench.runner import BenchmarkSettings
    from android_bench.subnet_latency import measure_subnets, sample_subnets
    from android_bench.validate import write_report

    space = SearchSpace.from_dict({**SearchSpace.tiny().to_dict(), "ks_list": [3], "expand_ratio_list": [3, 6],
                                   "depth_list": [1, 2], "resolutions": [32, 40]})
    layout = build_layout(space, 10)
    runner = HostRunner(BenchmarkSettings(num_runs=10, warmup_runs=2))
    table_path = str(tmp_path / "t")
    build_table(layout, [32], table_path, runner, "min")
    predictor = LatencyPredictor(load_latency_table(table_path), space, 10)
    assert predictor.supported_resolutions() == (32,)
    with pytest.raises(ValueError, match="the table does not cover resolution 40"):
        sample_subnets(predictor, 3, 0, [40])
    archs = sample_subnets(predictor, 3, 0)
    assert all(a["r"] == [32] for a in archs)
    journal = str(tmp_path / "measurements.jsonl")
    records = measure_subnets(layout, archs, predictor, runner, journal, "min")
    assert [r["arch"] for r in records] == archs
    assert all(r["measured_ms"] == r["result"]["min_ms"] > 0 for r in records)
    np.testing.assert_allclose([r["predicted_ms"] for r in records], predictor.predict(archs))

    class NoRunner:
        def benchmark(self, path):
            raise AssertionError("a journaled subnet was measured again")

    assert measure_subnets(layout, archs, predictor, NoRunner(), journal, "min") == records
    doubled = LatencyPredictor(scaled_table(load_latency_table(table_path), 2.0), space, 10)
    again = measure_subnets(layout, archs, doubled, NoRunner(), journal, "min")
    assert [r["predicted_ms"] for r in again] == pytest.approx([2 * r["predicted_ms"] for r in records], rel=1e-4)
    summary = write_report(str(tmp_path), records, {"table": "t"})
    assert summary["n"] == 3 and np.isfinite(summary["mape_percent"]) and -1 <= summary["spearman"] <= 1
    assert (tmp_path / "latency_scatter.png").stat().st_size > 10_000
    report = (tmp_path / "report.md").read_text()
    assert f"MAPE {summary['mape_percent']:.2f} %" in report and report.count("\n| ") == 3 + 1

    # Calibration: the median ratio scales every entry; validation never draws its subnets.
    scale = fitted_scale(records)
    ratios = sorted(r["measured_ms"] / r["predicted_ms"] for r in records)
    assert scale == pytest.approx(ratios[1])
    table = load_latency_table(table_path)
    scaled = scaled_table(table, scale)
    key = next(iter(table.tables[32]))
    assert scaled.resolutions == (32,)
    assert scaled.mean(key, 32) == pytest.approx(table.mean(key, 32) * scale, abs=1e-6)
    assert LatencyPredictor(scaled, space, 10).predict(archs) == pytest.approx(
        predictor.predict(archs) * scale, rel=1e-4)
    others = sample_subnets(predictor, 3, 0, exclude=archs[:2])
    assert archs[2] in others and archs[0] not in others and archs[1] not in others and len(others) == 3


def test_an_op_not_slower_than_the_invoke_overhead_is_reported(tmp_path, capsys):
    """An op cannot take 0 ms: an entry that the overhead subtraction brings to 0 is named."""
    from android_bench.build_lut import build_table
    from android_bench.runner import BenchmarkResult, BenchmarkSettings, ClosingRunner

    class FlatRunner(ClosingRunner):   # every model, the one-RELU one included, "takes" 0.01 ms
        settings = BenchmarkSettings(num_runs=1, warmup_runs=0)

        def benchmark(self, path):
            return BenchmarkResult(init_ms=1.0, first_ms=0.01, warmup_ms=0.01, mean_ms=0.01, count=1)

        def describe(self):
            return {"backend": "flat"}

    space = SearchSpace.from_dict({**SearchSpace.tiny().to_dict(), "ks_list": [3], "expand_ratio_list": [3],
                                   "depth_list": [1], "resolutions": [32]})
    layout = build_layout(space, 10)
    entries = build_table(layout, [32], str(tmp_path / "table"), FlatRunner(), "mean")[32]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(entries) > 0
    assert all("not more than the per-invoke overhead 0.010000 ms" in line for line in warnings)
    assert {line.split()[1].rstrip(":") for line in warnings} == set(entries)
