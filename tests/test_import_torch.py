"""Import of the reference's PyTorch OFA-MobileNetV3: same outputs, exact round trip, clear refusals.

The comparison tests build the reference's own ``OFAMobileNetV3`` from the ``ofa`` package
(PyPI, installed --no-deps) and are skipped where torch or ofa is not installed. The
refusal tests need neither: they feed state_dicts made by our inverse mapping.
"""

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cli_harness import run_cli
from ofa_tf.artifacts import load_supernet
from ofa_tf.interop import CheckpointMismatchError, load_reference_state_dict, reference_state_dict
from ofa_tf.interop.reference_mapping import reference_links
from ofa_tf.networks import OFAMobileNetV3

REPO_ROOT = Path(__file__).resolve().parents[1]
RESOLUTIONS = (128, 140)  # 140 gives odd sizes before the stride-2 convs, where padding matters
N_SUBNETS = 10


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def reference_class(torch):
    pytest.importorskip("ofa")
    from ofa_tf.interop.reference_package import import_reference

    return import_reference("ofa.imagenet_classification.elastic_nn.networks").OFAMobileNetV3


def smooth_images(rng, batch, size):
    """NCHW inputs with per-image low-frequency content, so pooled features differ by image."""
    colour = 2.0 * rng.standard_normal((batch, 3, 1, 1))
    blocks = np.repeat(np.repeat(rng.standard_normal((batch, 3, 4, 4)), size // 4, 2), size // 4, 3)
    return (colour + blocks + 0.3 * rng.standard_normal((batch, 3, size, size))).astype(np.float32)


def randomized_reference(torch, reference_class, seed=0):
    """The reference w1.0 supernet with every tensor random: weights, biases, BN affine,
    kernel transform matrices (identity + noise) and BN statistics (measured on a batch,
    then perturbed), so no mapping mistake can hide behind an initial value."""
    generator = torch.Generator().manual_seed(seed)
    ref = reference_class(width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])

    def noise(shape):
        return torch.randn(shape, generator=generator)

    with torch.no_grad():
        for name, tensor in ref.state_dict().items():
            if not tensor.is_floating_point() or "running_" in name:
                continue
            if "bn." in name and name.endswith(".weight"):
                # Small gammas on the projections keep residual sums (and logits) near unit scale.
                low, high = (0.1, 0.5) if "point_linear" in name else (0.5, 1.5)
                tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))
            elif name.endswith("_matrix"):
                tensor.copy_(torch.eye(tensor.shape[0]) + 0.1 * noise(tensor.shape))
            elif tensor.dim() > 1:
                tensor.copy_(noise(tensor.shape) * 1.5 / float(np.prod(tensor.shape[1:])) ** 0.5)
            else:
                tensor.copy_(0.2 * noise(tensor.shape))
        ref.set_bn_param(momentum=1.0, eps=1e-5)  # running stats := one batch's statistics
        ref.train()
        ref(torch.from_numpy(smooth_images(np.random.default_rng(seed), 32, 128)))
        ref.set_bn_param(momentum=0.1, eps=1e-5)
        for name, tensor in ref.state_dict().items():
            if name.endswith("running_var"):
                tensor.mul_(1.0 + 0.5 * torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.add_(0.1 * noise(tensor.shape))
    return ref.eval()


@pytest.fixture(scope="module")
def imported_pair(torch, reference_class):
    ref = randomized_reference(torch, reference_class)
    net = OFAMobileNetV3(n_classes=1000, width_mult=1.0)
    load_reference_state_dict(net, ref.state_dict())
    return ref, net


def reference_logits(torch, ref, arch, x_nchw):
    ref.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
    with torch.no_grad():
        return ref(torch.from_numpy(x_nchw)).numpy()


def test_imported_supernet_matches_reference_on_random_subnets(torch, imported_pair):
    ref, net = imported_pair
    space, rng = net.space, np.random.default_rng(0)
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(N_SUBNETS - 2)]
    # One graph serves every subnet and size (the active subnet lives in variables).
    forward = tf.function(lambda images: net(images, training=False),
                          input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    deltas, spreads = [], []
    for arch in archs:
        net.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
        for size in RESOLUTIONS:
            x = smooth_images(rng, 2, size)
            expected = reference_logits(torch, ref, arch, x)
            got = forward(np.transpose(x, (0, 2, 3, 1))).numpy()
            deltas.append(float(np.abs(got - expected).max()))
            spreads.append(float(expected.std()))
    print(f"{len(archs)} subnets x {RESOLUTIONS}: max |delta logits| = {max(deltas):.2e}, "
          f"logit std >= {min(spreads):.2f}")
    assert min(spreads) > 0.1, "logits too flat for the comparison to mean anything"
    assert max(deltas) <= 1e-4


def test_reference_state_dict_round_trips_exactly(torch, reference_class, imported_pair):
    ref, net = imported_pair
    exported = reference_state_dict(net)
    original = ref.state_dict()
    assert set(exported) == set(original)
    for name, tensor in original.items():
        if tensor.is_floating_point():
            np.testing.assert_array_equal(exported[name], tensor.numpy(), err_msg=name)
    # PyTorch's strict loader accepts the exported dict as it is.
    fresh = reference_class(width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    torch.nn.Module.load_state_dict(fresh, {k: torch.from_numpy(np.asarray(v)) for k, v in exported.items()})
    np.testing.assert_array_equal(fresh.blocks[5].conv.depth_conv.conv.__getattr__("7to5_matrix").detach().numpy(),
                                  original["blocks.5.conv.depth_conv.conv.7to5_matrix"].numpy())


@pytest.fixture(scope="module")
def imported_workdir(torch, imported_pair, tmp_path_factory):
    """The reference's weights saved as a .pth and imported the way a user would."""
    from ofa_tf.interop.import_torch import import_reference_checkpoint

    ref, _ = imported_pair
    root = tmp_path_factory.mktemp("import")
    checkpoint = root / "ofa_mbv3_w1.0.pth"
    torch.save({"state_dict": ref.state_dict()}, checkpoint)
    import_reference_checkpoint(str(checkpoint), str(root / "out"))
    return checkpoint, root / "out"


def test_tflite_subnet_of_imported_supernet_matches_reference(torch, imported_pair, imported_workdir, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from ofa_tf.export import ExportSettings, SubnetExporter, TFLiteModel

    ref, _ = imported_pair
    net, info, _ = load_supernet(str(imported_workdir[1]))
    arch = {**net.space.sample(11), "r": [140]}
    # The imported BN statistics are the reference's: no recalibration, no data set needed.
    settings = ExportSettings(n_bn_calibration_images=0, n_verify_images=2, write_metadata=False,
                              output="logits")
    result = SubnetExporter(net, info, None, source=str(imported_workdir[1])).export(arch, str(tmp_path), settings)
    x = smooth_images(np.random.default_rng(11), 2, 140)
    # The file takes pixels and normalizes them itself.
    pixels = (np.transpose(x, (0, 2, 3, 1)) * np.array(info.std) + np.array(info.mean)) * 255.0
    got = TFLiteModel(result.tflite_path)(pixels)
    delta = np.abs(got - reference_logits(torch, ref, arch, x)).max()
    print(f"TFLite subnet at 140 px vs PyTorch reference: max |delta logits| = {delta:.2e}")
    assert delta <= 1e-3


def test_import_checkpoint_file_gives_a_loadable_workdir(torch, imported_pair, imported_workdir):
    from ofa_tf.interop.import_torch import import_reference_checkpoint

    ref, _ = imported_pair
    checkpoint, out = imported_workdir
    assert sorted(os.listdir(out)) == ["supernet.json", "supernet.weights.h5"]
    net, info, meta = load_supernet(str(out))
    assert (info.num_classes, net.space.width_mult, meta["imported_from"]["checkpoint"]) == \
        (1000, 1.0, str(checkpoint))
    arch = net.space.sample(3)
    net.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
    x = smooth_images(np.random.default_rng(3), 2, 128)
    got = net(np.transpose(x, (0, 2, 3, 1)), training=False).numpy()
    assert np.abs(got - reference_logits(torch, ref, arch, x)).max() <= 1e-4
    with pytest.raises(FileExistsError, match="already holds a supernet"):
        import_reference_checkpoint(str(checkpoint), str(out))


def test_export_torch_writes_a_checkpoint_that_imports_back(torch, tiny_net, tiny_space, tmp_path):
    from ofa_tf.artifacts import save_supernet
    from ofa_tf.interop.export_torch import export_reference_checkpoint
    from ofa_tf.interop.import_torch import imagenet_info
    from ofa_tf.interop.torch_checkpoint import read_state_dict

    save_supernet(tiny_net, imagenet_info(10), str(tmp_path / "run"))
    n_tensors = export_reference_checkpoint(str(tmp_path / "run"), str(tmp_path / "tiny.pth"))
    state = read_state_dict(str(tmp_path / "tiny.pth"))
    assert n_tensors == len(state) == len(reference_state_dict(tiny_net))
    other = _fresh_tiny(tiny_space)
    load_reference_state_dict(other, state)
    for a, b in zip(reference_links(tiny_net), reference_links(other)):
        np.testing.assert_array_equal(a.variable.numpy(), b.variable.numpy(), err_msg=a.name)
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        export_reference_checkpoint(str(tmp_path / "run"), str(tmp_path / "tiny.pth"))


# ------------------------------------------------------------------ refusals (no torch needed)
@pytest.fixture()
def tiny_state(tiny_net):
    return dict(reference_state_dict(tiny_net))


def _fresh_tiny(space):
    return OFAMobileNetV3(n_classes=10, space=space, seed=1)


def test_every_supernet_variable_has_a_reference_tensor(tiny_net):
    linked = {id(link.variable) for link in reference_links(tiny_net)}
    floats = [v for v in tiny_net.weights
              if "float" in str(v.dtype) and not v.path.split("/")[-1].startswith("active_")]
    assert len(linked) == len(reference_links(tiny_net))
    assert {id(v) for v in floats} == linked


def test_round_trip_through_reference_names_is_exact(tiny_net, tiny_state, tiny_space):
    other = _fresh_tiny(tiny_space)
    load_reference_state_dict(other, tiny_state)
    for a, b in zip(reference_links(tiny_net), reference_links(other)):
        np.testing.assert_array_equal(a.variable.numpy(), b.variable.numpy(), err_msg=a.name)


def test_legacy_and_data_parallel_names_are_accepted(tiny_net, tiny_state, tiny_space):
    legacy = {}
    for name, value in tiny_state.items():
        name = name.replace(".conv.inverted", ".mobile_inverted_conv.inverted") \
                   .replace(".conv.depth_conv", ".mobile_inverted_conv.depth_conv") \
                   .replace(".conv.point_linear", ".mobile_inverted_conv.point_linear").replace(".bn.bn.", ".bn.")
        legacy["module." + name] = value
    other = _fresh_tiny(tiny_space)
    load_reference_state_dict(other, legacy)
    np.testing.assert_array_equal(other.stage_blocks[1][0].se.reduce.bias.numpy(),
                                  tiny_net.stage_blocks[1][0].se.reduce.bias.numpy())


@pytest.mark.parametrize("change, message", [
    ("drop", "missing tensor 'blocks.4.conv.depth_conv.se.fc.reduce.bias'"),
    ("add", "unexpected tensor 'blocks.4.conv.depth_conv.se.fc.gate'"),
    ("reshape", "tensor 'blocks.4.conv.depth_conv.se.fc.reduce.bias' has shape (23,), expected (24,)"),
])
def test_mismatched_tensor_is_named_and_nothing_is_loaded(tiny_state, tiny_space, change, message):
    name = "blocks.4.conv.depth_conv.se.fc.reduce.bias"
    if change == "drop":
        del tiny_state[name]
    elif change == "add":
        tiny_state["blocks.4.conv.depth_conv.se.fc.gate"] = np.zeros(3, np.float32)
    else:
        tiny_state[name] = tiny_state[name][:-1]
    other = _fresh_tiny(tiny_space)
    before = [v.numpy().copy() for v in other.weights]
    with pytest.raises(CheckpointMismatchError) as err:
        load_reference_state_dict(other, tiny_state)
    assert message in str(err.value)
    for value, var in zip(before, other.weights):
        np.testing.assert_array_equal(value, var.numpy())


def test_wrong_width_mult_says_which_width_the_checkpoint_has(tiny_state, tiny_space):
    wider = dataclasses.replace(tiny_space, width_mult=1.5)
    with pytest.raises(CheckpointMismatchError,
                       match=r"^state_dict was built with width_mult 1, not 1\.5: import it with width_mult 1 "):
        load_reference_state_dict(_fresh_tiny(wider), tiny_state)


def _cli(*args):
    return run_cli("ofa_tf.interop.import_torch", *args, cwd=REPO_ROOT)


def test_cli_explains_where_to_get_a_release_it_cannot_download(tmp_path):
    result = _cli("--checkpoint", str(tmp_path / "ofa_mbv3_d234_e346_k357_w1.0"), "--out", str(tmp_path / "o"))
    last = result.stderr.strip().splitlines()[-1]  # TF's start-up lines may come first
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert last.startswith("error: checkpoint file")
    assert "https://raw.githubusercontent.com/han-cai/files/master/ofa/ofa_nets/ofa_mbv3_d234_e346_k357_w1.0" \
        in last
    assert not (tmp_path / "o").exists()


def test_cli_refuses_a_weights_file_as_out(tmp_path):
    result = _cli("--checkpoint", "x.pth", "--out", str(tmp_path / "supernet.weights.h5"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --out takes a directory")
