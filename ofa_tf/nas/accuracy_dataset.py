"""The (subnet, measured accuracy) dataset as an append-only JSONL file.

One line per measured subnet, flushed and fsynced as soon as it is measured, so a killed
collection loses at most the subnet in flight. On reopening, a truncated last line (the
process died mid-write) is cut off and every complete line counts as done.
"""

from __future__ import annotations

import json
import os
from typing import Iterator, Mapping

import numpy as np

from ofa_tf.arch.space import SearchSpace
from ofa_tf.arch.value import arch_to_json
from ofa_tf.atomic_files import append_line
from ofa_tf.nas.encoding import arch_encoder

# Which images a record's accuracy was measured on (see ofa_tf.nas.subnet_measurement).
EVAL_SPLITS = ("val_even", "val_odd", "val", "train")


def workdir_paths(workdir: str) -> dict:
    """Where a supernet workdir keeps its accuracy dataset and accuracy predictor."""
    nas = os.path.join(workdir, "nas")
    return {"accuracy": os.path.join(nas, "accuracy.jsonl"),
            "predictor": os.path.join(nas, "accuracy_predictor.keras")}


def sample_distinct_archs(space: SearchSpace, n: int, seed: int) -> list[dict]:
    """``n`` distinct subnets (resolution included) in a fixed order: the first ``m`` are the
    same for any ``n >= m``, so a collection can be extended with a larger ``n``. Two archs that
    differ only in skipped slots are the same subnet and count once."""
    if n > space.count(include_resolution=True):
        raise ValueError(f"--n {n} exceeds the {space.count(include_resolution=True)} subnets of the space")
    encoder, rng = arch_encoder(space), np.random.default_rng(seed)
    seen, archs = set(), []
    while len(archs) < n:
        arch = space.sample(rng)
        key = encoder.arch2feature(arch).tobytes()
        if key not in seen:
            seen.add(key)
            archs.append(arch)
    return archs


class AccuracyDataset:
    """Records ``{"arch": ..., "top1": ..., ...}`` in ``path`` (JSONL), keyed by the arch's JSON."""

    def __init__(self, path: str):
        self.path = path
        self.records: dict[str, dict] = {}
        if os.path.exists(path):
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # a write was cut off: drop the partial line before appending
            with open(self.path, "r+b") as f:
                f.truncate(complete)
        for number, line in enumerate(data[:complete].decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = arch_to_json(record["arch"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(f"{self.path}:{number} is not a subnet record: {line[:80]!r}") from None
            self.records[key] = record

    def __contains__(self, arch: Mapping) -> bool:
        return arch_to_json(arch) in self.records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records.values())

    def append(self, record: Mapping) -> None:
        """Add one record and make it durable before returning."""
        key = arch_to_json(record["arch"])
        append_line(self.path, json.dumps(dict(record)))
        self.records[key] = dict(record)
