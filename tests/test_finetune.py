"""Fine-tuning a subnet (ofa_tf.training.finetune, python -m ofa_tf.finetune): real steps, KD,
new classes, resume after kill -9, and the result exported by ofa_tf.export --model."""

import json
import os

import numpy as np
import pytest

from cli_harness import stray_temporaries
from conftest import colour_images
from ofa_tf.artifacts import load_subnet_model, load_supernet
from ofa_tf.data import ArraySource
from ofa_tf.training.finetune import FinetuneConfig, SubnetFinetuner, recalibrated_subnet

ARCH = {"ks": 5, "e": 4, "d": 2, "r": 32}
FAST = dict(batch_size=16, steps_per_epoch=2, n_calibration_images=32, calibration_batch_size=32,
            eval_batch_size=64, tensorboard=False)


def _source(class_names):
    x, y = colour_images(160, size=40, seed=0)
    xv, yv = colour_images(64, size=40, seed=1)
    return ArraySource(x, y, xv, yv, class_names, mean=(0.5,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def supernet(tiny_workdir):
    net, info, _ = load_supernet(str(tiny_workdir))
    return net, info


def _arch(net):
    return net.space.arch({**net.space.expand(ARCH["ks"], ARCH["e"], ARCH["d"]), "r": [ARCH["r"]]})


def test_a_few_steps_with_kd_change_the_weights_and_save_a_loadable_subnet(supernet, tmp_path):
    net, info = supernet
    source = _source(info.class_names)   # the supernet's classes: KD from its largest subnet
    out = str(tmp_path / "ft.keras")
    finetuner = SubnetFinetuner(net, info, _arch(net), source, FinetuneConfig(out=out, epochs=2, **FAST))
    finetuner.build()
    start = finetuner.student.get_weights()
    result = finetuner.run()
    assert finetuner.teacher is not None and result["kd"] and not result["classifier_reinitialized"]
    assert result["steps"] == 4
    history = result["history"]
    assert [e["epoch"] for e in history] == [0, 1, 2]
    assert all(e["kd_loss"] > 0 for e in history[1:])
    assert history[1]["loss"] != history[2]["loss"]
    moved = [not np.allclose(a, b) for a, b in zip(start, finetuner.student.get_weights())]
    assert sum(moved) > len(moved) // 2
    model, saved_info, meta = load_subnet_model(out)
    assert saved_info.class_names == info.class_names and meta["arch"]["r"] == [32]
    assert meta["finetune"]["history"] == history
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x).numpy(), finetuner.student(x).numpy(), atol=1e-5)
    assert not stray_temporaries(tmp_path)
    with pytest.raises(FileExistsError, match="--overwrite"):   # a finished run is not redone
        SubnetFinetuner(net, info, _arch(net), source, FinetuneConfig(out=out, epochs=2, **FAST)).check_outputs()


@pytest.mark.parametrize("classes, kd_ratio", [("new", 1.0), ("same", 0.0)])
def test_new_classes_reinitialize_the_classifier_and_turn_kd_off(supernet, tmp_path, classes, kd_ratio):
    net, info = supernet
    names = [f"colour_{i}" for i in range(10)] if classes == "new" else info.class_names
    finetuner = SubnetFinetuner(net, info, _arch(net), _source(names),
                                FinetuneConfig(out=str(tmp_path / "ft.keras"), kd_ratio=kd_ratio,
                                               **{**FAST, "n_calibration_images": 0}))
    finetuner.build()
    assert finetuner.teacher is None and finetuner.model.teacher is None
    start = recalibrated_subnet(net, _arch(net), None, 0)
    for layer in start.layers:
        if layer.weights:
            same = all(np.array_equal(a, b) for a, b in zip(layer.get_weights(),
                                                           finetuner.student.get_layer(layer.name).get_weights()))
            # Same class count, other classes: only the classifier is new.
            assert same == (classes == "same" or layer.name != "logits"), layer.name
    if classes == "new":
        assert any("classifier 'logits' re-initialized" in m for m in finetuner.messages)


def test_cli_resumes_after_kill_9_to_the_same_weights_and_the_result_exports(cli_runner, tiny_workdir, tmp_path):
    # BN recalibration is the library test's (n_calibration_images=0 here saves tracing the supernet).
    args = [f"--supernet={tiny_workdir}", '--arch={"ks": 5, "e": 4, "d": 2, "r": 32}', "--epochs=1",
            "--steps_per_epoch=3", "--batch_size=8", "--n_calibration_images=0", "--eval_images=48",
            "--eval_batch_size=48", "--checkpoint_every=2", "--tensorboard=false"]
    uninterrupted = cli_runner.run("ofa_tf.finetune", *args, "--out=a/ft.keras", cwd=tmp_path)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert "KD from the supernet's largest subnet" in uninterrupted.stdout
    # kill -9 right after the mid-epoch checkpoint of step 2, then the same command again
    killed = cli_runner.run("ofa_tf.finetune", *args, "--out=b/ft.keras", cwd=tmp_path,
                            env={"OFA_TF_KILL_AT": "after:^ckpt-2$"})
    assert killed.returncode == -9 and not (tmp_path / "b" / "ft.keras").exists()
    resumed = cli_runner.run("ofa_tf.finetune", *args, "--out=b/ft.keras", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at step 2" in resumed.stdout
    (a, _, meta_a), (b, _, meta_b) = (load_subnet_model(str(tmp_path / d / "ft.keras")) for d in "ab")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)
    assert meta_a["finetune"]["steps"] == meta_b["finetune"]["steps"] == 3
    assert meta_a["finetune"]["val_top1"] == meta_b["finetune"]["val_top1"]
    assert not stray_temporaries(tmp_path)

    export = cli_runner.run("ofa_tf.export", "--model=a/ft.keras", "--mode=float32", "--n_verify_images=16",
                            "--out_dir=exports", cwd=tmp_path)
    assert export.returncode == 0, export.stderr[-3000:]
    sidecars = [p for p in os.listdir(tmp_path / "exports") if p.endswith(".json")]
    assert len(sidecars) == 1
    with open(tmp_path / "exports" / sidecars[0], encoding="utf-8") as f:
        assert json.load(f)["verification"]["top1_agreement"] >= 0.9
