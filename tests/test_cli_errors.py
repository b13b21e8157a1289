"""The exit policy, over every CLI: bad input gives exit 2, one ``error:`` line naming the thing
at fault, no traceback and no new file; a bug keeps its traceback. One table, one test.

The CLIs run as child processes of one fork server (tests/cli_harness.py), so the table costs
TensorFlow's import once, not once per case.
"""

import json
import os
import shutil

import pytest

from cli_harness import error_lines, snapshot
from ofa_tf.errors import BadInput, MissingDependency, RefusedOverwrite, UserError, user_input

# (id, module, args, fragments the error line must contain). In args, {workdir} is a saved tiny
# supernet; every case runs in a fresh directory holding afile (a regular file), afile.keras, empty.pth,
# notes.pth (text), pickled.pth (a torch file holding a Python class), resnet.config (a net.config of
# an unsupported class), run.config and sub/ (a directory holding a valid net.config, no run.config).
CASES = [
    # train
    ("train-workdir-is-a-file", "ofa_tf.train", ["--workdir=afile"], ["--workdir=afile", "is a file"]),
    ("train-tfds-missing", "ofa_tf.train", ["--workdir=w", "--dataset=tfds:mnist"],
     ["tensorflow-datasets", "pip install"]),
    ("train-init-weights-missing", "ofa_tf.train", ["--workdir=w", "--init_weights=nope.weights.h5"],
     ["--init_weights=nope.weights.h5", "no such file"]),
    ("train-init-weights-not-hdf5", "ofa_tf.train", ["--workdir=w", "--init_weights=afile"],
     ["--init_weights=afile", "not HDF5"]),
    ("train-phase-without-start", "ofa_tf.train", ["--workdir=w", "--phases=expand2"],
     ["'expand2'", "no finished phase before it"]),
    ("train-teacher-init-without-init-weights", "ofa_tf.train", ["--workdir=w", "--teacher=init"],
     ["teacher 'init'", "needs init_weights"]),
    ("train-init-weights-of-another-space", "ofa_tf.train",
     ["--workdir=w", "--space=proxyless_tiny", "--phases=teacher", "--init_weights={workdir}/supernet.weights.h5"],
     ["does not fit this run's supernet (space 'proxyless_tiny'", "is missing from the file"]),
    ("train-phase-order", "ofa_tf.train", ["--workdir=w", "--phases=kernel,teacher"],
     ["progressive-shrinking order"]),
    ("train-bad-batch", "ofa_tf.train", ["--workdir=w", "--batch_size=0"], ["batch_size must be >= 1"]),
    ("train-not-an-int", "ofa_tf.train", ["--workdir=w", "--batch_size=x"], ["--batch_size=x"]),
    ("train-no-workdir", "ofa_tf.train", [], ["--workdir"]),
    ("train-stray-argument", "ofa_tf.train", ["--workdir=w", "extra"], ["unexpected arguments", "extra"]),
    ("train-unknown-flag", "ofa_tf.train", ["--workdir=w", "--bacth_size=8"], ["bacth_size"]),
    # import_torch / export_torch
    ("import-empty-checkpoint", "ofa_tf.interop.import_torch", ["--checkpoint=empty.pth", "--out=o"],
     ["empty.pth", "empty or cut short"]),
    ("import-not-torch", "ofa_tf.interop.import_torch", ["--checkpoint=notes.pth", "--out=o"],
     ["notes.pth", "not a torch.save file"]),
    ("import-python-objects", "ofa_tf.interop.import_torch", ["--checkpoint=pickled.pth", "--out=o"],
     ["pickled.pth", "Python objects"]),
    ("import-out-is-a-file", "ofa_tf.interop.import_torch", ["--checkpoint=notes.pth", "--out=afile"],
     ["--out=afile", "is a file"]),
    ("import-out-is-weights", "ofa_tf.interop.import_torch", ["--checkpoint=notes.pth", "--out=x.weights.h5"],
     ["--out takes a directory"]),
    ("import-release-not-downloaded", "ofa_tf.interop.import_torch",
     ["--checkpoint=ofa_mbv3_d234_e346_k357_w1.0", "--out=o"], ["does not download", "https://"]),
    ("import-refuses-overwrite", "ofa_tf.interop.import_torch", ["--checkpoint=notes.pth", "--out={workdir}"],
     ["already holds a supernet", "--overwrite"]),
    ("import-bad-resolutions", "ofa_tf.interop.import_torch",
     ["--checkpoint=notes.pth", "--out=o", "--resolutions=128,big"], ["--resolutions=128,big", "integers"]),
    ("import-predictor-bad-resolutions", "ofa_tf.interop.import_predictor",
     ["--checkpoint=notes.pth", "--out=o", "--space=resnet50d", "--resolutions=4,128"], ["resolutions", ">= 8 px"]),
    ("specialized-no-net-config", "ofa_tf.interop.import_specialized", ["--net_config=nope/net.config", "--out=o"],
     ["nope/net.config", "not found"]),
    ("specialized-net-config-not-json", "ofa_tf.interop.import_specialized", ["--net_config=notes.pth", "--out=o"],
     ["notes.pth", "not valid JSON"]),
    ("specialized-unknown-network", "ofa_tf.interop.import_specialized", ["--net_config=resnet.config", "--out=o"],
     ["'ResNets'", "not supported", "MobileNetV3"]),
    ("specialized-no-run-config", "ofa_tf.interop.import_specialized", ["--net_config=sub/net.config", "--out=o"],
     ["no run.config next to", "--run_config"]),
    ("specialized-init-not-torch", "ofa_tf.interop.import_specialized",
     ["--net_config=sub/net.config", "--run_config=run.config", "--init=notes.pth", "--out=o"],
     ["notes.pth", "not a torch.save file"]),
    ("specialized-out-is-a-file", "ofa_tf.interop.import_specialized",
     ["--net_config=sub/net.config", "--run_config=run.config", "--out=afile"], ["--out=afile", "is a file"]),
    ("specialized-not-a-subnet", "ofa_tf.interop.import_specialized",
     ["--net_config=sub/net.config", "--run_config=run.config", "--to_arch"],
     ["not a subnet of any preset space", "mbv3_w1.0: net.config has 1 stages, the space 5"]),
    ("specialized-no-out", "ofa_tf.interop.import_specialized", ["--net_config=sub/net.config"],
     ["--out is required"]),
    ("export-torch-out-is-a-dir", "ofa_tf.interop.export_torch", ["--supernet={workdir}", "--out=sub"],
     ["--out=sub", "is a directory"]),
    ("export-torch-refuses-overwrite", "ofa_tf.interop.export_torch", ["--supernet={workdir}", "--out=afile"],
     ["afile exists", "--overwrite"]),
    # export
    ("export-arch-json-not-object", "ofa_tf.export", ["--supernet={workdir}", "--arch=[1,2]"],
     ["--arch must be a JSON object", "list"]),
    ("export-arch-missing-file", "ofa_tf.export", ["--supernet={workdir}", "--arch=arch.json"],
     ["arch.json", "no such file"]),
    ("export-arch-bad-value", "ofa_tf.export", ["--supernet={workdir}", '--arch={"ks": 9, "e": 3, "d": 1}'],
     ["ks", "9"]),
    ("export-unknown-mode", "ofa_tf.export", ["--supernet={workdir}", "--preset=max", "--mode=int4"],
     ["int4"]),
    ("export-no-supernet", "ofa_tf.export", ["--supernet=nowhere", "--preset=max"],
     ["no trained supernet at nowhere"]),
    ("export-bad-resolution", "ofa_tf.export", ["--supernet={workdir}", "--preset=max", "--resolution=33"],
     ["--resolution=33"]),
    # finetune
    ("finetune-bad-arch", "ofa_tf.finetune", ["--supernet={workdir}", '--arch={"ks": 9, "e": 3, "d": 1}',
                                              "--out=ft.keras"], ["ks", "9"]),
    ("finetune-no-supernet", "ofa_tf.finetune", ["--supernet=nowhere", '--arch={"ks": 3, "e": 3, "d": 1}',
                                                 "--out=ft.keras"], ["no trained supernet at nowhere"]),
    ("finetune-refuses-overwrite", "ofa_tf.finetune", ["--supernet={workdir}", '--arch={"ks": 3, "e": 3, "d": 1}',
                                                       "--out=afile.keras"], ["afile.keras already exists",
                                                                              "--overwrite"]),
    # collect, search
    ("collect-no-supernet", "ofa_tf.nas.collect", ["--workdir=sub", "--n=3"], ["no trained supernet at sub"]),
    ("collect-bad-n", "ofa_tf.nas.collect", ["--workdir={workdir}", "--n=0"], ["--n must be >= 1"]),
    ("collect-too-few-for-the-predictor", "ofa_tf.nas.collect", ["--workdir={workdir}", "--n=4"],
     ["--n=4", "holds out 1", "--train_predictor=false"]),
    ("search-bad-constraint", "ofa_tf.search", ["--workdir={workdir}", "--constraint=flops=3"],
     ["flops=3", "mmacs"]),
    ("search-no-predictor", "ofa_tf.search", ["--workdir={workdir}", "--constraint=mmacs=3"],
     ["accuracy_predictor"]),
    # android_bench
    ("build-lut-binary-is-a-dir", "android_bench.build_lut",
     ["--backend=adb", "--benchmark_binary=sub", "--out=t", "--resolutions=32"],
     ["--benchmark_binary=sub", "is a directory"]),
    ("build-lut-no-out-dir", "android_bench.build_lut", ["--out=nowhere/t", "--resolutions=32"],
     ["nowhere", "does not exist"]),
    ("build-lut-bad-resolution", "android_bench.build_lut", ["--out=t", "--resolutions=3x"],
     ["--resolutions", "3x"]),
    ("validate-too-few", "android_bench.validate", ["--table=t.yaml", "--n=1"], ["--n must be at least 2"]),
    ("calibrate-same-table", "android_bench.calibrate", ["--table=t.yaml", "--out=t.yaml"],
     ["--out must differ from --table"]),
    # demo
    ("demo-bad-space", "ofa_tf.demo", ["--space=huge"], ["--space=huge"]),
]


