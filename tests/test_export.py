"""TFLite export: every mode converts, runs in LiteRT and meets its tolerance; the float32 graph
holds exactly the operators the arch implies; metadata round-trips; bad input fails cleanly."""

import dataclasses
import json
import os
import shutil

import keras
import numpy as np
import pytest

from cli_harness import run_cli
from ofa_tf.arch.layout import build_layout
from ofa_tf.artifacts import build_supernet, load_subnet_model, save_subnet_model, save_supernet
from ofa_tf.data import DatasetInfo
from ofa_tf.export import (ExportCheckError, ExportSettings, SubnetExporter, TFLiteModel, arch_hash,
                           check_graph, expected_float_op_counts, op_counts, output_stem, read_metadata,
                           read_sidecar, to_tflite)
from ofa_tf.export import verify
from ofa_tf.export.exporter import ModelExporter, to_pixels
from ofa_tf.networks.extraction import extract_subnet
from ofa_tf.training.phases import progressive_shrinking_phases
from ofa_tf.training.trainer import OFATrainer

pytest.importorskip("ai_edge_litert")

FAST = dict(n_bn_calibration_images=200, calibration_batch_size=100, n_verify_images=100,
            n_representative_images=50)


def _metadata_available():
    try:
        from ofa_tf.export.metadata import _tflite_support

        _tflite_support()
        return True
    except RuntimeError:
        return False


needs_metadata = pytest.mark.skipif(not _metadata_available(),
                                    reason="tflite-support or libusb-1.0-0 missing (see README)")


@pytest.fixture(scope="module")
def trained(tiny_space, colour_source):
    """A tiny supernet trained for a few dozen steps of sampled subnets on the colour task."""
    keras.utils.set_random_seed(0)
    net = build_supernet(tiny_space, 10, dropout_rate=0.0)
    phase = dataclasses.replace(progressive_shrinking_phases(tiny_space)["expand2"], dynamic_batch_size=1)
    trainer = OFATrainer(net, phase, teacher=None, kd_ratio=0.0, resolutions=(32, 48), seed=0)
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    trainer.fit(colour_source.train(32, 48, seed=0), epochs=1, steps_per_epoch=60, verbose=0)
    return net


@pytest.fixture(scope="module")
def exporter(trained, colour_source):
    return SubnetExporter(trained, colour_source.info, colour_source, source="test")


def _random_archs(space, n, seed):
    rng = np.random.default_rng(seed)
    return [{**space.sample(rng), "r": [int(rng.choice([32, 40, 48]))]} for _ in range(n)]


# The post-training files of one subnet, which the mode, integer-I/O, metadata and client tests
# share: (mode, io_type) -> ExportResult.
EXPORTED = (("float32", "float32"), ("float16", "float32"), ("dynamic_int8", "float32"), ("int8", "float32"),
            ("int8", "int8"), ("int8", "uint8"))


@pytest.fixture(scope="module")
def exported(exporter, tiny_space, tmp_path_factory):
    if not _metadata_available():
        pytest.skip("tflite-support or libusb-1.0-0 missing (see README)")
    arch = {**tiny_space.sample(9), "r": [48]}
    out = str(tmp_path_factory.mktemp("exported"))
    return {(mode, io): exporter.export(arch, out, ExportSettings(mode=mode, io_type=io, version="7", **FAST))
            for mode, io in EXPORTED}


def test_every_post_training_mode_meets_its_tolerance(exported):
    for (mode, io_type), result in exported.items():
        a = result.agreement
        assert a.n == 100
        if mode == "float32":
            assert a.max_abs_diff <= 1e-4, a
        assert a.top1_agreement >= verify.MIN_TOP1_AGREEMENT.get(mode, 1.0), (mode, io_type, a)
        suffix = f"-r48-{mode}" + ("" if io_type == "float32" else f"-io_{io_type}")
        assert result.tflite_path.endswith(suffix + ".tflite")
        # The file on disk is what was verified: run it again from the path.
        runner = TFLiteModel(result.tflite_path)
        assert runner.input_shape == (1, 48, 48, 3)
        sidecar = read_sidecar(result.tflite_path)
        assert sidecar["arch"] == result.arch and sidecar["mode"] == mode
        assert sidecar["verification"]["top1_agreement"] == a.top1_agreement
    # Quantized files are smaller: float16 about half of float32, the int8 ones under half (the
    # graph and metadata are a fixed overhead in files this small).
    sizes = {mode: os.path.getsize(r.tflite_path) for (mode, io), r in exported.items() if io == "float32"}
    assert sizes["float16"] < 0.6 * sizes["float32"]
    assert sizes["dynamic_int8"] < 0.5 * sizes["float32"] and sizes["int8"] < 0.5 * sizes["float32"]


