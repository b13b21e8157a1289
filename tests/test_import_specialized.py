"""The reference's specialized subnets (static net.config + init) imported as Keras models: small
MobileNetV3 and ProxylessNASNets configs written by the reference's ``ofa`` package with random
weights and BN statistics give its logits (Keras and, through ``ofa_tf.export``, float32 .tflite),
params and MACs; ``--to_arch`` finds the preset space of a subnet; bad configs and inits are refused.
Behind OFA_TF_SPECIALIZED_REFERENCE, the same on the reference's four published configs."""

import copy
import json
import os

import numpy as np
import pytest

from cli_harness import run_cli, snapshot
from conftest import images
from ofa_tf.arch.complexity import layer_counts, profile_layout, profile_model
from ofa_tf.interop.import_specialized import import_specialized, read_specialized
from ofa_tf.interop.reference_config import NotASubnetError, preset_arch
from ofa_tf.interop.reference_mapping import CheckpointMismatchError
from reference_data import randomize_reference_tensors, reference_file, reference_modules

SIZE = 40
# The published configs are 144-236 px: their Keras and .tflite checks take minutes.
REFERENCE_VARIABLE = "OFA_TF_SPECIALIZED_REFERENCE"


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # beside TensorFlow's thread pools its forwards run faster
    yield torch
    torch.set_num_threads(threads)


def _write(directory, config, image_size, state_dict, torch):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "net.config"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(directory, "run.config"), "w") as f:
        json.dump({"image_size": image_size}, f)
    torch.save({"state_dict": state_dict}, os.path.join(directory, "init"))
    return directory


@pytest.fixture(scope="module")
def specialized(torch, tmp_path_factory):
    """Per family, a directory with a reference static subnet's net.config, run.config and init
    (a random shallow subnet of a w0.25 supernet, every tensor random) and that torch net."""
    networks, = reference_modules("ofa.imagenet_classification.elastic_nn.networks")
    root, out = tmp_path_factory.mktemp("specialized"), {}
    supernets = {"MobileNetV3": networks.OFAMobileNetV3, "ProxylessNASNets": networks.OFAProxylessNASNets}
    for seed, (name, supernet_class) in enumerate(supernets.items()):
        supernet = supernet_class(n_classes=10, width_mult=0.25, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                                  depth_list=[1, 2])
        supernet.sample_active_subnet()
        # Shallow (converting to .tflite costs per layer), with one residual block in stage 2.
        supernet.set_active_subnet(d=[1, 2, 1, 1, 1, 1][:len(supernet.block_group_info)])
        ref = randomize_reference_tensors(torch, supernet.get_active_subnet(preserve_weight=False), seed)
        assert type(ref).__name__ == name
        out[name] = (_write(str(root / name), ref.config, SIZE, ref.state_dict(), torch), ref)
    return out


