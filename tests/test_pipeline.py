"""The progressive-shrinking pipeline: resume, workdir guard, artifacts, CLI, mirrored strategy."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from cli_harness import run_cli
from ofa_tf.arch.space import SearchSpace
from ofa_tf.artifacts import load_supernet, read_supernet_meta
from ofa_tf.networks import OFAMobileNetV3
from ofa_tf.training import pipeline as pipeline_module
from ofa_tf.training.checkpoints import restore_model
from ofa_tf.training.config import TrainConfig
from ofa_tf.training.pipeline import ProgressiveShrinking

FAST = dict(space="tiny", dataset="demo", batch_size=8, steps_per_epoch=3, n_calibration_images=16,
            calibration_batch_size=16, eval_batch_size=500, tensorboard=False, verbose=0,
            image_size_list=(32, 40))


@pytest.fixture(scope="module")
def init_weights(tmp_path_factory):
    """Random supernet weights for phases that start from an earlier phase's weights."""
    path = str(tmp_path_factory.mktemp("init") / "init.weights.h5")
    OFAMobileNetV3(n_classes=10, space=SearchSpace.tiny(), seed=11).save_weights(path)
    return path


def _state(pipeline):
    """Every weight, BN moving statistics and generator states included (they depend on the
    optimizer's momentum, the schedule's position, the sampled subnets, dropout masks and the
    data order, all of which must be restored)."""
    return [v.numpy() for v in pipeline.supernet.weights]


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, init_weights, monkeypatch):
    # kernel: a sampled subnet per step (its sampler's state must be restored), dropout on, epochs
    # of 3 steps, a checkpoint every 2 steps, a validation after each epoch. The run's workdir is
    # copied the moment step 4's checkpoint is written: what a crash there leaves on disk. The
    # copy, resumed mid-epoch from step 4, must end where the uninterrupted run ends.
    # (Several subnets per step run in the mirrored CLI test and in tests/test_trainer.py.)
    common = dict(FAST, phases=("kernel",), kd_ratio=0.0, init_weights=init_weights,
                  epochs_scale=2 / 120, checkpoint_every=2)
    reference_dir, crashed_dir = str(tmp_path / "a"), str(tmp_path / "b")
    saved = pipeline_module._StepCheckpoint.on_train_batch_end

    def snapshot_after_step_4(self, batch, logs=None):
        saved(self, batch, logs)
        if self.run.step == 4:
            shutil.copytree(reference_dir, crashed_dir)

    monkeypatch.setattr(pipeline_module._StepCheckpoint, "on_train_batch_end", snapshot_after_step_4)
    reference = ProgressiveShrinking(TrainConfig(workdir=reference_dir, **common))
    done = reference.run()["kernel"]
    monkeypatch.setattr(pipeline_module._StepCheckpoint, "on_train_batch_end", saved)
    assert done["steps"] == 6  # 2 epochs x 3 steps, no warm-up at this scale
    expected = _state(reference)
    assert not os.path.exists(os.path.join(crashed_dir, "kernel", "done.json"))

    resumed = ProgressiveShrinking(TrainConfig(workdir=crashed_dir, **common))
    done_resumed = resumed.run()["kernel"]
    assert done_resumed["steps"] == done["steps"]
    for name, result in done["validation"].items():    # the validations agree as well
        assert done_resumed["validation"][name]["top1"] == pytest.approx(result["top1"], abs=0.2)
        assert done_resumed["validation"][name]["loss"] == pytest.approx(result["loss"], rel=1e-3)
    for a, b in zip(expected, _state(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The runs really trained: weights moved away from the initialization.
    start = OFAMobileNetV3(n_classes=10, space=SearchSpace.tiny())
    start.load_weights(init_weights)
    assert sum(not np.allclose(a, v.numpy()) for a, v in zip(expected, start.weights)) > 10


def test_artifacts_then_a_mirrored_cli_run_skips_the_finished_phase(tmp_path):
    """The teacher phase through the API, its artifacts; then the CLI, with a flagfile and
    overriding flags, on two replicas (MirroredStrategy on two logical CPUs) in the same
    workdir: the finished teacher is read back, not retrained, and distils into depth2, whose
    sampling and summed-gradient loop (2 subnets per step) run under the strategy."""
    workdir = tmp_path / "w"
    config = TrainConfig(workdir=str(workdir), phases=("teacher",), epochs_scale=1 / 120, **FAST)
    results = ProgressiveShrinking(config).run()
    teacher = results["teacher"]
    assert teacher["trace_count"] == 1 and set(teacher["validation"]) == {"smallest", "middle", "largest"}
    meta = read_supernet_meta(str(workdir))
    assert meta["phases_completed"] == ["teacher"]
    assert meta["data"]["class_names"] == [str(k) for k in range(10)] and len(meta["data"]["mean"]) == 3
    net, info, _ = load_supernet(str(workdir))
    assert info.num_classes == 10 and net.space == SearchSpace.tiny()
    # The phase's last checkpoint holds every weight (the stage blocks' too, which sit in nested
    # lists TF's object graph does not enter): what a teacher or the next phase starts from.
    fresh = OFAMobileNetV3(n_classes=10, space=SearchSpace.tiny(), seed=5)
    restore_model(fresh, tf.train.latest_checkpoint(str(workdir / "teacher")))
    for a, b in zip(net.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)

    flagfile = tmp_path / "run.flags"
    flagfile.write_text("\n".join([
        f"--workdir={workdir}", "--space=tiny", "--dataset=demo", "--batch_size=8",
        "--steps_per_epoch=99", f"--epochs_scale={1 / 120!r}", "--n_calibration_images=16",
        "--calibration_batch_size=16", "--eval_batch_size=500", "--verbose=0", "--image_size_list=32,40",
        "--notensorboard"]))
    result = _cli(f"--flagfile={flagfile}", "--steps_per_epoch=3", "--batch_size=4", "--phases=teacher,depth2",
                  "--strategy=mirrored", "--cpu_devices=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[teacher] already finished" in result.stdout, result.stdout[-3000:]
    assert "3 steps of 8 images" in result.stdout  # 4 per replica x 2 replicas; flags overrode the file
    assert "KD from the teacher" in result.stdout and "traced 1 time(s)" in result.stdout
    assert "| smallest | 32 |" in result.stdout and "| largest | 40 |" in result.stdout
    assert read_supernet_meta(str(workdir))["phases_completed"] == ["teacher", "depth2"]
    assert json.loads((workdir / "teacher" / "done.json").read_text())["steps"] == 3   # not retrained
    assert json.loads((workdir / "config.json").read_text())["global_batch_size"] == 8


def test_workdir_from_another_run_is_refused(tmp_path):
    workdir = str(tmp_path / "w")
    ProgressiveShrinking(TrainConfig(workdir=workdir, phases=("teacher",), **FAST))
    with pytest.raises(ValueError, match=r"different run \(lr_scale: workdir has 1.0, now 2.0\)"):
        ProgressiveShrinking(TrainConfig(workdir=workdir, phases=("teacher",), **{**FAST, "lr_scale": 2.0}))
    with pytest.raises(ValueError, match="global_batch_size"):
        ProgressiveShrinking(TrainConfig(workdir=workdir, phases=("teacher",), **{**FAST, "batch_size": 16}))
    # What does not change the training may change.
    ProgressiveShrinking(TrainConfig(workdir=workdir, phases=("teacher",), **{**FAST, "verbose": 2}))


def test_phase_without_its_prerequisites_is_one_clear_error(tmp_path):
    """Refused before the workdir is created: no start weights, or no teacher to distil from."""
    import h5py

    with pytest.raises(ValueError, match="no finished phase before it"):
        ProgressiveShrinking(TrainConfig(workdir=str(tmp_path / "a"), phases=("kernel",), kd_ratio=0.0,
                                         **FAST)).run()
    init = str(tmp_path / "init.weights.h5")
    h5py.File(init, "w").close()
    with pytest.raises(ValueError, match="no finished 'teacher' phase"):
        ProgressiveShrinking(TrainConfig(workdir=str(tmp_path / "b"), phases=("kernel",), init_weights=init,
                                         **FAST)).run()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("changes, message", [
    ({"phases": ("kernel", "teacher")}, "progressive-shrinking order"),
    ({"phases": ("width1",)}, r"'width1' is not a phase of space 'tiny'; its phases are \['teacher', 'kernel'"),
    ({"space": "huge"}, "space 'huge' is not one of"),
    ({"image_size_list": (33,)}, r"image_size_list \[33\] has \[33\]"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"dataset": "folder"}, "needs data_dir"),
])
def test_bad_config_is_one_clear_error(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(workdir=str(tmp_path), **{**FAST, **changes})


def _cli(*args):
    return run_cli("ofa_tf.train", *args)


def test_cli_rejects_bad_flags_with_one_message(tmp_path):
    result = _cli(f"--workdir={tmp_path}", "--phases=kernel,teacher")
    assert result.returncode != 0
    assert "progressive-shrinking order" in result.stderr and "Traceback" not in result.stderr


def test_a_shortened_schedule_keeps_the_reference_share_of_warm_up():
    """Warm-up scales in steps: at full length the reference's 5 warm-up epochs before 120, at the
    demo's 0.025 about 4 % of the steps instead of none (rounding 0.125 epochs to 0 left the teacher
    at its full learning rate from the first step)."""
    phases = pipeline_module.progressive_shrinking_phases(SearchSpace.tiny())
    full = pipeline_module.plan_phase(phases["teacher"], TrainConfig(workdir="unused", **FAST, epochs_scale=1.0), 6000, 64)
    assert (full.epochs, full.warmup_steps, full.steps_per_epoch) == (125, 5 * 3, 3)
    demo = dict(FAST, steps_per_epoch=0)
    short = pipeline_module.plan_phase(phases["teacher"], TrainConfig(workdir="unused", **demo, epochs_scale=0.025), 6000, 64)
    assert (short.epochs, short.steps_per_epoch, short.warmup_steps) == (3, 93, 12)
    no_warmup = pipeline_module.plan_phase(phases["depth1"], TrainConfig(workdir="unused", **demo, epochs_scale=0.025), 6000, 64)
    assert (no_warmup.epochs, no_warmup.warmup_steps) == (1, 0)


def test_a_phase_override_replaces_its_slot_of_the_schedule(tmp_path, init_weights):
    """An ablation's phase stands in for a schedule's phase under its name: the run plans and
    checks it, not the schedule's. Here kernel without KD needs no finished teacher, and its
    doubled epochs double its steps. (Running a phase is covered by the tests above.)"""
    import dataclasses

    space = SearchSpace.tiny()
    kernel = pipeline_module.progressive_shrinking_phases(space)["kernel"]
    no_kd = dataclasses.replace(kernel, use_kd=False, epochs=2 * 125 - kernel.warmup_epochs)
    config = TrainConfig(workdir=str(tmp_path / "w"), phases=("kernel",), init_weights=init_weights,
                         epochs_scale=1 / 125, **FAST)
    with pytest.raises(ValueError, match="no finished 'teacher' phase"):
        ProgressiveShrinking(config)
    pipeline = ProgressiveShrinking(config, phase_overrides={"kernel": no_kd})
    assert pipeline.phases["kernel"] == no_kd and pipeline.phases["depth1"].use_kd
    plan = pipeline_module.plan_phase(pipeline.phases["kernel"], config, 6000, 8)
    assert plan.total_steps == 2 * 3       # the schedule's kernel phase: 1 epoch of 3 steps
    with pytest.raises(ValueError, match="under its own name"):
        ProgressiveShrinking(config, phase_overrides={"depth1": no_kd})


@pytest.mark.parametrize("flagfile", ["imagenet_mbv3_w1.0.flags", "imagenet_mbv3_w1.0_8gpu.flags"])
def test_the_shipped_imagenet_flagfiles_parse_into_a_valid_run(flagfile, tmp_path):
    """Every flag is known and every value valid (run from the repository's root, as their
    comments say): the run gets as far as looking for the data."""
    from cli_harness import REPO

    missing = tmp_path / "no_imagenet_here"
    result = run_cli("ofa_tf.train", f"--flagfile=configs/{flagfile}", f"--data_dir={missing}",
                     f"--workdir={tmp_path / 'w'}", cwd=REPO)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: image folder {missing} does not exist" in result.stderr
    assert not (tmp_path / "w").exists()
