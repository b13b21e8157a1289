import json
import os

import pytest
import yaml

from cli_harness import run_cli
from nas_synthetic import made_up_latency_entries, trained_synthetic_predictor
from ofa_tf.arch.complexity import profile_arch
from ofa_tf.artifacts import save_supernet
from ofa_tf.data import DatasetInfo
from ofa_tf.nas.accuracy_dataset import workdir_paths
from ofa_tf.networks import OFAMobileNetV3
from ofa_tf.search import parse_constraints, run_search

BUDGET = {"max_time_budget": 40}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_space):
    """A saved tiny supernet, a synthetic accuracy predictor and a latency table at 40 and 48 px."""
    root = tmp_path_factory.mktemp("workdir")
    net = OFAMobileNetV3(n_classes=10, space=tiny_space, seed=0)
    info = DatasetInfo("demo", [str(k) for k in range(10)], 10, 10, (0.5,) * 3, (0.25,) * 3)
    save_supernet(net, info, str(root))
    trained_synthetic_predictor(tiny_space).save(workdir_paths(str(root))["predictor"])
    entries = made_up_latency_entries(tiny_space, 10, (40, 48), latency=lambda key, rng: 0.002 * len(key))
    (root / "phone.yaml").write_text(yaml.safe_dump(entries))
    return root


def test_search_saves_results_and_plots_for_several_constraints(workdir, tiny_space, capsys):
    constraints = parse_constraints(["mmacs=1", "mmacs=4", "latency_ms=4.5"])
    summaries = run_search(str(workdir), constraints, None, str(workdir / "phone.yaml"), None, seed=0,
                           finder_kwargs=BUDGET, plot_samples=300)
    out = capsys.readouterr().out
    assert "mmacs <= 1: predicted top-1" in out and "latency_ms <= 4.5" in out
    search = workdir / "search"
    assert sorted(p.name for p in search.iterdir()) == [
        "latency_ms_4.5.json", "mmacs_1.json", "mmacs_4.json", "pareto_latency_ms.png", "pareto_mmacs.png",
        "search.json"]
    assert json.loads((search / "search.json").read_text()) == summaries
    assert all((search / f"pareto_{m}.png").read_bytes()[:4] == b"\x89PNG" for m in ("mmacs", "latency_ms"))
    small, large, fast = summaries
    for summary, budget in ((small, 1.0), (large, 4.0)):
        assert profile_arch(summary["arch"], tiny_space, 10).mmacs == summary["mmacs"] <= budget
    assert large["predicted_accuracy"] >= small["predicted_accuracy"]
    assert fast["latency_ms"] <= 4.5 and fast["arch"]["r"][0] in (40, 48)
    assert small["latency_ms"] is None or small["arch"]["r"][0] in (40, 48)  # the table covers 40 and 48 px


def test_constraints_are_parsed_or_refused():
    assert parse_constraints(["mmacs=2.5", "latency_ms=25"]) == [("mmacs", 2.5), ("latency_ms", 25.0)]
    for bad, message in (("macs=3", "must be <metric>=<value>"), ("mmacs", "must be <metric>=<value>"),
                         ("mmacs=fast", "'fast' is not a number"), ("mmacs=-1", "must be positive")):
        with pytest.raises(ValueError, match=message):
            parse_constraints([bad])


def _cli(*args):
    return run_cli("ofa_tf.search", *args)


def test_cli_errors_are_one_line(workdir):
    for args, message in ((["--constraint=macs=3"], "error: --constraint 'macs=3' must be <metric>=<value>"),
                          (["--constraint=latency_ms=5"], "error: a latency_ms constraint needs --table"),
                          (["--constraint=mmacs=0.1"], "error: mmacs constraint 0.1 is below the cheapest")):
        result = _cli(f"--workdir={workdir}", *args, f"--output_dir={workdir / 'cli'}")
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
        assert "Traceback" not in result.stderr


def test_cli_searches_measures_and_exports(workdir):
    """The CLI end to end on the tiny supernet: one constraint, a short run, --measure on the odd
    validation half and --export=float32 through ofa_tf.export."""
    out = workdir / "cli_export"
    result = _cli(f"--workdir={workdir}", "--constraint=mmacs=2", "--generations=5", "--noplot", "--measure",
                  "--n_calibration_images=64", "--export=float32", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "mmacs_2.json").read_text())
    assert summary["mmacs"] <= 2 and 0.0 <= summary["measured_top1"] <= 100.0
    (exported,) = summary["exported"]
    assert exported.startswith(str(out / "tflite")) and exported.endswith("-float32.tflite")
    assert os.path.getsize(exported) > 10_000
    assert "exported " in result.stdout and "measured top-1" in result.stdout
