"""The settings a lookup table was measured with, kept next to it (``<table>.meta.json``): the
reference's YAML format has no room for them, and a table resumed or validated with other
settings would mix incomparable numbers."""

from __future__ import annotations

import json
import os

META_SUFFIX = ".meta.json"


def meta_path(table_path: str) -> str:
    return table_path.rstrip("/") + META_SUFFIX


def read_meta(table_path: str) -> dict:
    """The stored settings ({} when the table has none, e.g. one of the reference's)."""
    path = meta_path(table_path)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None


def check_meta(table_path: str, wanted: dict, advice: str) -> dict:
    """The stored settings when every field of ``wanted`` matches them; else one ValueError
    naming the differing fields, followed by ``advice``."""
    stored = read_meta(table_path)
    differing = sorted(k for k in wanted if k in stored and stored[k] != wanted[k])
    if differing:
        raise ValueError(f"{table_path} was measured with other settings ({', '.join(differing)} differ "
                         f"from the flags'): {advice}")
    return stored


# Benchmark flags that change what is measured (the run counts only change its precision).
LATENCY_FLAGS = ("num_threads", "use_gpu", "use_xnnpack")


def measurement_settings(layout, runner, statistic: str) -> dict:
    """What must agree between a table and anything measured to extend or check it."""
    return {"space": layout.space.to_dict(), "n_classes": layout.n_classes, "runner": runner.describe(),
            "settings": {name: getattr(runner.settings, name) for name in LATENCY_FLAGS},
            "statistic": statistic}
