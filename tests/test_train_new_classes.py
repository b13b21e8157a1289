"""Progressive shrinking on other classes: ``--init_weights`` from a supernet trained on other
classes (every weight loaded by path, the classifier re-initialized), ``--teacher=init``, and the
start record that binds a workdir to its initial weights and teacher."""

import json
import shutil

import h5py
import numpy as np
import pytest
import tensorflow as tf

from cli_harness import snapshot
from conftest import colour_images
from ofa_tf.artifacts import WEIGHTS_NAME, load_supernet
from ofa_tf.errors import BadInput
from ofa_tf.training.config import START_NAME, TrainConfig, check_run_inputs
from ofa_tf.training.pipeline import ProgressiveShrinking

COLOURS = ("red", "green", "yellow", "blue")
# A kernel phase (it distils from the teacher) of 2 steps of 8 images at 32 px.
RUN = dict(space="tiny", dataset="demo", phases=("kernel",), batch_size=8, steps_per_epoch=2, epochs_scale=0.001,
           image_size_list=(32,), n_calibration_images=16, calibration_batch_size=16, eval_batch_size=500,
           tensorboard=False, verbose=0)


def _write_folder(root, class_names, n_train=160, n_val=60):
    """An image folder of coloured noise (32 px), one colour a class, named ``class_names``."""
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        x, y = colour_images(n, size=32, seed=seed)
        for i, (image, label) in enumerate(zip(x, y)):
            if label < len(class_names):
                path = root / split / class_names[label] / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tf.io.encode_png(image).numpy())
    return str(root)


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
    """Four classes other than the tiny supernet's digits."""
    return _write_folder(tmp_path_factory.mktemp("colours"), COLOURS)


@pytest.fixture(scope="module")
def digit_named_folder(tmp_path_factory):
    """Ten classes named as the tiny supernet's ('0' to '9'): a teacher with its classes."""
    return _write_folder(tmp_path_factory.mktemp("digit_named"), [str(k) for k in range(10)], n_train=80)


def _config(workdir, **changes):
    return TrainConfig(workdir=str(workdir), **{**RUN, **changes})


def _weights_by_path(model):
    return {v.path.split("/", 1)[1]: v.numpy() for v in model.weights}


def test_other_classes_load_every_weight_but_the_classifier(tmp_path, tiny_workdir, colour_folder):
    init = str(tiny_workdir / WEIGHTS_NAME)
    pipeline = ProgressiveShrinking(_config(tmp_path / "w", dataset="folder", data_dir=colour_folder,
                                            kd_ratio=0.0, init_weights=init))
    supernet = pipeline.supernet
    fresh_classifier = [w.numpy() for w in supernet.classifier.weights]
    how = pipeline.load_start_weights(pipeline.phases["kernel"])
    assert "classifier 'logits' re-initialized: 10 → 4 classes" in how
    trained = _weights_by_path(load_supernet(str(tiny_workdir))[0])
    classifier = {id(w) for w in supernet.classifier.weights}
    compared = set()
    for variable in supernet.weights:
        if id(variable) not in classifier:
            np.testing.assert_array_equal(variable.numpy(), trained[variable.path.split("/", 1)[1]],
                                          err_msg=variable.path)
            compared.add(id(variable))
    # Every stage block's weight (BN statistics included) came from the file.
    stage_weights = {id(v) for stage in supernet.stage_blocks for block in stage for v in block.weights}
    assert stage_weights and stage_weights <= compared and len(compared) == len(supernet.weights) - 2
    for kept, fresh in zip(supernet.classifier.weights, fresh_classifier):
        assert kept.shape[-1] == 4
        np.testing.assert_array_equal(kept.numpy(), fresh)
    # --teacher=init cannot distil from a teacher with other classes (--kd_ratio=0 above can do without).
    with pytest.raises(BadInput, match="--teacher=init .* has 10 classes, not the data set's 4"):
        ProgressiveShrinking(_config(tmp_path / "t", dataset="folder", data_dir=colour_folder,
                                     init_weights=init, teacher="init"))
    assert not (tmp_path / "t").exists()


def test_another_architecture_is_one_error_naming_the_weight(tmp_path, tiny_workdir, colour_folder):
    init = str(tmp_path / "other.weights.h5")
    shutil.copy(tiny_workdir / WEIGHTS_NAME, init)
    with h5py.File(init, "r+") as f:
        name = next(k for k in f["blocks"] if "vars" in f["blocks"][k].get("expand", {}))
        key = f"blocks/{name}/expand/vars/0"
        shape = f[key].shape
        del f[key]
        f[key] = np.zeros(shape[:-1] + (shape[-1] + 8,), np.float32)
    with pytest.raises(BadInput, match=rf"does not fit this run's supernet .*'{key}' has shape"):
        ProgressiveShrinking(_config(tmp_path / "w", dataset="folder", data_dir=colour_folder,
                                     init_weights=init, kd_ratio=0.0))
    assert not (tmp_path / "w").exists()


def test_teacher_init_needs_no_teacher_phase_and_binds_the_workdir(tmp_path, tiny_workdir, digit_named_folder):
    init = str(tmp_path / "digits.weights.h5")
    shutil.copy(tiny_workdir / WEIGHTS_NAME, init)
    workdir = tmp_path / "w"
    data = dict(dataset="folder", data_dir=digit_named_folder)
    # The kernel phase distils (kd_ratio 1) although the workdir has no teacher phase.
    config = _config(workdir, init_weights=init, teacher="init", **data)
    pipeline = ProgressiveShrinking(config)
    assert json.loads((workdir / START_NAME).read_text())["teacher"] == "init"
    teacher = pipeline.teacher_for(pipeline.phases["kernel"])
    assert teacher.get_active_arch() == pipeline.supernet.space.largest()
    trained = _weights_by_path(load_supernet(str(tiny_workdir))[0])
    for name, value in _weights_by_path(teacher).items():
        if "active_" not in name:     # the active-subnet choice is the largest, not the file's
            np.testing.assert_array_equal(value, trained[name], err_msg=name)
    with pytest.raises(ValueError, match="no finished 'teacher' phase; run it first, pass --teacher=init"):
        check_run_inputs(_config(tmp_path / "v", init_weights=init, **data))

    # ... and is refused other initial weights, the same file changed, or another teacher.
    before = snapshot(workdir)
    other = str(tmp_path / "other.weights.h5")
    shutil.copy(init, other)
    with pytest.raises(ValueError, match="different run .*init_weights: workdir has"):
        check_run_inputs(_config(workdir, init_weights=other, teacher="init", **data))
    with pytest.raises(ValueError, match="different run .*teacher: workdir has \"init\", now \"workdir\""):
        check_run_inputs(_config(workdir, init_weights=init, kd_ratio=0.0, **data))
    with h5py.File(init, "r+") as f:
        f["classifier/vars/1"][0] += 1.0
    with pytest.raises(ValueError, match="init_weights_sha256"):
        check_run_inputs(config)
    assert snapshot(workdir) == before
