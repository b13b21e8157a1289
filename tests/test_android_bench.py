"""The adb device layer and the benchmark_model runner against a fake ``adb`` placed first on
PATH: command lines, quoting of hostile file names, output parsing and each error message.
Also the host runner on a real .tflite."""

import json
import os
import shlex
import stat
import subprocess
import sys
import textwrap

import pytest

from cli_harness import run_cli
from android_bench.adb import AdbDevice, AdbError, AdbTimeoutError, quote_remote
from android_bench.benchmark_model import (REMOTE_DIR, BenchmarkModelRunner, BenchmarkOutputError,
                                           parse_benchmark_output)
from android_bench.runner import BenchmarkSettings

# What TFLite's benchmark_model prints (2.x), trimmed.
BENCHMARK_OUTPUT = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [2]
Graph: [/data/local/tmp/ofa_tf_bench/model.tflite]
Loaded model /data/local/tmp/ofa_tf_bench/model.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
The input model file size (MB): 5.47
Initialized session in 5.685ms.
Running benchmark for at least 5 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=35 first=18535 curr=14380 min=14201 max=18535 avg=14462.3 std=702

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=14602 curr=14412 min=14310 max=15116 avg=14575.2 std=161

Inference timings in us: Init: 5685, First inference: 18535, Warmup (avg): 14462.3, Inference (avg): 14575.2
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
Memory footprint delta from the start of the tool (MB): init=3.07422 overall=9.51953
"""

FAKE_ADB = r'''#!{python}
"""A fake adb: logs argv, answers like adb would in the mode $FAKE_ADB_MODE."""
import json, os, shlex, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
mode = os.environ.get("FAKE_ADB_MODE", "ok")
if args and args[0] == "-s":
    args = args[2:]
if args[0] == "devices":
    states = {{"no_device": [], "unauthorized": [("R58M123", "unauthorized")],
              "offline": [("R58M123", "offline")],
              "two": [("R58M123", "device"), ("emulator-5554", "device")]}}
    print("List of devices attached")
    for serial, state in states.get(mode, [("R58M123", "device")]):
        print(f"{{serial}}\t{{state}}")
    print()
    sys.exit(0)
if args[0] == "push":
    if mode == "push_fail":
        print(f"adb: error: failed to copy '{{args[1]}}' to '{{args[2]}}': remote No space left on device",
              file=sys.stderr)
        sys.exit(1)
    print(f"{{args[1]}}: 1 file pushed, 0 skipped. 31.2 MB/s (5735 bytes in 0.000s)")
    sys.exit(0)
if args[0] == "shell":
    argv = shlex.split(args[1])
    if not argv[0].endswith("benchmark_model"):
        sys.exit(0)
    if mode == "timeout":
        time.sleep(30)
    if mode == "crash":
        print("STARTING!\nLoaded model x\nSegmentation fault")
        sys.exit(139)
    if mode == "garbage":
        print("hello from a binary that is not benchmark_model")
        sys.exit(0)
    if mode == "fail":
        print("ERROR: Could not open 'x.tflite'.\nBenchmarking failed.")
        sys.exit(1)
    sys.stdout.write(open(os.environ["FAKE_ADB_OUTPUT"]).read())
    sys.exit(0)
sys.exit(0)
'''

HOSTILE_NAME = "my model; rm -rf $(echo x) 'it''s' \"q\".tflite"


@pytest.fixture()
def fake_adb(tmp_path, monkeypatch):
    """A fake adb first on PATH; returns (set_mode, calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB.format(python=sys.executable))
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    log, output = tmp_path / "adb_calls.jsonl", tmp_path / "benchmark_output.txt"
    output.write_text(BENCHMARK_OUTPUT)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(output))
    monkeypatch.setenv("FAKE_ADB_MODE", "ok")

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return (lambda mode: monkeypatch.setenv("FAKE_ADB_MODE", mode)), calls


@pytest.fixture()
def files(tmp_path):
    binary = tmp_path / "benchmark_model"
    binary.write_bytes(b"\x7fELF fake")
    model = tmp_path / HOSTILE_NAME
    model.write_bytes(b"TFL3 fake")
    return str(binary), str(model)


