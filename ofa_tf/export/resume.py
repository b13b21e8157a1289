"""Re-running an export after it was interrupted: which outputs are finished, which are left over.

An export writes its sidecar JSON last, so an export is finished when the sidecar exists and
records the same arch, resolution, mode, supernet and settings; outputs without their sidecar
are what a killed run left behind, and are replaced. A finished export is kept, so re-running
the same command (``ofa_tf.export``, ``ofa_tf.search --export``) completes what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Mapping

# Settings that change how an export is written, not what it holds.
_NOT_COMPARED = ("overwrite",)


def _comparable(settings: Mapping) -> dict:
    return {k: v for k, v in json.loads(json.dumps(dict(settings))).items() if k not in _NOT_COMPARED}


def is_finished(paths: Mapping[str, str], arch: Mapping, image_size: int, settings, source: str) -> bool:
    """True when every output in ``paths`` exists and the sidecar says it holds this export."""
    if not all(os.path.exists(p) for p in paths.values()):
        return False
    try:
        with open(paths["sidecar"], encoding="utf-8") as f:
            sidecar = json.load(f)
    except (OSError, json.JSONDecodeError):
        return False
    return (sidecar.get("arch") == json.loads(json.dumps(dict(arch))) and sidecar.get("image_size") == image_size
            and sidecar.get("supernet") == source
            and _comparable(sidecar.get("settings", {})) == _comparable(dataclasses.asdict(settings)))


def remove_unfinished(paths: Mapping[str, str]) -> list[str]:
    """Remove the outputs of an export whose sidecar (written last) is missing; returns them."""
    if os.path.exists(paths["sidecar"]):
        return []
    removed = []
    for path in paths.values():
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            removed.append(path)
        elif os.path.exists(path):
            os.remove(path)
            removed.append(path)
    return removed


def export_or_keep(exporter, arch: Mapping, out_dir: str, settings, image_size: int | None = None):
    """``(exporter.export(...), its .tflite path)``, or ``(None, the .tflite path)`` when the same
    export is already finished in ``out_dir`` (leftovers of an interrupted one are removed first)."""
    from ofa_tf.export.exporter import output_paths

    resolved, size = exporter.resolve(arch, image_size)
    paths = output_paths(exporter.space, resolved, size, out_dir, settings)
    if not settings.overwrite:
        if is_finished(paths, resolved, size, settings, exporter.source):
            return None, paths["tflite"]
        remove_unfinished(paths)
    result = exporter.export(arch, out_dir, settings, image_size=image_size)
    return result, result.tflite_path