def test_int8_with_integer_input_and_output(exported):
    for io_type in ("int8", "uint8"):
        result = exported["int8", io_type]
        runner = TFLiteModel(result.tflite_path)
        assert np.dtype(runner.input_dtype) == np.dtype(io_type)
        # The input is the raw pixel (uint8) or the pixel - 128 (int8), as a camera hands it over.
        assert runner.input["quantization"] == (1.0, {"uint8": 0, "int8": -128}[io_type])
        assert result.agreement.top1_agreement >= 0.9


def test_pixels_in_probabilities_or_logits_out(exporter, colour_source, tiny_space, tmp_path):
    """The file normalizes per channel itself and ends in a softmax unless logits are asked for;
    the census knows both graphs exactly (the exporter checks them) and they differ by SOFTMAX."""
    arch = {**tiny_space.sample(8), "r": [32]}
    fast = {**FAST, "n_bn_calibration_images": 0}   # the supernet's BN: comparable with its subnet
    files = {output: exporter.export(arch, str(tmp_path / output), ExportSettings(
        output=output, write_metadata=False, **fast)) for output in ("probabilities", "logits")}
    counts = {output: op_counts(r.tflite_path) for output, r in files.items()}
    assert counts["probabilities"] - counts["logits"] == {"SOFTMAX": 1}
    assert counts["logits"] == expected_float_op_counts(exporter.supernet.layout, arch, 32, pixel_input=True)
    images, _ = next(iter(colour_source.val(8, 32)))
    pixels = to_pixels(images, colour_source.info)
    assert pixels.min() >= 0 and pixels.max() > 200 and np.all(pixels == np.round(pixels))
    probabilities = TFLiteModel(files["probabilities"].tflite_path)(pixels)
    logits = TFLiteModel(files["logits"].tflite_path)(pixels)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probabilities, keras.ops.softmax(logits).numpy(), atol=1e-5)
    # The logits are the plain subnet's on the pixels normalized per channel.
    info = colour_source.info
    normalized = (pixels / 255.0 - np.array(info.mean, np.float32)) / np.array(info.std, np.float32)
    plain = extract_subnet(exporter.supernet, arch, 32)
    np.testing.assert_allclose(logits, plain(normalized, training=False), atol=1e-4)
    with pytest.raises(ValueError, match="unknown output 'scores'"):
        ExportSettings(output="scores")


@pytest.mark.parametrize("pick", ["largest", "smallest", "random1", "random2"])
def test_float32_graph_is_exactly_the_ops_the_arch_implies(trained, tiny_space, pick):
    arch = {"largest": tiny_space.largest(48), "smallest": tiny_space.smallest(32),
            "random1": {**tiny_space.sample(11), "r": [40]},
            "random2": {**tiny_space.sample(12), "r": [56]}}[pick]
    size = arch["r"][0]
    model = extract_subnet(trained, arch, size, batch_size=1)
    tflite = to_tflite(model, "float32")
    counts = op_counts(tflite)
    blocks = trained.layout.active_blocks(tiny_space.validate(arch), size)
    assert counts["DEPTHWISE_CONV_2D"] == len(blocks)     # one per active block, skipped ones absent
    assert not set(counts) & verify.FORBIDDEN_OPS
    assert not set(counts) & {"BATCH_NORM", "RSQRT", "SUB"}  # BN folded
    assert counts == expected_float_op_counts(trained.layout, arch, size)
    assert check_graph(tflite, trained.layout, arch, size) == counts
    # The check can fail: against another depth it reports the difference.
    other = {**arch, "d": [max(1, d - 1) if i == 0 else d for i, d in enumerate(arch["d"])]}
    if other["d"] != arch["d"]:
        with pytest.raises(ExportCheckError, match="DEPTHWISE_CONV_2D"):
            check_graph(tflite, trained.layout, other, size)


