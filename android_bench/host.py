"""The same measurement on this machine's CPU through the LiteRT interpreter, so the whole flow
(tables, prediction, validation) works without a phone.

The interpreter runs in this process and is timed around ``invoke()`` with a monotonic clock:
LiteRT's shipped ``benchmark_litert_model`` rounds to 10 µs, too coarse for the single ops a
lookup table times (many take 10-100 µs). Each file gets a fresh interpreter (init time),
one first inference, ``warmup_runs`` untimed runs, then ``num_runs`` timed runs: mean, median,
standard deviation. XNNPACK is LiteRT's default CPU delegate (``use_xnnpack=False`` runs the
builtin kernels); there is no GPU on the host.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

from android_bench.runner import BenchmarkResult, BenchmarkSettings, ClosingRunner


class HostRunner(ClosingRunner):
    """``Runner`` on the local CPU."""

    def __init__(self, settings: BenchmarkSettings = BenchmarkSettings()):
        if settings.use_gpu:
            raise ValueError("the host backend has no GPU: drop --use_gpu or use --backend=adb")
        if settings.enable_op_profiling:
            raise ValueError("--enable_op_profiling needs the adb backend (benchmark_model's profiler)")
        self.settings = settings

    def describe(self) -> dict:
        return {"backend": "host", "machine": platform.machine(), "cpus": os.cpu_count()}

    def benchmark(self, tflite_path: str) -> BenchmarkResult:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if not os.path.isfile(tflite_path):
            raise FileNotFoundError(f"model to benchmark not found: {tflite_path}")
        s = self.settings
        resolver = OpResolverType.AUTO if s.use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        start = time.perf_counter()
        interpreter = Interpreter(model_path=tflite_path, num_threads=s.num_threads,
                                  experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        init_ms = (time.perf_counter() - start) * 1e3
        rng = np.random.default_rng(0)
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], rng.random(detail["shape"]).astype(detail["dtype"]))
        invoke = interpreter.invoke
        first_ms = _timed(invoke)
        warmup = [_timed(invoke) for _ in range(s.warmup_runs)]
        runs = [_timed(invoke) for _ in range(s.num_runs)]
        return BenchmarkResult(
            init_ms=init_ms, first_ms=first_ms, warmup_ms=float(np.mean(warmup)) if warmup else first_ms,
            mean_ms=float(np.mean(runs)), std_ms=float(np.std(runs)), median_ms=statistics.median(runs),
            count=len(runs), min_ms=min(runs))


def _timed(invoke) -> float:
    start = time.perf_counter()
    invoke()
    return (time.perf_counter() - start) * 1e3
