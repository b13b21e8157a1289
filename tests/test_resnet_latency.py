"""Latency lookup tables for the bottleneck (OFA-ResNet50D) spaces: the width-aware predictor sums
exactly the table entries of the ops an arch runs, the table builder lists exactly the ops the
space's archs run, and a host table of a reduced resnet_tiny builds and validates end to end."""

import json
import re

import numpy as np
import pytest

from cli_harness import run_cli
from android_bench.op_models import table_ops
from ofa_tf.arch.layout import build_layout
from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.efficiency import BottleneckLatencyPredictor, latency_predictor
from ofa_tf.nas.latency_table import LatencyTable, load_latency_table, op_keys

RESOLUTIONS = (32, 48)


@pytest.fixture(scope="module")
def space():
    return SearchSpace.resnet_tiny()


@pytest.fixture(scope="module")
def layout(space):
    return build_layout(space, 10)


def synthetic_table(layout, resolutions=RESOLUTIONS, drop=()) -> LatencyTable:
    """One table per resolution with a different made-up mean for every op: multiples of 2^-10 ms,
    so every sum is exact in float64 whatever its order."""
    rng = np.random.default_rng(1)
    return LatencyTable(by_resolution={r: {op.key: {"count": 1, "mean": int(rng.integers(1, 4096)) / 1024}
                                           for op in table_ops(layout, [r]) if op.key not in drop}
                                       for r in resolutions})


def random_archs(space, n, seed, resolutions=RESOLUTIONS):
    rng = np.random.default_rng(seed)
    return [{**space.sample(rng), "r": [int(rng.choice(resolutions))]} for _ in range(n)]


def test_predictor_is_the_sum_of_the_entries_of_the_ops_an_arch_runs(space, layout):
    table = synthetic_table(layout)
    predictor = latency_predictor(table, space, 10)
    assert isinstance(predictor, BottleneckLatencyPredictor)
    assert predictor.supported_resolutions() == RESOLUTIONS and predictor.missing_key(32) is None
    archs = random_archs(space, 40, 0) + [space.largest(32), space.smallest(48)]
    expected = [sum(table.mean(key, a["r"][0]) for key in op_keys(layout, a)) for a in archs]
    assert predictor.predict(archs).tolist() == expected                  # exact, not approximate
    assert predictor.get_efficiency(archs[0]) == expected[0]

    arch, cost = predictor.cheapest()
    assert cost == predictor.get_efficiency(arch) and arch["r"][0] in RESOLUTIONS
    assert cost <= predictor.predict(random_archs(space, 2000, 1)).min()
    assert predictor.cheapest([48])[0]["r"] == [48]


def test_cheapest_is_the_exact_minimum_of_a_table_with_no_order():
    """Every arch of a reduced resnet_tiny (one expand ratio, two widths) predicted at once: the
    made-up means are random, so the cheapest arch is not simply the smallest."""
    import itertools

    space = SearchSpace.from_dict({**SearchSpace.resnet_tiny().to_dict(), "expand_ratio_list": [0.25],
                                   "width_mult_list": [0.65, 1.0], "resolutions": [32, 40]})
    layout = build_layout(space, 10)
    predictor = latency_predictor(synthetic_table(layout, (32, 40)), space, 10)
    archs = [{"d": [d0, *d], "e": [0.25] * space.n_blocks, "w": list(w), "r": [r]}
             for d0 in space.stem_depths for d in itertools.product(space.depth_list, repeat=space.n_stages)
             for w in itertools.product(range(2), repeat=space.n_widths) for r in (32, 40)]
    costs = predictor.predict(archs)
    arch, cost = predictor.cheapest()
    assert cost == costs.min() and predictor.get_efficiency(arch) == cost
    assert arch != space.smallest(32)


def test_a_missing_entry_makes_its_resolution_unsupported_and_is_named(space, layout):
    arch = {**space.largest(), "r": [48]}
    missing = op_keys(layout, arch)[5]                      # a bottleneck of the largest arch at 48 px
    predictor = latency_predictor(synthetic_table(layout, drop={missing}), space, 10)
    assert missing.startswith("bottleneck-")
    assert predictor.supported_resolutions() == (32,) and predictor.missing_key(48) == missing
    with pytest.raises(ValueError, match=re.escape(f"has no entry for op {missing!r} at 48 px")):
        predictor.predict([arch])
    assert np.isfinite(predictor.predict([{**arch, "r": [32]}])).all()
    with pytest.raises(ValueError, match="has no table for 40 px"):
        predictor.predict([{**arch, "r": [40]}])


