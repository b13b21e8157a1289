"""Latency lookup tables in the reference's format, and the op keys an arch runs.

A table maps one key per distinct op to its measured latency in ms::

    Conv-input:224x224x3-output:112x112x16: {count: 50, mean: 1.91, var: 0.01}
    expanded_conv-input:112x112x16-output:112x112x16-expand:16-kernel:3-stride:1-idskip:1-se:0-hs:0: {...}
    expanded_conv-input:112x112x16-output:56x56x24-expand:64-kernel:5-stride:2-idskip:0-se:0-hs:0: {...}
    Conv_1-input:7x7x160-output:7x7x960: {...}
    AvgPool2D-input:7x7x960-output:1x1x960: {...}
    Conv_2-input:1x1x960-output:1x1x1280: {...}
    Logits-input:1x1x1280-output:1000: {...}

These are the key strings of the reference's ``MBv3LatencyTable`` (ofa/nas/efficiency_predictor/
latency_lookup_table.py): ``expand`` is the block's middle (expanded) channel count, not the
ratio; ``idskip`` the identity shortcut, ``se`` squeeze-excite, ``hs`` h_swish. Our middle width
is the layout's (``make_divisible(round(in * e), 8)``, what the network really runs). The keys
come from :func:`op_keys`, which walks the one layout description, so a table built by
benchmarking each op (android_bench) and the predictor that reads it agree by construction.
A table is one YAML file, or a directory of the reference's per-resolution
``<r>_lookup_table.yaml`` files (merged; the keys carry the input size).
"""

from __future__ import annotations

import glob
import numbers
import os
from typing import Mapping

import yaml

from ofa_tf.atomic_files import atomic_write_text
from ofa_tf.networks.layout import ActiveBlock, ConvSpec, Layout, conv_output_size

ENTRY_FIELDS = ("count", "mean", "var")


def _shape(*dims) -> str:
    return "x".join(str(int(d)) for d in dims)


def _op_key(kind: str, input_shape: str, output_shape: str) -> str:
    return f"{kind}-input:{input_shape}-output:{output_shape}"


def stem_key(layout: Layout, image_size: int) -> str:
    """Key of the first 3x3 stride-2 conv (+ BN + h_swish) at ``image_size``."""
    stem = layout.stem
    out = conv_output_size(image_size, stem.kernel_size, stem.stride)
    return _op_key("Conv", _shape(image_size, image_size, stem.in_channels),
                   _shape(out, out, stem.out_channels))


def block_key(block: ActiveBlock) -> str:
    """Key of one MBConv block with its choices made (the fixed first block included)."""
    spec, size, out = block.spec, block.input_size, block.output_size
    key = _op_key("expanded_conv", _shape(size, size, spec.in_channels),
                  _shape(out, out, spec.out_channels))
    return (f"{key}-expand:{block.mid_channels}-kernel:{block.kernel_size}-stride:{spec.stride}"
            f"-idskip:{int(spec.residual)}-se:{int(spec.use_se)}-hs:{int(spec.act == 'h_swish')}")


def head_keys(layout: Layout, feature_size: int) -> list[str]:
    """Keys of final expand conv, global pooling, feature mix conv and classifier, given the
    spatial size of the last block's output."""
    final: ConvSpec = layout.final_expand
    mix: ConvSpec = layout.feature_mix
    return [
        _op_key("Conv_1", _shape(feature_size, feature_size, final.in_channels),
                _shape(feature_size, feature_size, final.out_channels)),
        _op_key("AvgPool2D", _shape(feature_size, feature_size, final.out_channels),
                _shape(1, 1, final.out_channels)),
        _op_key("Conv_2", _shape(1, 1, mix.in_channels), _shape(1, 1, mix.out_channels)),
        _op_key("Logits", _shape(1, 1, mix.out_channels), str(layout.n_classes)),
    ]


def op_keys(layout: Layout, arch: Mapping, image_size: int | None = None) -> list[str]:
    """The lookup-table keys of every op ``arch`` runs at ``image_size`` (default ``arch['r']``),
    in execution order: stem, first block, the active blocks, then the four head ops.

    The predicted latency of ``arch`` is the sum of the table's means over these keys; a
    table builder must measure exactly these ops.
    """
    arch = layout.space.validate(arch, require_resolution=image_size is None)
    image_size = arch["r"][0] if image_size is None else image_size
    blocks = layout.active_blocks(arch, image_size)
    return [stem_key(layout, image_size)] + [block_key(b) for b in blocks] + \
        head_keys(layout, blocks[-1].output_size)


class LatencyTable:
    """``{key: {"count", "mean", "var"}}`` with latencies in ms."""

    def __init__(self, entries: Mapping[str, Mapping], source: str = "<table>"):
        self.source = source
        self.entries = {}
        for key, entry in entries.items():
            if not isinstance(entry, Mapping) or not isinstance(entry.get("mean"), numbers.Real) \
                    or isinstance(entry.get("mean"), bool):
                raise ValueError(f"{source}: entry {key!r} must be a mapping with a numeric 'mean' "
                                 f"(ms), got {entry!r}")
            self.entries[str(key)] = {f: entry[f] for f in ENTRY_FIELDS if f in entry}

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def mean(self, key: str) -> float:
        """Mean latency of one op in ms; a ValueError naming the key when the table lacks it."""
        try:
            return float(self.entries[key]["mean"])
        except KeyError:
            raise ValueError(f"latency table {self.source} has no entry for op {key!r}") from None

    def predict_latency(self, layout: Layout, arch: Mapping, image_size: int | None = None) -> float:
        """Sum of the means of ``op_keys(layout, arch, image_size)``, one arch at a time."""
        return sum(self.mean(key) for key in op_keys(layout, arch, image_size))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.entries, sort_keys=True)

    def save(self, path: str) -> None:
        """Write the table as YAML (atomically)."""
        atomic_write_text(path, self.to_yaml())


def load_latency_table(path: str) -> LatencyTable:
    """A table from one YAML file, or merged from a directory of ``<r>_lookup_table.yaml`` files."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*_lookup_table.yaml")))
        if not files:
            raise ValueError(f"latency table directory {path} has no *_lookup_table.yaml files")
    elif os.path.exists(path):
        files = [path]
    else:
        raise FileNotFoundError(f"latency table {path} does not exist")
    entries = {}
    for name in files:
        with open(name, encoding="utf-8") as f:
            try:
                data = yaml.safe_load(f)
            except yaml.YAMLError as err:
                raise ValueError(f"latency table {name} is not valid YAML: {err}") from None
        if not isinstance(data, Mapping) or not data:
            raise ValueError(f"latency table {name} must be a non-empty mapping of op key -> "
                             "{count, mean, var}")
        entries.update(LatencyTable(data, name).entries)
    return LatencyTable(entries, path)