def test_direct_conversion_of_get_active_subnet_is_as_clean_as_the_export(trained, tiny_space):
    """A user's own ``from_keras_model`` of ``get_active_subnet(...)`` (free batch dimension)
    gives exactly the operators of our batch-1 export: no SHAPE / STRIDED_SLICE / PACK."""
    import tensorflow as tf

    arch = {**tiny_space.sample(13), "r": [40]}
    trained.set_active_subnet(**arch)
    model = trained.get_active_subnet(image_size=40)
    assert model.inputs[0].shape[0] is None
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert check_graph(tflite, trained.layout, arch, 40) == op_counts(to_tflite(
        extract_subnet(trained, arch, 40, batch_size=1), "float32"))
    # The graph check catches a free batch dimension's run-time shape ops.
    inputs = keras.Input((4,))
    flat = keras.Model(inputs, keras.layers.Flatten()(keras.layers.Reshape((2, 2))(inputs)))
    with pytest.raises(ExportCheckError, match="STRIDED_SLICE"):
        check_graph(tf.lite.TFLiteConverter.from_keras_model(flat).convert())


def test_metadata_round_trips(exported, colour_source):
    result = exported["dynamic_int8", "float32"]
    meta = read_metadata(result.tflite_path)
    info = colour_source.info
    # One mean / std for all channels, what MediaPipe Tasks accepts: the model normalizes itself.
    assert (meta["mean"], meta["std"], meta["output"]) == ([0.0], [1.0], "probabilities")
    assert meta["class_names"] == info.class_names
    assert meta["version"] == "7"
    assert meta["name"] == os.path.splitext(os.path.basename(result.tflite_path))[0]
    described = json.loads(meta["description"].split("arch=", 1)[1])
    assert described == {k: list(v) for k, v in result.arch.items()}
    # Metadata does not change what the model computes.
    assert result.agreement.top1_agreement >= 0.9


def _client_python(name):
    from ofa_tf.export import clients

    try:
        return clients.client_python(name)
    except RuntimeError as err:   # no package index: the environment cannot be made
        pytest.skip(f"no {name} environment: {err}")


def test_mediapipe_and_task_library_classify_with_the_exported_files(exported, colour_source):
    """The real clients (each in its own cached virtual environment, `ofa_tf.export.clients`)
    load float32, int8 and int8 with uint8 I/O files as they are, name the packed labels, and
    agree with LiteRT's top-1 on >= 97 % of 200 validation images of the colour task."""
    from ofa_tf.export import clients

    for name in clients.CLIENTS:
        _client_python(name)
    images, _ = next(iter(colour_source.val(200, 48)))
    pixels = to_pixels(images, colour_source.info).astype(np.uint8)
    class_names = colour_source.info.class_names
    for mode, io_type in (("float32", "float32"), ("int8", "float32"), ("int8", "uint8")):
        result = exported[mode, io_type]
        litert = TFLiteModel(result.tflite_path)(pixels.astype(np.float32))
        for name in clients.CLIENTS:
            got = clients.classify(name, result.tflite_path, pixels)
            agreement = np.mean(got.index == litert.argmax(1))
            print(f"{name} {mode} io {io_type}: top-1 agreement with LiteRT {100 * agreement:.1f} %")
            assert agreement >= 0.97, (name, mode, io_type, agreement)
            assert got.category_names == [class_names[i] for i in got.index]
            assert len(set(got.category_names)) > 3          # the task's classes, not one guess
            # Probabilities: the score of the class a client picks is the file's own softmax
            # output for that class. In int8 the clients' kernels round through the network
            # differently from LiteRT's: measured median 1, 95th percentile 4 and max 8 steps of
            # the output's 1/256 scale (the same in both clients), where a logit or a softmax of
            # the probabilities would be off by far more.
            steps = np.abs(got.scores - litert[np.arange(len(got.index)), got.index]) * 256
            if mode == "float32":
                assert steps.max() <= 256e-5, (name, mode, io_type, steps.max() / 256)
            else:
                assert np.median(steps) <= 2 and steps.max() <= 16, (name, mode, io_type, np.median(steps),
                                                                     steps.max())


def test_failed_verification_writes_nothing(exporter, tiny_space, tmp_path, monkeypatch):
    monkeypatch.setitem(verify.MAX_ABS_DIFF, "float32", 0.0)
    with pytest.raises(ExportCheckError, match="max"):
        exporter.export({**tiny_space.sample(1), "r": [32]}, str(tmp_path / "out"),
                        ExportSettings(write_metadata=False, **FAST))
    assert not list((tmp_path / "out").iterdir())


