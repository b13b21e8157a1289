"""The reference tutorial's accuracy predictor imported: its features, its outputs, its refusals."""

import os

import numpy as np
import pytest

from cli_harness import run_cli
from reference_data import reference_file, reference_modules
from ofa_tf.arch.space import SearchSpace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W12 = SearchSpace.mobilenet_v3(1.2)


@pytest.fixture(scope="module")
def tutorial():
    torch = pytest.importorskip("torch")
    return torch, reference_modules("ofa.tutorial.accuracy_predictor")[0]


def _archs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [W12.sample(rng) for _ in range(n)] + [W12.smallest(), W12.largest()]


def _torch_top1(module, state_dict, archs):
    reference = module.AccuracyPredictor(pretrained=False, device="cpu")
    reference.model.load_state_dict(state_dict)
    return 100 * reference.predict_accuracy([{k: list(v) for k, v in a.items()} for a in archs]).numpy()[:, 0]


def _run(*args):
    return run_cli("ofa_tf.interop.import_predictor", *args)


def test_tutorial_features_are_spec2feats(tutorial):
    from ofa_tf.nas.encoding import TutorialArchEncoder, arch_encoder

    _, module = tutorial
    for space in (W12, SearchSpace.mobilenet_v3(1.0)):
        encoder = TutorialArchEncoder(space)
        archs = [space.sample(seed) for seed in range(200)]
        theirs = np.stack([module.AccuracyPredictor.spec2feats(list(a["ks"]), list(a["e"]), list(a["d"]),
                                                               a["r"][0]).numpy() for a in archs])
        np.testing.assert_array_equal(encoder.encode(encoder.to_batch(archs)), theirs)
    with pytest.raises(ValueError, match="4 stages of up to 3 blocks.*resolutions \\[32, 40, 48, 56, 64\\] are "
                                         "outside the tutorial's bins \\(112-239 px\\)"):
        arch_encoder(SearchSpace.tiny(), "ofa_tutorial")
    with pytest.raises(ValueError, match="unknown arch feature encoding 'binned'"):
        arch_encoder(W12, "binned")