def test_runner_command_lines_quoting_and_parsing(fake_adb, files):
    _, calls = fake_adb
    binary, model = files
    settings = BenchmarkSettings(num_threads=2, num_runs=50, warmup_runs=5, use_xnnpack=True)
    with BenchmarkModelRunner(AdbDevice(), binary, settings) as runner:
        first = runner.benchmark(model)
        runner.benchmark(model)
    remote_binary, remote_model = f"{REMOTE_DIR}/benchmark_model", f"{REMOTE_DIR}/{HOSTILE_NAME}"
    expected_run = [remote_binary, f"--graph={remote_model}", "--num_threads=2", "--use_gpu=false",
                    "--use_xnnpack=true", "--num_runs=50", "--warmup_runs=5"]
    s = ["-s", "R58M123"]
    log = calls()
    assert log[0] == ["devices"]
    # The binary is pushed once and reused; each model is pushed, run, removed; the dir at the end.
    shell = [shlex.split(c[3]) for c in log[1:] if c[2] == "shell"]
    assert shell == [["mkdir", "-p", REMOTE_DIR], ["chmod", "755", remote_binary],
                     expected_run, ["rm", "-f", remote_model], expected_run, ["rm", "-f", remote_model],
                     ["rm", "-rf", REMOTE_DIR]]
    pushes = [c for c in log[1:] if c[2] == "push"]
    assert pushes == [s + ["push", binary, remote_binary], s + ["push", model, remote_model],
                      s + ["push", model, remote_model]]
    assert all(c[:2] == s for c in log[1:])
    # The hostile name stays one shell word: no ';', '$(' or quote escapes into the command.
    run_line = next(c[3] for c in log[1:] if c[2] == "shell" and "--graph" in c[3])
    assert run_line == quote_remote(expected_run)
    assert shlex.split(run_line)[1] == f"--graph={remote_model}"
    assert first.init_ms == pytest.approx(5.685) and first.first_ms == pytest.approx(18.535)
    assert first.warmup_ms == pytest.approx(14.4623) and first.mean_ms == pytest.approx(14.5752)
    assert first.std_ms == pytest.approx(0.161) and first.count == 50
    assert first.memory_init_mb == pytest.approx(3.07422) and first.memory_overall_mb == pytest.approx(9.51953)
    assert first.table_entry() == {"count": 50, "mean": 14.5752, "var": pytest.approx(0.161 ** 2)}


def test_op_profiling_flag_and_gpu(fake_adb, files):
    _, calls = fake_adb
    binary, model = files
    settings = BenchmarkSettings(use_gpu=True, use_xnnpack=False, enable_op_profiling=True)
    with BenchmarkModelRunner(AdbDevice(), binary, settings) as runner:
        runner.benchmark(model)
    run = next(shlex.split(c[3]) for c in calls()[1:] if c[2] == "shell" and "--graph" in c[3])
    assert run[3:5] == ["--use_gpu=true", "--use_xnnpack=false"]
    assert run[-1] == "--enable_op_profiling=true"


def test_quote_remote_round_trips_hostile_arguments():
    argv = ["/data/local/tmp/b", HOSTILE_NAME, "a`b`", "x\ny", "", "--k=$HOME"]
    assert shlex.split(quote_remote(argv)) == argv
    # The device's shell would run exactly one command: nothing after the first word is unquoted.
    out = subprocess.run(["sh", "-c", "printf '%s\\n' " + quote_remote(argv[1:])], capture_output=True, text=True)
    assert out.stdout.split("\n")[:2] == [HOSTILE_NAME, "a`b`"]


@pytest.mark.parametrize("mode, message", [
    ("no_device", "no Android device connected"),
    ("unauthorized", "device R58M123 is unauthorized: accept the USB debugging prompt"),
    ("offline", "device R58M123 is offline"),
    ("two", "several devices connected (R58M123, emulator-5554): choose one with --serial"),
])
def test_device_errors(fake_adb, mode, message):
    set_mode, _ = fake_adb
    set_mode(mode)
    with pytest.raises(AdbError) as err:
        AdbDevice()
    assert message in str(err.value)


def test_serial_chooses_among_several_and_unknown_serial_is_named(fake_adb, files):
    set_mode, calls = fake_adb
    set_mode("two")
    device = AdbDevice(serial="emulator-5554")
    device.shell(["ls", "/data/local/tmp"])
    assert calls()[-1] == ["-s", "emulator-5554", "shell", "ls /data/local/tmp"]
    with pytest.raises(AdbError, match="device 'nope' is not connected"):
        AdbDevice(serial="nope")


def test_adb_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AdbError, match="adb not found on PATH"):
        AdbDevice()
    with pytest.raises(AdbError, match="adb not found at --adb=/no/such/adb"):
        AdbDevice(adb_path="/no/such/adb")


@pytest.mark.parametrize("mode, error, message", [
    ("push_fail", AdbError, "failed: adb: error: failed to copy"),
    ("crash", BenchmarkOutputError, "benchmark_model crashed on my model; rm"),
    ("fail", BenchmarkOutputError, "benchmark_model failed on my model; rm"),
    ("garbage", BenchmarkOutputError, "printed no 'Inference timings in us:' line"),
])
def test_run_errors(fake_adb, files, mode, error, message):
    set_mode, calls = fake_adb
    binary, model = files
    runner = BenchmarkModelRunner(AdbDevice(), binary)
    set_mode(mode)
    with pytest.raises(error) as err:
        runner.benchmark(model)
    assert message in str(err.value)
    if mode in ("crash", "garbage"):   # the output's tail is shown, and the model removed
        assert ("Segmentation fault" if mode == "crash" else "hello from a binary") in str(err.value)
        assert shlex.split(calls()[-1][3])[:2] == ["rm", "-f"]


