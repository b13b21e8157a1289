"""The settings a lookup table was measured with, kept next to it (``<table>.meta.json``): the
reference's YAML format has no room for them, and a table resumed or validated with other
settings would mix incomparable numbers."""

from __future__ import annotations

import json
import os

from ofa_tf.errors import BadInput, short_json

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
    differing = [f"{name}: table {short_json(a)}, flags {short_json(b)}" for name, a, b
                 in _differences(stored, wanted)]
    if differing:
        raise BadInput(f"{table_path} was measured with other settings ({'; '.join(differing)}): {advice}")
    return stored


def _differences(stored: dict, wanted: dict, prefix: str = ""):
    """(dotted name, stored, wanted) of every field of ``wanted`` that ``stored`` has otherwise."""
    for key in sorted(wanted):
        if key not in stored or stored[key] == wanted[key]:
            continue
        if isinstance(stored[key], dict) and isinstance(wanted[key], dict):
            yield from _differences(stored[key], wanted[key], f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", stored[key], wanted[key]


# Benchmark flags that change what is measured (the run counts only change its precision).
LATENCY_FLAGS = ("num_threads", "use_gpu", "use_xnnpack")


def measurement_settings(layout, runner, statistic: str) -> dict:
    """What must agree between a table and anything measured to extend or check it."""
    return {"space": layout.space.to_dict(), "n_classes": layout.n_classes, "runner": runner.describe(),
            "settings": {name: getattr(runner.settings, name) for name in LATENCY_FLAGS},
            "statistic": statistic}