def test_existing_output_is_kept_without_overwrite(exporter, exported, tmp_path):
    first = exported["float32", "float32"]
    stem = os.path.splitext(first.tflite_path)[0]
    for ext in (".tflite", ".json"):
        shutil.copy(stem + ext, tmp_path)
    copy = str(tmp_path / os.path.basename(first.tflite_path))
    before = open(copy, "rb").read()
    settings = ExportSettings(version="7", **FAST)
    with pytest.raises(FileExistsError, match="already exists"):
        exporter.export(first.arch, str(tmp_path), settings)
    assert open(copy, "rb").read() == before
    again = exporter.export(first.arch, str(tmp_path), dataclasses.replace(settings, overwrite=True))
    assert again.tflite_path == copy and read_sidecar(copy)["verification"]["n"] == 100


def test_output_name_depends_only_on_what_the_subnet_computes(tiny_space):
    arch = tiny_space.validate({**tiny_space.sample(2), "d": [1] * tiny_space.n_stages})
    skipped = tiny_space.stage_slots(0)[1]                       # a slot depth 1 leaves out
    other_ks = [k for k in tiny_space.ks_list if k != arch["ks"][skipped]][0]
    same = {**arch, "ks": [other_ks if i == skipped else k for i, k in enumerate(arch["ks"])]}
    assert output_stem(same, tiny_space, 32, "int8", "float32") == output_stem(arch, tiny_space, 32, "int8",
                                                                            "float32")
    active = tiny_space.stage_slots(0)[0]
    changed = {**arch, "ks": [other_ks if i == active else k for i, k in enumerate(arch["ks"])]}
    assert arch_hash(changed, tiny_space) != arch_hash(arch, tiny_space)
    assert output_stem(arch, tiny_space, 32, "int8", "uint8").endswith("-r32-int8-io_uint8")


# ----------------------------------------------------------------------------- command line

def _cli(*args):
    return run_cli("ofa_tf.export", *args)


@pytest.fixture(scope="module")
def demo_workdir(trained, tmp_path_factory):
    """The trained supernet saved as a training run on the embedded data would save it."""
    path = tmp_path_factory.mktemp("workdir")
    info = DatasetInfo(name="demo", class_names=[str(k) for k in range(10)], n_train=6000, n_val=1500,
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    save_supernet(trained, info, str(path))
    return path


def _one_error_line(result, *fragments):
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_exports_keras_and_saved_model_then_verifies(demo_workdir, tmp_path):
    out = tmp_path / "exports"
    result = _cli(f"--supernet={demo_workdir}", '--arch={"ks": 3, "e": 3, "d": 1}', "--resolution=40",
                  f"--out_dir={out}",
                  "--save_keras", "--save_saved_model", "--nometadata", "--n_bn_calibration_images=100",
                  "--calibration_batch_size=50", "--n_verify_images=20")
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    stem = names[0].rsplit(".", 1)[0]
    assert names == sorted(f"{stem}{ext}" for ext in (".json", ".keras", ".saved_model", ".tflite"))
    assert stem.endswith("-r40-float32") and "top-1 agreement 100.0 %" in result.stdout
    # The .keras subnet computes what the .tflite computes.
    keras_model = keras.models.load_model(out / f"{stem}.keras")
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3)).astype(np.float32)
    np.testing.assert_allclose(TFLiteModel(str(out / f"{stem}.tflite"))(images),
                               keras_model(images, training=False), atol=1e-4)

    verified = _cli(f"--supernet={demo_workdir}", f"--verify={out / (stem + '.tflite')}",
                    "--n_verify_images=20")
    assert verified.returncode == 0, verified.stderr[-3000:]
    assert "OK (float32" in verified.stdout
    # Against other weights the same file fails verification, with exit code 1.
    other = _cli("--space=tiny", "--seed=5", f"--verify={out / (stem + '.tflite')}", "--n_verify_images=20")
    assert other.returncode == 1
    _one_error_line(other, "verification failed", "max |Δoutput|")