def test_the_search_takes_the_bottleneck_latency_predictor(space, layout, tmp_path):
    """``ofa_tf.search`` builds it from a table path, and a latency-constrained evolution keeps
    the budget."""
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model
    from ofa_tf.nas.evolution import EvolutionFinder
    from ofa_tf.search import efficiency_predictors

    synthetic_table(layout).save(str(tmp_path / "table"))
    latency = efficiency_predictors(space, 10, ["latency_ms"], str(tmp_path / "table"))["latency_ms"]
    assert isinstance(latency, BottleneckLatencyPredictor)
    accuracy = AccuracyPredictor(space, build_accuracy_model(latency.encoder.n_dim, 0.5))
    finder = EvolutionFinder(latency, accuracy, max_time_budget=5)
    _, cheapest = latency.cheapest()
    result = finder.run_evolution_search(cheapest * 1.5, seed=0)
    assert latency.get_efficiency(result.arch) <= cheapest * 1.5 and result.arch["r"][0] in RESOLUTIONS


def test_table_ops_are_exactly_the_ops_archs_run(space, layout):
    ops = table_ops(layout, RESOLUTIONS)
    keys = [op.key for op in ops]
    assert len(keys) == len(set(keys))
    # 91 ops per resolution: 10 stem convs (widths 16 / 24 in the first two, each skipped or
    # run, then 32 / 40 / 48 after either), 3 max pools, 3 classifiers and 75 distinct blocks
    # (make_divisible merges many width and expand choices); two blocks on a 2x2x64 map are in
    # both resolutions (stage 3 at full width at 32 px, stage 4 at 0.65 at 48 px)
    assert len(ops) == 2 * 91 - 2 and sum(k.startswith("bottleneck-") for k in keys) == 2 * 75 - 2
    assert [len(table_ops(layout, [r])) for r in RESOLUTIONS] == [91, 91]
    run = set()
    for arch in random_archs(space, 3000, 2):
        run.update(op_keys(layout, arch))
    assert set(keys) == run
    sample = set()
    for arch in random_archs(space, 50, 3):
        sample.update(op_keys(layout, arch))
    assert sample <= set(keys) and len(sample) < len(keys)
    with pytest.raises(ValueError, match="resolution 36 is not in the space's resolutions"):
        table_ops(layout, [36])


def test_op_models_have_the_shapes_their_keys_name(layout):
    ops = table_ops(layout, [40])
    kinds = ["stem_conv-", "-residual:1", "MaxPool2D-", "-downsample:1", "-downsample:0", "Logits-"]
    for kind in kinds:
        op = next(op for op in ops if kind in op.key)
        model = op.build_model(layout)
        shapes = re.findall(r"(?:input|output):([\dx]+)", op.key)
        assert tuple(model.inputs[0].shape) == (1,) + tuple(int(v) for v in shapes[0].split("x")), op.key
        assert tuple(model.outputs[0].shape)[1:] == tuple(int(v) for v in shapes[1].split("x")), op.key
    residual = next(op for op in ops if "-residual:1" in op.key).build_model(layout)
    assert any(type(layer).__name__ == "Add" for layer in residual.layers)


def test_host_table_builds_and_validates_end_to_end(tmp_path):
    """build_lut and validate, one command each, on a reduced resnet_tiny (one expand ratio, two
    width multipliers) at 32 px with real LiteRT timings."""
    space = SearchSpace.from_dict({**SearchSpace.resnet_tiny().to_dict(), "expand_ratio_list": [0.25],
                                   "width_mult_list": [0.65, 1.0], "resolutions": [32]})
    space_json = tmp_path / "space.json"
    space_json.write_text(space.to_json())
    table, report = tmp_path / "table", tmp_path / "report"
    n_ops = len(table_ops(build_layout(space, 1000), [32]))
    common = ["--backend=host", f"--space={space_json}", "--num_runs=3", "--warmup_runs=1"]
    built = run_cli("android_bench.build_lut", *common, "--resolutions=32", f"--out={table}")
    assert built.returncode == 0, built.stderr[-3000:]
    assert f"{n_ops} distinct ops at 32 px; 0 already in" in built.stdout
    entries = load_latency_table(str(table)).tables[32]
    assert len(entries) == n_ops and all(e["count"] == 3 and e["mean"] >= 0 for e in entries.values())

    validated = run_cli("android_bench.validate", *common, f"--table={table}", "--n=3", f"--out_dir={report}")
    assert validated.returncode == 0, validated.stderr[-3000:]
    summary = json.loads((report / "report.json").read_text())
    assert summary["n"] == 3 and np.isfinite(summary["mape_percent"])
    predictor = latency_predictor(load_latency_table(str(table)), space, 1000)
    for subnet in summary["subnets"]:
        assert set(subnet["arch"]) == {"d", "e", "w", "r"} and subnet["measured_ms"] > 0
        assert subnet["predicted_ms"] == pytest.approx(predictor.get_efficiency(subnet["arch"]))
