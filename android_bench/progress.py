"""A progress line per finished item with an ETA, on stderr (no extra dependency):

    [37/120]  31 %  ETA 1:12  expanded_conv-input:20x20x40-...
"""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """``done`` of ``total`` items finished; the ETA comes from this run's pace (items finished
    by an earlier, interrupted run count as done but not towards the pace)."""

    def __init__(self, total: int, done: int = 0, stream=None):
        self.total, self.done, self.stream = total, done, stream or sys.stderr
        self._start, self._done_at_start = time.monotonic(), done

    def step(self, label: str) -> None:
        self.done += 1
        new = self.done - self._done_at_start
        remaining = (time.monotonic() - self._start) / new * (self.total - self.done)
        percent = 100 * self.done // max(self.total, 1)
        print(f"[{self.done}/{self.total}] {percent:3d} %  ETA {format_duration(remaining)}  {label}",
              file=self.stream, flush=True)