@pytest.fixture(scope="module")
def saved_subnet(trained, tiny_space, tmp_path_factory):
    """A subnet of the trained supernet saved as a plain .keras model with its JSON, its BN
    statistics changed (as fine-tuning would change them), for the demo data."""
    arch = {**tiny_space.sample(6), "r": [40]}
    model = extract_subnet(trained, arch, 40)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(layer.moving_mean * 0.9)
    info = DatasetInfo(name="demo", class_names=[str(k) for k in range(10)], n_train=6000, n_val=1500,
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    path = str(tmp_path_factory.mktemp("finetuned") / "subnet.keras")
    save_subnet_model(model, path, arch=arch, space=tiny_space, info=info, dataset="demo")
    return path, model, arch


@needs_metadata
def test_saved_subnet_exports_float32_and_qat_with_its_own_statistics(saved_subnet, colour_source, tiny_space,
                                                                   tmp_path):
    path, model, arch = saved_subnet
    loaded, info, meta = load_subnet_model(path)
    assert meta["arch"] == tiny_space.validate(arch) and info.class_names == [str(k) for k in range(10)]
    exporter = ModelExporter(loaded, colour_source.info, colour_source, meta["arch"], meta["space"])
    float32 = exporter.export(None, str(tmp_path), ExportSettings(mode="float32", **FAST))
    images, _ = next(iter(colour_source.val(16, 40)))
    pixels, norm = to_pixels(images, colour_source.info), colour_source.info
    normalized = (pixels / 255.0 - np.array(norm.mean, np.float32)) / np.array(norm.std, np.float32)
    # Exactly the saved model (no BN recalibration): its softmax of the normalized pixels.
    np.testing.assert_allclose(TFLiteModel(float32.tflite_path)(pixels),
                               keras.ops.softmax(model(normalized, training=False)).numpy(), atol=1e-5)
    assert exporter.verify_file(float32.tflite_path)["verification"]["max_abs_diff"] <= 1e-4
    # Quantization-aware: a few fine-tuning steps of the fake-quantized model, then integer.
    qat = exporter.export(None, str(tmp_path), ExportSettings(mode="qat_int8", qat_steps=3,
                                                              qat_batch_size=16, **FAST))
    assert len(qat.qat_losses) == 3 and all(np.isfinite(qat.qat_losses))
    assert qat.agreement.top1_agreement >= 0.9            # against the fake-quantized Keras model
    assert qat.float_agreement.n == 100                    # and reported against the float subnet
    counts = op_counts(qat.tflite_path)
    blocks = build_layout(tiny_space, 10).active_blocks(tiny_space.validate(arch), 40)
    assert counts["DEPTHWISE_CONV_2D"] == len(blocks)
    assert not set(counts) & verify.FORBIDDEN_OPS
    assert TFLiteModel(qat.tflite_path)(pixels[:2]).shape == (2, 10)
    with pytest.raises(ValueError, match="exports as the subnet it is"):
        exporter.export({**arch, "r": [48]}, str(tmp_path), ExportSettings(**FAST))


def test_cli_exports_a_saved_subnet_and_rejects_an_arch_with_it(saved_subnet, tmp_path):
    path, _, arch = saved_subnet
    out = tmp_path / "exports"
    result = _cli(f"--model={path}", "--mode=float32", f"--out_dir={out}", "--n_verify_images=20",
                  "--output=logits")
    assert result.returncode == 0, result.stderr[-3000:]
    tflite = next(out.glob("*.tflite"))
    assert read_sidecar(str(tflite))["output"] == "logits" and "top-1 agreement 100.0 %" in result.stdout
    assert read_metadata(str(tflite))["output"] == "logits"
    clash = _cli(f"--model={path}", '--arch={"ks": 3, "e": 3, "d": 1}', f"--out_dir={tmp_path / 'x'}")
    assert clash.returncode == 2
    _one_error_line(clash, "--model brings its own arch", "--arch")


def test_cli_bad_arch_is_one_clear_error(demo_workdir, tmp_path):
    result = _cli(f"--supernet={demo_workdir}", '--arch={"ks": 9, "e": 3, "d": 2}', f"--out_dir={tmp_path}")
    assert result.returncode == 2
    _one_error_line(result, "ks", "9")
    assert not list(tmp_path.iterdir())


def test_cli_checkpoint_from_another_space_is_one_clear_error(demo_workdir, tmp_path):
    weights = str(demo_workdir / "supernet.weights.h5")
    result = _cli(f"--weights={weights}", "--space=mbv3_w1.0", "--n_classes=10", "--preset=max",
                  f"--out_dir={tmp_path}")
    assert result.returncode == 2
    _one_error_line(result, weights, "does not fit")


def test_cli_unwritable_output_path_is_one_clear_error(demo_workdir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = _cli(f"--supernet={demo_workdir}", "--preset=max", f"--out_dir={blocker / 'exports'}")
    assert result.returncode == 2
    _one_error_line(result, "cannot write to output directory", str(blocker / "exports"))
