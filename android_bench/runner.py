"""What every latency backend takes and returns: settings in, a ``BenchmarkResult`` out.

The phone (``android_bench.benchmark_model.BenchmarkModelRunner``) and the host
(``android_bench.host.HostRunner``) implement the same ``Runner`` protocol, so the table builder
and the validation report do not know which one they drive.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol


STATISTICS = ("median", "mean", "min")


@dataclasses.dataclass(frozen=True)
class BenchmarkSettings:
    """The ``benchmark_model`` flags a measurement uses (the host runner honours the same)."""

    num_threads: int = 1
    num_runs: int = 50
    warmup_runs: int = 5
    use_gpu: bool = False
    use_xnnpack: bool = True
    enable_op_profiling: bool = False

    def __post_init__(self):
        for name in ("num_threads", "num_runs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.warmup_runs, bool) or not isinstance(self.warmup_runs, int) or self.warmup_runs < 0:
            raise ValueError(f"warmup_runs must be a non-negative integer, got {self.warmup_runs!r}")


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """One model's timings in ms (as ``benchmark_model`` reports them) and memory in MB."""

    init_ms: float
    first_ms: float
    warmup_ms: float          # average of the warm-up runs
    mean_ms: float            # average of the timed runs
    std_ms: Optional[float] = None
    median_ms: Optional[float] = None
    count: Optional[int] = None            # timed runs
    min_ms: Optional[float] = None
    memory_init_mb: Optional[float] = None
    memory_overall_mb: Optional[float] = None
    op_profile: Optional[str] = None       # the raw op-profiling section, when asked for

    @property
    def latency_ms(self) -> float:
        """The median where measured (robust to outliers), else the mean."""
        return self.mean_ms if self.median_ms is None else self.median_ms

    def statistic(self, name: str) -> float:
        """One of ``STATISTICS``: ``median`` (the mean when no median was printed), ``mean``, or
        ``min`` (the least disturbed run: on a machine shared with other jobs, contention only
        ever adds time)."""
        if name == "median":
            return self.latency_ms
        if name == "min" and self.min_ms is not None:
            return self.min_ms
        if name in ("mean", "min"):
            return self.mean_ms
        raise ValueError(f"unknown latency statistic {name!r}: expected one of {', '.join(STATISTICS)}")

    def table_entry(self, statistic: str = "median") -> dict:
        """``{count, mean, var}`` in ms, the reference's lookup-table entry (``mean`` holds
        ``statistic``)."""
        std = 0.0 if self.std_ms is None else self.std_ms
        return {"count": int(self.count or 0), "mean": round(float(self.statistic(statistic)), 6),
                "var": round(float(std) ** 2, 9)}


class Runner(Protocol):
    """A place to time .tflite files; used as a context manager (it may hold remote files)."""

    settings: BenchmarkSettings

    def benchmark(self, tflite_path: str) -> BenchmarkResult: ...

    def close(self) -> None: ...

    def describe(self) -> dict: ...


class ClosingRunner:
    """``with runner:`` calls ``close()`` however the block ends (a phone runner removes its
    remote files there)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Nothing to clean up unless a runner says otherwise."""