def _conv(cin, cout, k, s, act, bn=True):
    return {"name": "ConvLayer", "in_channels": cin, "out_channels": cout, "kernel_size": k, "stride": s,
            "bias": False, "use_bn": bn, "act_func": act}


def _block(cin, cout, k, s, e, act, shortcut):
    conv = {"name": "MBConvLayer", "in_channels": cin, "out_channels": cout, "kernel_size": k, "stride": s,
            "expand_ratio": e, "act_func": act, "use_se": False}
    return {"name": "ResidualBlock", "conv": conv, "shortcut": {"name": "IdentityLayer"} if shortcut else None}


# A valid static MobileNetV3 net.config (the reference's format) of a stem, 3 blocks and the head.
_SMALL_NET_CONFIG = {
    "name": "MobileNetV3", "first_conv": _conv(3, 8, 3, 2, "h_swish"),
    "blocks": [_block(8, 8, 3, 1, 1, "relu", True), _block(8, 16, 5, 2, 3, "relu", False),
               _block(16, 16, 3, 1, 4, "relu", True)],
    "final_expand_layer": _conv(16, 48, 1, 1, "h_swish"),
    "feature_mix_layer": _conv(48, 64, 1, 1, "h_swish", bn=False),
    "classifier": {"name": "LinearLayer", "in_features": 64, "out_features": 10, "bias": True}}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The files the cases point at, written once and copied into each case's directory."""
    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("inputs")
    (root / "afile").write_text("a regular file\n")
    (root / "afile.keras").write_text("a finished output\n")
    (root / "empty.pth").write_bytes(b"")
    (root / "notes.pth").write_text("these are notes, not tensors\n")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "model": json.JSONDecoder}, root / "pickled.pth")
    (root / "sub").mkdir()
    (root / "resnet.config").write_text('{"name": "ResNets", "blocks": []}')
    (root / "run.config").write_text('{"image_size": 40}')
    (root / "sub" / "net.config").write_text(json.dumps(_SMALL_NET_CONFIG))
    return root