def _reference_logits(torch, ref, x_nhwc):
    with torch.no_grad():
        return ref(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


def _reference_counts(utils, ref, net, image_size):
    """Our (MACs, params) as the reference's counters give them: ``count_net_flops`` adds per-layer
    float32 counts in float32, so our exact per-layer counts are added the same way."""
    macs = np.float32(0)
    for _, layer_macs, _ in layer_counts(net.layout, net.arch, image_size):
        macs = np.float32(macs + np.float32(layer_macs))
    ours = profile_layout(net.layout, net.arch, image_size)
    theirs = (utils.count_net_flops(ref, (1, 3, image_size, image_size)), utils.count_parameters(ref))
    return (float(macs), ours.params), theirs


def test_imported_subnets_give_the_reference_logits_params_and_macs(torch, specialized, tmp_path):
    utils, = reference_modules("ofa.utils")
    for name, (directory, ref) in specialized.items():
        result = import_specialized(os.path.join(directory, "net.config"), str(tmp_path / name),
                                    init=os.path.join(directory, "init"))
        net, model = result["net"], result["model"]
        x = images(2, SIZE, seed=1)
        expected = _reference_logits(torch, ref, x)
        delta = np.abs(model(x, training=False).numpy() - expected).max()
        print(f"{name}: {len(net.arch['ks']) + 1} blocks, max |delta logits| = {delta:.2e}")
        assert np.abs(expected).max() > 0.1 and delta <= 1e-4
        ours, theirs = _reference_counts(utils, ref, net, SIZE)
        assert ours == theirs
        assert profile_model(model) == profile_layout(net.layout, net.arch, SIZE)
        # Saved as the .keras + JSON pair export --model reads; nothing else in --out.
        assert sorted(os.listdir(tmp_path / name)) == ["model.json", "model.keras"]
        assert result["model_path"] == str(tmp_path / name / "model.keras")


def test_cli_imports_and_export_makes_a_float32_tflite_with_the_reference_logits(torch, specialized, tmp_path):
    pytest.importorskip("ai_edge_litert")
    from ofa_tf.data import IMAGENET_MEAN, IMAGENET_STD
    from ofa_tf.export.verify import TFLiteModel

    directory, ref = specialized["MobileNetV3"]
    run = run_cli("ofa_tf.interop.import_specialized", f"--net_config={directory}/net.config",
                  f"--init={directory}/init", "--out=imported", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Imported specialized subnet: MobileNetV3" in run.stdout and "10 classes" in run.stdout
    export = run_cli("ofa_tf.export", "--model=imported/model.keras", "--mode=float32", "--output=logits",
                     "--n_verify_images=8", "--out_dir=exports", cwd=tmp_path)
    assert export.returncode == 0, export.stderr[-3000:]
    tflites = [p for p in os.listdir(tmp_path / "exports") if p.endswith(".tflite")]
    assert len(tflites) == 1
    pixels = np.random.default_rng(2).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    normalized = ((pixels / 255 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)).astype(np.float32)
    expected = _reference_logits(torch, ref, normalized)
    delta = np.abs(TFLiteModel(str(tmp_path / "exports" / tflites[0]))(pixels) - expected).max()
    print(f"MobileNetV3 float32 .tflite: max |delta logits| = {delta:.2e}")
    assert delta <= 1e-4


def test_to_arch_gives_the_preset_arch_whose_reference_subnet_is_the_config(torch, tmp_path):
    networks, = reference_modules("ofa.imagenet_classification.elastic_nn.networks")
    supernet = networks.OFAMobileNetV3(n_classes=1000, width_mult=1.2, ks_list=[3, 5, 7],
                                       expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    supernet.set_active_subnet(ks=[3, 5, 7, 3] * 5, e=[6, 4, 3, 4] * 5, d=[2, 4, 3, 2, 4])
    config = supernet.get_active_subnet(preserve_weight=False).config
    directory = str(tmp_path / "w12")
    os.makedirs(directory)
    with open(os.path.join(directory, "net.config"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(directory, "run.config"), "w") as f:
        json.dump({"image_size": 208}, f)
    result = import_specialized(os.path.join(directory, "net.config"), None, to_arch=True)
    assert result["preset"] == "mbv3_w1.2" and result["model"] is None
    arch = result["preset_arch"]
    assert arch["d"] == [2, 4, 3, 2, 4] and arch["r"] == [208]
    supernet.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
    assert supernet.get_active_subnet(preserve_weight=False).config == config


def test_bad_configs_and_inits_are_refused_naming_the_mismatch(torch, specialized, tmp_path):
    directory, ref = specialized["MobileNetV3"]
    net_config = os.path.join(directory, "net.config")
    with pytest.raises(NotASubnetError, match=r"not a subnet of any preset space: tiny: net\.config has 5 "
                       r"stages, the space 4; mbv3_w1\.0: stage 1 has 1 blocks, the space allows \[2, 3, 4\]"):
        preset_arch(read_specialized(net_config))
    with open(net_config) as f:
        config = json.load(f)
    cases = []
    wider = copy.deepcopy(config)   # a middle width the reference's rule would not give
    block = wider["blocks"][2]
    block.get("conv", block.get("mobile_inverted_conv"))["mid_channels"] += 8
    cases.append((wider, r"blocks\.2\.mid is \d+ in net\.config, \d+ in the layout"))
    no_shortcut = copy.deepcopy(config)
    residual = next(i for i, b in enumerate(no_shortcut["blocks"]) if i > 0 and b["shortcut"])
    no_shortcut["blocks"][residual]["shortcut"] = None
    cases.append((no_shortcut, rf"blocks\.{residual}\.residual is False"))
    swish = copy.deepcopy(config)
    swish["blocks"][1].get("conv", swish["blocks"][1].get("mobile_inverted_conv"))["act_func"] = "swish"
    cases.append((swish, "activation 'swish'"))
    for i, (bad, pattern) in enumerate(cases):
        bad_dir = tmp_path / f"bad{i}"
        bad_dir.mkdir()
        (bad_dir / "net.config").write_text(json.dumps(bad))
        (bad_dir / "run.config").write_text(json.dumps({"image_size": SIZE}))
        with pytest.raises(ValueError, match=pattern):
            import_specialized(str(bad_dir / "net.config"), str(tmp_path / "never"))
    # An init of another subnet: the tensors that differ are named, nothing is written.
    other_dir, _ = specialized["ProxylessNASNets"]
    (tmp_path / "out").mkdir()
    before = snapshot(tmp_path / "out")
    with pytest.raises(CheckpointMismatchError, match=r"init does not fit net\.config \(MobileNetV3.*tensor"):
        import_specialized(net_config, str(tmp_path / "out"), init=os.path.join(other_dir, "init"))
    assert snapshot(tmp_path / "out") == before and not (tmp_path / "never").exists()


@pytest.mark.skipif(not os.environ.get(REFERENCE_VARIABLE), reason=f"set {REFERENCE_VARIABLE}=1 (minutes)")
def test_the_reference_published_configs(torch, tmp_path):
    """Each of the reference's published specialized configs with random weights in its own static
    model: our Keras model and its float32 .tflite within 1e-4 of the torch logits, params and MACs
    equal to the reference's counters, and the preset space it is a subnet of."""
    pytest.importorskip("ai_edge_litert")
    from ofa_tf.export.converter import to_tflite
    from ofa_tf.export.verify import TFLiteModel
    from ofa_tf.interop.import_specialized import build_specialized_model

    root = reference_file("ofa", "specialized")
    networks, utils = reference_modules("ofa.imagenet_classification.networks", "ofa.utils")
    for seed, name in enumerate(sorted(os.listdir(root))):
        with open(os.path.join(root, name, "net.config")) as f:
            config = json.load(f)
        ref = getattr(networks, config["name"]).build_from_config(copy.deepcopy(config))
        ref = randomize_reference_tensors(torch, ref, seed)
        image_size = read_specialized(os.path.join(root, name, "net.config")).image_size
        directory = _write(str(tmp_path / name), config, image_size, ref.state_dict(), torch)
        result = import_specialized(os.path.join(directory, "net.config"), None,
                                    init=os.path.join(directory, "init"), to_arch=True)
        net, model = result["net"], result["model"]
        x = images(1, net.image_size, seed=seed)
        expected = _reference_logits(torch, ref, x)
        keras_delta = np.abs(model(x, training=False).numpy() - expected).max()
        single = build_specialized_model(net, batch_size=1)
        single.set_weights(model.get_weights())
        tflite_delta = np.abs(TFLiteModel(to_tflite(single, "float32"))(x) - expected).max()
        ours, theirs = _reference_counts(utils, ref, net, net.image_size)
        profile = profile_layout(net.layout, net.arch, net.image_size)
        print(f"{name}: {config['name']} {net.image_size} px, subnet of {result['preset']}, "
              f"max |delta logits| Keras {keras_delta:.2e}, tflite {tflite_delta:.2e}, "
              f"{profile.params:,} params, {profile.macs:,} MACs (reference: {theirs[1]:,} params, "
              f"{theirs[0]:,.0f} MACs)")
        assert np.abs(expected).max() > 0.1
        assert keras_delta <= 1e-4 and tflite_delta <= 1e-4
        assert ours == theirs
