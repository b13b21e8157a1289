"""TFLite's ``benchmark_model`` binary on the phone: run it over adb and read what it prints.

The binary is the user's (built from TensorFlow/LiteRT for the phone's ABI); it is pushed once
per runner to ``/data/local/tmp/ofa_tf_bench/`` and reused, each model is pushed next to it,
timed, and removed; ``close()`` removes the directory. The parser reads the summary lines of
the tool's versions we know of::

    count=50 first=14602 curr=14412 min=14310 max=15116 avg=14575.2 std=161
    Inference timings in us: Init: 5685, First inference: 18535, Warmup (avg): 14462.3, Inference (avg): 14575.2
    Memory footprint delta from the start of the tool (MB): init=3.07422 overall=9.51953
    Peak memory footprint (MB): init=3.07422 overall=9.51953          (older versions)

adb before 7.0 (no shell protocol) returns 0 whatever the remote exit status; a crash is then
still caught by its signal message or by the missing timings line.
"""

from __future__ import annotations

import os
import posixpath
import re

from android_bench.adb import AdbDevice, AdbError, output_tail
from android_bench.runner import BenchmarkResult, BenchmarkSettings, ClosingRunner

REMOTE_DIR = "/data/local/tmp/ofa_tf_bench"
_NUMBER = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_TIMING_FIELD = re.compile(rf"(Init|First inference|Warmup \(avg\)|Warmup|Inference \(avg\)|no stats):\s*{_NUMBER}")
_STATS = re.compile(rf"count={_NUMBER} first={_NUMBER} curr={_NUMBER} min={_NUMBER} max={_NUMBER} "
                    rf"avg={_NUMBER} std={_NUMBER}(.*)$", re.MULTILINE)
_MEMORY = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) "
                     rf"\(MB\): init={_NUMBER} overall={_NUMBER}")
_CRASH_MARKS = ("Segmentation fault", "Fatal signal", "Aborted", "SIGSEGV", "SIGABRT", "CANNOT LINK EXECUTABLE")
_PROFILE_START = "Profiling Info for Benchmark"


class BenchmarkOutputError(AdbError):
    """``benchmark_model`` failed, crashed, or printed something this parser cannot read."""


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """Timings (ms) and memory (MB) from ``benchmark_model``'s output; BenchmarkOutputError
    with the output's tail when the summary line is missing or malformed."""
    at = text.rfind("Inference timings in us:")
    if at < 0:
        raise BenchmarkOutputError("benchmark_model printed no 'Inference timings in us:' line; its "
                                   f"output ends with:\n{output_tail(text)}")
    # One line in current versions; some print each figure on its own line below the heading.
    section = "\n".join(text[at:].splitlines()[:6])
    fields = {name.lower(): float(value) for name, value in _TIMING_FIELD.findall(section)}
    mean = fields.get("inference (avg)", fields.get("no stats"))
    if mean is None or "init" not in fields:
        raise BenchmarkOutputError("cannot read Init and Inference (avg) from benchmark_model's timings; "
                                   f"its output ends with:\n{output_tail(text)}")
    stats = _STATS.findall(text)
    std = median = count = fastest = None
    if stats:   # the last stats line is the timed runs' (the one before it the warm-up's)
        last = stats[-1]
        count, fastest, std = int(float(last[0])), float(last[3]) / 1e3, float(last[6]) / 1e3
        found = re.search(rf"median={_NUMBER}", last[7])
        median = float(found.group(1)) / 1e3 if found else None
    memory = _MEMORY.findall(text)
    profile_at = text.find(_PROFILE_START)
    return BenchmarkResult(
        init_ms=fields["init"] / 1e3, first_ms=fields.get("first inference", mean) / 1e3,
        warmup_ms=fields.get("warmup (avg)", fields.get("warmup", mean)) / 1e3, mean_ms=mean / 1e3,
        std_ms=std, median_ms=median, count=count, min_ms=fastest,
        memory_init_mb=float(memory[-1][0]) if memory else None,
        memory_overall_mb=float(memory[-1][1]) if memory else None,
        op_profile=text[profile_at:] if profile_at >= 0 else None)


class BenchmarkModelRunner(ClosingRunner):
    """``Runner`` for a phone: ``benchmark(path)`` pushes the model, runs ``benchmark_model`` with
    the settings' flags, removes the model, and returns the parsed result."""

    def __init__(self, device: AdbDevice, binary: str, settings: BenchmarkSettings = BenchmarkSettings(),
                 remote_dir: str = REMOTE_DIR):
        if not binary or not os.path.isfile(binary):
            raise FileNotFoundError(f"benchmark_model binary not found: {binary!r} (build it for the phone "
                                    "from TensorFlow/LiteRT and pass --benchmark_binary)")
        self.device, self.binary, self.settings, self.remote_dir = device, binary, settings, remote_dir
        self._remote_binary = None

    def describe(self) -> dict:
        return {"backend": "adb", "serial": self.device.serial, "binary": os.path.basename(self.binary)}

    def _ensure_binary(self) -> str:
        """Push the binary once; later calls reuse it."""
        if self._remote_binary is None:
            self.device.shell(["mkdir", "-p", self.remote_dir])
            remote = posixpath.join(self.remote_dir, "benchmark_model")
            self.device.push(self.binary, remote)
            self.device.shell(["chmod", "755", remote])
            self._remote_binary = remote
        return self._remote_binary

    def command(self, remote_model: str) -> list[str]:
        """The device command line (before quoting) that times ``remote_model``."""
        s = self.settings
        flag = lambda value: "true" if value else "false"  # noqa: E731
        argv = [self._ensure_binary(), f"--graph={remote_model}", f"--num_threads={s.num_threads}",
                f"--use_gpu={flag(s.use_gpu)}", f"--use_xnnpack={flag(s.use_xnnpack)}",
                f"--num_runs={s.num_runs}", f"--warmup_runs={s.warmup_runs}"]
        if s.enable_op_profiling:
            argv.append("--enable_op_profiling=true")
        return argv

    def benchmark(self, tflite_path: str) -> BenchmarkResult:
        if not os.path.isfile(tflite_path):
            raise FileNotFoundError(f"model to benchmark not found: {tflite_path}")
        remote_model = posixpath.join(self.remote_dir, os.path.basename(tflite_path))
        argv = self.command(remote_model)
        self.device.push(tflite_path, remote_model)
        try:
            done = self.device.shell(argv, check=False)
        finally:
            self.device.shell(["rm", "-f", remote_model], check=False)
        output = done.stdout + done.stderr
        name = os.path.basename(tflite_path)
        if any(mark in output for mark in _CRASH_MARKS) or done.returncode < 0 or done.returncode >= 128:
            raise BenchmarkOutputError(f"benchmark_model crashed on {name} (exit {done.returncode}); its "
                                       f"output ends with:\n{output_tail(output)}")
        if done.returncode != 0:
            raise BenchmarkOutputError(f"benchmark_model failed on {name} (exit {done.returncode}); its "
                                       f"output ends with:\n{output_tail(output)}")
        return parse_benchmark_output(output)

    def close(self) -> None:
        """Remove the pushed binary and models from the device."""
        if self._remote_binary is not None:
            self.device.shell(["rm", "-rf", self.remote_dir], check=False)
            self._remote_binary = None