@pytest.mark.parametrize("case_id, module, args, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_exit_2_and_no_new_file(cli_runner, inputs, tiny_workdir, tmp_path,
                                                           case_id, module, args, fragments):
    for entry in os.listdir(inputs):
        source, target = inputs / entry, tmp_path / entry
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.write_bytes(source.read_bytes())
    before, workdir_before = snapshot(tmp_path), snapshot(tiny_workdir)
    run = cli_runner.run(module, *[a.replace("{workdir}", str(tiny_workdir)) for a in args], cwd=tmp_path)
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = error_lines(run)
    assert len(lines) == 1, run.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "weights_only=False" not in run.stderr   # never advise loading a file that may run code
    assert snapshot(tmp_path) == before, "the failed command created or changed files"
    assert snapshot(tiny_workdir) == workdir_before


def test_user_input_marks_which_errors_are_the_users():
    with pytest.raises(BadInput, match="^--x: bad value$"):
        with user_input("--x"):
            raise ValueError("bad value")
    with pytest.raises(RefusedOverwrite):
        with user_input():
            raise FileExistsError("out exists")
    with pytest.raises(MissingDependency, match="needs foo"):
        with user_input():
            raise ImportError("needs foo")
    with pytest.raises(KeyError):   # not a kind of input error: a bug, passed through as it is
        with user_input():
            raise KeyError("k")
    assert issubclass(BadInput, ValueError) and issubclass(BadInput, UserError)


def test_a_bug_keeps_its_traceback_and_exit_1(cli_runner, tmp_path):
    """Anything that is not a UserError is a bug: Python's traceback, exit code 1."""
    script = tmp_path / "buggy_cli.py"
    script.write_text("from ofa_tf.cli import run_absl_main\n\n"
                      "def main(argv):\n    raise KeyError('a bug')\n\n"
                      "if __name__ == '__main__':\n    run_absl_main(main)\n")
    run = cli_runner.run("buggy_cli", cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" in run.stderr and "KeyError: 'a bug'" in run.stderr
    assert not error_lines(run)
