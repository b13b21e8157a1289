"""OFA-ResNet50D through the command lines on the tiny ResNet: one training run of the width1
phase from random initial weights (channels sorted, then the stem's depth, the stages' depths,
expand ratios and widths sampled in the graph, four subnets a step, one trace), then on its
workdir the accuracy-dataset collection with the predictor, the search under a MACs budget, and
the export of a subnet as float32, verified in LiteRT (int8 needs a confident model: the
2-step supernet's logits are near ties; tests/test_resnet.py trains one). (The other phases differ
only in their choice lists: tests/test_resnet.py samples them; the teacher and KD paths are the
MBConv spaces', tested in tests/test_pipeline.py.)"""

import json

import pytest

from cli_harness import run_cli
from ofa_tf.artifacts import read_supernet_meta

TRAIN = ["--space=resnet_tiny", "--dataset=demo", "--batch_size=8", "--steps_per_epoch=2", "--epochs_scale=0.001",
         "--n_calibration_images=16", "--calibration_batch_size=16", "--eval_batch_size=500", "--verbose=0",
         "--image_size_list=32,40", "--notensorboard"]


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.networks import OFAResNets

    init = str(tmp_path_factory.mktemp("resnet_init") / "init.weights.h5")
    OFAResNets(space=SearchSpace.resnet_tiny(), n_classes=10, seed=3).save_weights(init)
    workdir = tmp_path_factory.mktemp("resnet_workdir")
    result = run_cli("ofa_tf.train", f"--workdir={workdir}", *TRAIN, "--phases=width1", f"--init_weights={init}",
                     "--kd_ratio=0")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_train_cli_runs_the_resnet_width_phase(resnet_run):
    workdir, stdout = resnet_run
    assert "[width1] started from " in stdout and ", channels sorted (expand_ratio_stage=2)" in stdout, stdout[-3000:]
    assert "4 subnet(s) per step, no KD" in stdout
    assert stdout.count("train step traced 1 time(s)") == 1
    assert read_supernet_meta(str(workdir))["phases_completed"] == ["width1"]
    done = json.loads((workdir / "width1" / "done.json").read_text())
    assert done["steps"] == 2 and done["trace_count"] == 1
    archs = {name: r["arch"] for name, r in done["validation"].items()}
    # width1 opens the two largest width multipliers; its smallest subnet skips the stem's residual conv.
    assert archs["smallest"]["w"] == [1] * 6 and archs["smallest"]["d"] == [0] * 5
    assert archs["largest"]["w"] == [2] * 6 and archs["largest"]["d"] == [2] * 5
    assert all(0 <= r["top1"] <= 100 for r in done["validation"].values())


def test_export_cli_verifies_a_resnet_subnet_in_float32(resnet_run, tmp_path):
    """The smallest subnet at 32 px (its last map is 1x1): float32 equal to Keras, its graph
    checked against the layout by the exporter."""
    workdir, _ = resnet_run
    out = tmp_path / "exports"
    result = run_cli("ofa_tf.export", f"--supernet={workdir}", "--preset=min", "--resolution=32",
                     "--mode=float32", f"--out_dir={out}", "--n_verify_images=20",
                     "--n_bn_calibration_images=16", "--calibration_batch_size=16")
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.glob("*.tflite"))
    assert len(names) == 1 and names[0].endswith("-r32-float32.tflite")
    sidecar = json.loads((out / names[0].replace(".tflite", ".json")).read_text())
    assert sidecar["arch"]["w"] == [0] * 6
    assert sidecar["verification"]["n"] == 20 and sidecar["verification"]["max_abs_diff"] <= 1e-4
    assert "float32, 32px" in result.stdout and "top-1 agreement 100.0 %" in result.stdout


def test_collect_and_search_cli_on_the_resnet_workdir(resnet_run):
    """A few measured subnets and a predictor on the ResNet features, then a short search whose
    arch keeps the budget (MACs counted as `profile_arch` counts them)."""
    from ofa_tf.arch.complexity import profile_arch
    from ofa_tf.arch.space import SearchSpace

    workdir, _ = resnet_run
    collected = run_cli("ofa_tf.nas.collect", f"--workdir={workdir}", "--n=6", "--n_calibration_images=16",
                        "--calibration_batch_size=16", "--eval_images=100", "--epochs=20", "--val_fraction=0.34")
    assert collected.returncode == 0, collected.stderr[-3000:]
    records = [json.loads(line) for line in (workdir / "nas" / "accuracy.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(set(r["arch"]) == {"d", "e", "w", "r"} for r in records)
    meta = json.loads((workdir / "nas" / "accuracy_predictor.keras.json").read_text())
    assert meta["encoding"] == "resnet_onehot" and meta["n_dim"] == 61
    out = workdir / "search_out"
    searched = run_cli("ofa_tf.search", f"--workdir={workdir}", "--constraint=mmacs=3", "--generations=5",
                       "--noplot", f"--output_dir={out}")
    assert searched.returncode == 0, searched.stderr[-3000:]
    summary = json.loads((out / "mmacs_3.json").read_text())
    space = SearchSpace.resnet_tiny()
    assert space.validate(summary["arch"]) == summary["arch"]
    assert profile_arch(summary["arch"], space, 10).mmacs == pytest.approx(summary["mmacs"]) and summary["mmacs"] <= 3
