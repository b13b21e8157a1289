"""OFA-ResNet50D through the command lines on the tiny ResNet: one training run (the teacher,
then width1: channels sorted, depth, stem, expand and width sampled in the graph, one trace per
phase), then the export of a subnet of it as float32 and int8, both verified in LiteRT."""

import json

import pytest

from cli_harness import run_cli
from ofa_tf.artifacts import read_supernet_meta

TRAIN = ["--space=resnet_tiny", "--dataset=demo", "--batch_size=8", "--steps_per_epoch=2", "--epochs_scale=0.001",
         "--n_calibration_images=16", "--calibration_batch_size=16", "--eval_batch_size=500", "--verbose=0",
         "--image_size_list=32,40", "--notensorboard"]


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resnet_workdir")
    result = run_cli("ofa_tf.train", f"--workdir={workdir}", *TRAIN, "--phases=teacher,width1")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_train_cli_runs_the_resnet_phases(resnet_run):
    workdir, stdout = resnet_run
    assert "[width1] started from phase 'teacher', channels sorted (expand_ratio_stage=2)" in stdout, stdout[-3000:]
    assert "4 subnet(s) per step, KD from the teacher" in stdout
    assert stdout.count("train step traced 1 time(s)") == 2
    assert read_supernet_meta(str(workdir))["phases_completed"] == ["teacher", "width1"]
    done = json.loads((workdir / "width1" / "done.json").read_text())
    assert done["steps"] == 2 and done["trace_count"] == 1
    archs = {name: r["arch"] for name, r in done["validation"].items()}
    # width1 opens the two largest width multipliers; its smallest subnet skips the stem's residual conv.
    assert archs["smallest"]["w"] == [1] * 6 and archs["smallest"]["d"] == [0] * 5
    assert archs["largest"]["w"] == [2] * 6 and archs["largest"]["d"] == [2] * 5
    assert all(0 <= r["top1"] <= 100 for r in done["validation"].values())


def test_export_cli_verifies_a_resnet_subnet_in_float32_and_int8(resnet_run, tmp_path):
    """The smallest subnet at 32 px (its last map is 1x1): float32 equal to Keras, int8 agreeing,
    both graphs checked against the layout by the exporter."""
    workdir, _ = resnet_run
    out = tmp_path / "exports"
    result = run_cli("ofa_tf.export", f"--supernet={workdir}", "--preset=min", "--resolution=32",
                     "--mode=float32,int8", f"--out_dir={out}", "--n_representative_images=16",
                     "--n_verify_images=20", "--n_bn_calibration_images=16", "--calibration_batch_size=16")
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.glob("*.tflite"))
    assert len(names) == 2 and names[0].endswith("-r32-float32.tflite") and names[1].endswith("-r32-int8.tflite")
    for name in names:
        sidecar = json.loads((out / name.replace(".tflite", ".json")).read_text())
        assert sidecar["arch"]["w"] == [0] * 6
        verification = sidecar["verification"]
        assert verification["n"] == 20
        assert (verification["max_abs_diff"] <= 1e-4 if sidecar["mode"] == "float32"
                else verification["top1_agreement"] >= 0.9)
    assert "float32, 32px" in result.stdout and "int8, 32px" in result.stdout
    assert "top-1 agreement 100.0 %" in result.stdout