def test_command_timeout(fake_adb, files):
    set_mode, _ = fake_adb
    binary, model = files
    runner = BenchmarkModelRunner(AdbDevice(timeout_s=2), binary)
    set_mode("timeout")
    with pytest.raises(AdbTimeoutError, match="adb shell benchmark_model timed out after 2 s"):
        runner.benchmark(model)


def test_missing_binary_and_model(fake_adb, tmp_path, files):
    binary, _ = files
    with pytest.raises(FileNotFoundError, match="benchmark_model binary not found"):
        BenchmarkModelRunner(AdbDevice(), str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="model to benchmark not found"):
        BenchmarkModelRunner(AdbDevice(), binary).benchmark(str(tmp_path / "nope.tflite"))


def test_parser_reads_older_and_multiline_versions():
    old = textwrap.dedent("""\
        count=20 first=30120 curr=29010 min=28800 max=30120 avg=29100 std=300 p5=28850 median=29050 p95=29900
        Inference timings in us: Init: 12000, First inference: 30120, Warmup (avg): 30120, Inference (avg): 29100
        Peak memory footprint (MB): init=1.5 overall=20.25
        Profiling Info for Benchmark Initialization:
        ============================== Run Order ==============================
    """)
    result = parse_benchmark_output(old)
    assert (result.mean_ms, result.median_ms, result.std_ms) == (29.1, 29.05, 0.3)
    assert (result.memory_init_mb, result.memory_overall_mb) == (1.5, 20.25)
    assert result.op_profile.startswith("Profiling Info for Benchmark") and result.latency_ms == 29.05
    multiline = "Inference timings in us:\n    Init: 1523\n    First inference: 15234\n" \
                "    Warmup (avg): 12890\n    Inference (avg): 12340\n"
    result = parse_benchmark_output(multiline)
    assert (result.init_ms, result.first_ms, result.warmup_ms, result.mean_ms) == (1.523, 15.234, 12.89, 12.34)
    assert result.std_ms is None and result.memory_overall_mb is None


def test_parser_rejects_a_cut_timings_line():
    with pytest.raises(BenchmarkOutputError, match="cannot read Init and Inference"):
        parse_benchmark_output("count=5 first=1 curr=1 min=1 max=1 avg=1 std=0\nInference timings in us: Init: 5\n")


def test_cli_reports_device_problems_in_one_line(fake_adb, files, tmp_path):
    set_mode, _ = fake_adb
    binary, _ = files
    set_mode("unauthorized")
    env = dict(os.environ)   # the fake adb's PATH
    done = run_cli("android_bench.build_lut", "--backend=adb", f"--benchmark_binary={binary}",
                   "--resolutions=32", "--space=tiny", f"--out={tmp_path / 'table'}", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("error: device R58M123 is unauthorized: accept the USB "
                                                    "debugging prompt on the phone, then retry")
    assert "Traceback" not in done.stderr and not (tmp_path / "table").exists()
    done = run_cli("android_bench.validate", "--backend=adb", f"--table={tmp_path / 'none.yaml'}", env=env)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith(
        "error: latency table") and "does not exist" in done.stderr


def test_host_runner_times_a_real_model(tmp_path):
    keras = pytest.importorskip("keras")
    from android_bench.host import HostRunner
    from ofa_tf.export import to_tflite

    inputs = keras.Input((16, 16, 8), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(16, 3, padding="same")(inputs))
    path = tmp_path / "conv.tflite"
    path.write_bytes(to_tflite(model, "float32"))
    result = HostRunner(BenchmarkSettings(num_runs=30, warmup_runs=3)).benchmark(str(path))
    assert result.count == 30 and result.init_ms > 0 and result.median_ms > 0 and result.std_ms >= 0
    assert result.table_entry()["mean"] == pytest.approx(result.median_ms, abs=1e-6)
    with pytest.raises(ValueError, match="the host backend has no GPU"):
        HostRunner(BenchmarkSettings(use_gpu=True))


def test_mape_and_spearman():
    from android_bench.validate import mape_percent, spearman

    assert mape_percent([11.0, 9.0, 20.0], [10.0, 10.0, 20.0]) == pytest.approx(20 / 3)
    assert spearman([1.0, 2.0, 3.0], [10.0, 30.0, 20.0]) == pytest.approx(0.5)