def test_a_random_tutorial_predictor_imports_with_the_same_outputs(tutorial, tmp_path, capsys):
    """A randomly initialized predictor of the ofa package, saved as the tutorial saves its own,
    through the CLI; then the refusals, each one error line, exit 2, nothing written."""
    from ofa_tf.cli import exit_code_of
    from ofa_tf.interop.import_predictor import import_predictor
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor

    torch, module = tutorial
    torch.manual_seed(0)
    random_predictor = module.AccuracyPredictor(pretrained=False, device="cpu")
    state_dict = random_predictor.model.state_dict()
    checkpoint = tmp_path / "acc_predictor.pth"
    torch.save(state_dict, checkpoint)
    out = tmp_path / "nas"
    done = _run(f"--checkpoint={checkpoint}", "--space=mbv3_w1.2", f"--out={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    predictor = AccuracyPredictor.load(str(out / "accuracy_predictor.keras"))
    assert predictor.encoding == "ofa_tutorial" and predictor.space == W12
    archs = _archs()
    ours = 100 * predictor.predict_acc(archs)
    theirs = _torch_top1(module, state_dict, archs)
    assert np.ptp(theirs) > 0.1                            # outputs that differ between archs
    assert np.abs(ours - theirs).max() <= 1e-4
    keras_forward = 100 * predictor.model(predictor.arch_encoder.encode(predictor.arch_encoder.to_batch(archs)))
    assert np.abs(np.asarray(keras_forward)[:, 0] - theirs).max() <= 1e-4

    bad_shape = {**state_dict, "0.weight": torch.zeros(400, 100)}
    torch.save(bad_shape, tmp_path / "bad_shape.pth")
    (tmp_path / "not_torch.pth").write_text("hello")
    refused = tmp_path / "refused"
    cases = [
        ("bad_shape.pth", "mbv3_w1.2", "is not the OFA tutorial's accuracy predictor (acc_predictor.pth): tensor "
         "'0.weight' has shape (400, 100), expected (400, 128)"),
        ("acc_predictor.pth", "tiny", "the tutorial predictor's features cannot encode this search space: it has "
         "4 stages of up to 3 blocks"),
        ("acc_predictor.pth", "mbv3_w1.0", "predicts subnets of the mobilenet_v3 w1.2 supernet; --space is "
         "mobilenet_v3 w1.0"),
        ("not_torch.pth", "mbv3_w1.2", "cannot read"),
    ]
    for name, space, message in cases:      # what the CLI's main runs, in this process
        code = exit_code_of(lambda: import_predictor(str(tmp_path / name), space, str(refused)))
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not refused.exists()
    assert exit_code_of(lambda: import_predictor(str(checkpoint), "mbv3_w1.2", str(out))) == 2
    assert "accuracy_predictor.keras exists; pass --overwrite" in capsys.readouterr().err


def test_the_published_tutorial_predictor_imports_with_the_same_outputs(tutorial, tmp_path):
    from ofa_tf.interop.import_predictor import import_predictor
    from ofa_tf.interop.torch_checkpoint import read_state_dict
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor

    torch, module = tutorial
    checkpoint = reference_file("ofa", "acc_predictor.pth")
    path = import_predictor(checkpoint, "mbv3_w1.2", str(tmp_path))
    predictor = AccuracyPredictor.load(path)
    archs = _archs(seed=1)
    state_dict = {k: torch.from_numpy(v) for k, v in read_state_dict(checkpoint).items()}
    theirs = _torch_top1(module, state_dict, archs)
    ours = 100 * predictor.predict_acc(archs)
    assert 70 < theirs.min() and theirs.max() < 85          # ImageNet top-1 of w1.2 subnets, in %
    assert np.abs(ours - theirs).max() <= 1e-4


# The resolutions the published OFA-ResNet50D predictor's features one-hot (82 features).
RESNET50D_PREDICTOR_SIZES = (128, 144, 160, 176, 192, 224, 240, 256)


def _reference_resnet_predictor(torch, space, state_dict=None):
    """The ofa package's AccuracyPredictor on its ResNetArchEncoder for ``space``."""
    encoders, predictors = reference_modules("ofa.nas.accuracy_predictor.arch_encoder",
                                             "ofa.nas.accuracy_predictor.acc_predictor")
    encoder = encoders.ResNetArchEncoder(
        image_size_list=list(space.resolutions), depth_list=list(space.depth_list),
        expand_list=list(space.expand_ratio_list), width_mult_list=list(space.width_mult_list),
        base_depth_list=[stage.base_depth for stage in space.stages])
    predictor = predictors.AccuracyPredictor(encoder, device="cpu")
    if state_dict is not None:
        predictor.load_state_dict(state_dict)
    return predictor


def _reference_resnet_top1(torch, predictor, archs):
    dicts = [{"d": a["d"], "e": a["e"], "w": a["w"], "image_size": a["r"][0]} for a in archs]
    with torch.no_grad():
        return 100 * predictor.predict_acc(dicts).numpy().reshape(-1)


def test_a_random_resnet_predictor_imports_with_the_same_outputs(tutorial, tmp_path):
    """The reference's predictor class on ResNet features, randomly initialized and saved as the
    reference saves it, through the CLI for --space=resnet_tiny at 3 of its 5 resolutions (as
    the published one encodes other sizes than the preset's)."""
    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor

    torch, _ = tutorial
    space = SearchSpace.resnet_tiny().with_resolutions((32, 48, 64))
    torch.manual_seed(0)
    reference = _reference_resnet_predictor(torch, space)
    with torch.no_grad():
        reference.base_acc.fill_(0.6)
        reference.layers[-1].weight.normal_(0, 0.05)
    checkpoint = tmp_path / "ofa_resnet_tiny_acc_predictor.pth"
    torch.save(reference.state_dict(), checkpoint)
    done = _run(f"--checkpoint={checkpoint}", "--space=resnet_tiny", "--resolutions=64,32,48",
                f"--out={tmp_path / 'nas'}")
    assert done.returncode == 0, done.stderr[-2000:]
    predictor = AccuracyPredictor.load(str(tmp_path / "nas" / "accuracy_predictor.keras"))
    assert predictor.encoding == "resnet_onehot" and predictor.space == space
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(200)] + [space.smallest(), space.largest()]
    theirs = _reference_resnet_top1(torch, reference, archs)
    assert np.ptp(theirs) > 0.1
    assert np.abs(100 * predictor.predict_acc(archs) - theirs).max() <= 1e-4
    wrong = _run(f"--checkpoint={checkpoint}", "--space=resnet50d", f"--out={tmp_path / 'wrong'}")
    assert wrong.returncode == 2 and not (tmp_path / "wrong").exists()
    assert "reads 59 features, but this space encodes to 99 (resnet_onehot features of its 25 resolutions" \
        in wrong.stderr


def test_the_published_resnet_predictor_predicts_as_the_reference(tutorial):
    from ofa_tf.interop.import_predictor import predictor_from_state_dict
    from ofa_tf.interop.torch_checkpoint import read_state_dict

    torch, _ = tutorial
    checkpoint = reference_file("ofa", "ofa_resnet50_acc_predictor.pth")
    space = SearchSpace.resnet50d(resolutions=RESNET50D_PREDICTOR_SIZES)
    state_dict = read_state_dict(checkpoint)
    predictor = predictor_from_state_dict(state_dict, space, checkpoint)
    reference = _reference_resnet_predictor(torch, space, {k: torch.from_numpy(v) for k, v in state_dict.items()})
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(200)] + [space.smallest(), space.largest()]
    theirs = _reference_resnet_top1(torch, reference, archs)
    assert 70 < theirs.min() and theirs.max() < 85          # ImageNet top-1 of ResNet50D subnets, in %
    assert np.abs(100 * predictor.predict_acc(archs) - theirs).max() <= 1e-4
