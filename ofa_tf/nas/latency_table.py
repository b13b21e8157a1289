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
A table is a directory of the reference's per-resolution ``<r>_lookup_table.yaml`` files, one
table per input resolution, or one YAML file that serves every resolution. Per-resolution tables
stay apart: the same key (e.g. the head ops on a 6x6 feature map, reached from 176 and 192 px)
can hold a different measurement in each file, and an arch is predicted from the table of its
own resolution.
"""

from __future__ import annotations

import glob
import numbers
import os
import re
from typing import Mapping

import yaml

from ofa_tf.arch.layout import (RESNET_PARTS, ActiveBlock, ActiveBottleneck, ConvSpec, LatencyKeyFormat, Layout,
                                ResNetLayout, conv_output_size)
from ofa_tf.atomic_files import atomic_write_text

# What an entry keeps: ours write ``var``, the reference's Note10 tables ``std``.
ENTRY_FIELDS = ("count", "mean", "var", "std")
TABLE_FILE_SUFFIX = "_lookup_table.yaml"
_TABLE_FILE = re.compile(r"^(\d+)" + re.escape(TABLE_FILE_SUFFIX) + "$")


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


def block_key(block: ActiveBlock, key_format: LatencyKeyFormat = LatencyKeyFormat()) -> str:
    """Key of one MBConv block with its choices made (the fixed first block included), in the
    layout's ``latency_keys`` format."""
    spec, size, out = block.spec, block.input_size, block.output_size
    key = _op_key("expanded_conv", _shape(size, size, spec.in_channels),
                  _shape(out, out, spec.out_channels))
    expand = block.mid_channels if key_format.expand == "channels" else int(block.expand_ratio)
    key = f"{key}-expand:{expand}-kernel:{block.kernel_size}-stride:{spec.stride}-idskip:{int(spec.residual)}"
    return f"{key}-se:{int(spec.use_se)}-hs:{int(spec.act == 'h_swish')}" if key_format.flags else key


def head_ops(layout: Layout, feature_size: int) -> list[tuple[str, str, int]]:
    """``(key, op, input size)`` of the head's ops after the last block (output ``feature_size``
    px): its convs on the feature map (``Conv_1``, ...), the global pool (``AvgPool2D``) and the
    convs on the pooled map (numbered on), then the classifier (``Logits``). With no conv after
    the pool, the pool is timed with the classifier, whose input is then the feature map (the
    reference's ProxylessNAS tables). ``op`` names the part for ``build_op_model``."""
    ops, size, number = [], feature_size, 1

    def conv(spec: ConvSpec, at: int):
        nonlocal number
        role = "final_expand" if spec is layout.final_expand else "feature_mix"
        ops.append((_op_key(f"Conv_{number}", _shape(at, at, spec.in_channels),
                            _shape(at, at, spec.out_channels)), role, at))
        number += 1

    for spec in layout.pre_pool_convs:
        conv(spec, size)
    channels = layout.pre_pool_convs[-1].out_channels if layout.pre_pool_convs else layout.stages[-1][-1].out_channels
    if layout.post_pool_convs:
        ops.append((_op_key("AvgPool2D", _shape(size, size, channels), _shape(1, 1, channels)),
                    "global_pool", size))
        size = 1
        for spec in layout.post_pool_convs:
            conv(spec, 1)
    ops.append((_op_key("Logits", _shape(size, size, layout.n_features), str(layout.n_classes)),
                "classifier", size))
    return ops


def head_keys(layout: Layout, feature_size: int) -> list[str]:
    """The keys of `head_ops`."""
    return [key for key, _, _ in head_ops(layout, feature_size)]


def op_keys(layout, arch: Mapping, image_size: int | None = None) -> list[str]:
    """The lookup-table keys of every op ``arch`` runs at ``image_size`` (default ``arch['r']``),
    in execution order: for an MBConv `Layout` the stem, first block, the active blocks, then the
    head's ops (`head_ops`); for a bottleneck `ResNetLayout` the keys of `bottleneck_op_keys`.

    The predicted latency of ``arch`` is the sum of the table's means over these keys; a
    table builder must measure exactly these ops.
    """
    arch = layout.space.validate(arch, require_resolution=image_size is None)
    image_size = arch["r"][0] if image_size is None else image_size
    if isinstance(layout, ResNetLayout):
        return bottleneck_op_keys(layout, arch, image_size)
    blocks = layout.active_blocks(arch, image_size)
    return [stem_key(layout, image_size)] + [block_key(b, layout.latency_keys) for b in blocks] + \
        head_keys(layout, blocks[-1].output_size)


def bottleneck_op_keys(layout: ResNetLayout, arch: Mapping, image_size: int) -> list[str]:
    """Keys of our own design for OFA-ResNet50D (the reference has no ResNet tables), one per op
    of ``layout.active_ops`` (`resnet_op_key`), in execution order::

        stem_conv-input:64x64x3-output:32x32x24-kernel:3-stride:2-residual:0
        MaxPool2D-input:32x32x40-output:16x16x40
        bottleneck-input:16x16x40-output:16x16x168-mid:32-kernel:3-stride:1-downsample:1
        Logits-input:2x2x1328-output:1000
    """
    return [resnet_op_key(layout, op, size) for op, size in layout.active_ops(arch, image_size)]


def resnet_op_key(layout: ResNetLayout, op, input_size: int) -> str:
    """The key of one op of a bottleneck layout (an `ActiveBottleneck` or a `ResNetPart`) on an
    ``input_size`` map, with everything that changes its cost in it: ``residual`` marks the
    stem's skippable conv (it adds its input), ``mid`` is a block's middle width, ``downsample``
    its average-pool + 1x1 conv shortcut; the classifier's input is the last feature map (the
    global pool is timed with it)."""
    size = input_size
    if isinstance(op, ActiveBottleneck):
        out = op.output_size
        return (f"{_op_key('bottleneck', _shape(size, size, op.in_channels), _shape(out, out, op.out_channels))}"
                f"-mid:{op.mid_channels}-kernel:{op.spec.kernel_size}-stride:{op.spec.stride}"
                f"-downsample:{int(op.spec.downsample)}")
    if op.kind == "stem_conv":
        conv = op.conv
        out = conv_output_size(size, conv.kernel_size, conv.stride)
        return (f"{_op_key('stem_conv', _shape(size, size, conv.in_channels), _shape(out, out, conv.out_channels))}"
                f"-kernel:{conv.kernel_size}-stride:{conv.stride}-residual:{int(op.residual)}")
    if op.kind == "max_pool":
        pooled = conv_output_size(size, layout.pool_kernel_size, layout.pool_stride)
        return _op_key("MaxPool2D", _shape(size, size, op.channels), _shape(pooled, pooled, op.channels))
    if op.kind == "classifier":
        return _op_key("Logits", _shape(size, size, op.channels), str(layout.n_classes))
    raise ValueError(f"op must be an ActiveBottleneck or a ResNetPart of a kind in {RESNET_PARTS}, got {op!r}")


def table_file(directory: str, resolution: int) -> str:
    """The reference's name of one resolution's table in a table directory."""
    return os.path.join(directory, f"{int(resolution)}{TABLE_FILE_SUFFIX}")


def _checked_entries(entries: Mapping, source: str) -> dict:
    if not isinstance(entries, Mapping) or not entries:
        raise ValueError(f"latency table {source} must be a non-empty mapping of op key -> "
                         "{count, mean, var}")
    checked = {}
    for key, entry in entries.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("mean"), numbers.Real) \
                or isinstance(entry.get("mean"), bool):
            raise ValueError(f"{source}: entry {key!r} must be a mapping with a numeric 'mean' "
                             f"(ms), got {entry!r}")
        checked[str(key)] = {f: entry[f] for f in ENTRY_FIELDS if f in entry}
    return checked


class LatencyTable:
    """Op latencies in ms, ``{key: {"count", "mean", "var"}}``: one such mapping per input
    resolution (``LatencyTable(by_resolution={160: entries, ...})``, the reference's directory
    form), or a single one that serves every resolution (``LatencyTable(entries)``, one file).
    ``tables`` holds them keyed by resolution (by ``None`` for the single one)."""

    def __init__(self, entries: Mapping[str, Mapping] | None = None, source: str = "<table>", *,
                 by_resolution: Mapping[int, Mapping[str, Mapping]] | None = None):
        self.source = source
        if (entries is None) == (by_resolution is None):
            raise ValueError("a latency table takes either entries (one table for every resolution) "
                             "or by_resolution ({resolution: entries})")
        if entries is not None:
            self.tables = {None: _checked_entries(entries, source)}
        elif not by_resolution:
            raise ValueError(f"latency table {source} has no resolution's table")
        else:
            self.tables = {int(r): _checked_entries(e, f"{source} ({int(r)} px)")
                           for r, e in sorted(by_resolution.items())}

    @property
    def resolutions(self) -> tuple | None:
        """The resolutions with a table of their own; None for a table that serves all."""
        return None if None in self.tables else tuple(self.tables)

    def entries_for(self, resolution: int | None) -> dict:
        """The entries that apply at ``resolution``; a ValueError when it has no table."""
        if None in self.tables:
            return self.tables[None]
        if resolution is None:
            raise ValueError(f"latency table {self.source} has one table per resolution; give the resolution")
        try:
            return self.tables[int(resolution)]
        except KeyError:
            raise ValueError(f"latency table {self.source} has no table for {resolution} px (it has tables "
                             f"for {', '.join(map(str, self.tables))} px)") from None

    def has(self, key: str, resolution: int | None = None) -> bool:
        """Whether ``key`` can be looked up at ``resolution``."""
        entries = self.tables.get(None, self.tables.get(resolution))
        return entries is not None and key in entries

    def __len__(self) -> int:
        """Entries over all resolutions' tables."""
        return sum(len(entries) for entries in self.tables.values())

    def mean(self, key: str, resolution: int | None = None) -> float:
        """Mean latency of one op in ms at ``resolution`` (ignored by a single table); a
        ValueError naming the key (or the resolution) when the table lacks it."""
        entries = self.entries_for(resolution)
        try:
            return float(entries[key]["mean"])
        except KeyError:
            where = "" if None in self.tables else f" at {resolution} px"
            raise ValueError(f"latency table {self.source} has no entry for op {key!r}{where}") from None

    def predict_latency(self, layout: Layout, arch: Mapping, image_size: int | None = None) -> float:
        """Sum of the means of ``op_keys(layout, arch, image_size)`` in the table of that
        resolution, one arch at a time."""
        arch = layout.space.validate(arch, require_resolution=image_size is None)
        image_size = arch["r"][0] if image_size is None else image_size
        return sum(self.mean(key, image_size) for key in op_keys(layout, arch, image_size))

    def map_entries(self, change) -> "LatencyTable":
        """A table of the same form with every entry replaced by ``change(entry)``."""
        changed = {r: {key: change(dict(entry)) for key, entry in entries.items()}
                   for r, entries in self.tables.items()}
        if None in changed:
            return LatencyTable(changed[None], self.source)
        return LatencyTable(source=self.source, by_resolution=changed)

    def save(self, path: str) -> None:
        """A single table as one YAML file; per-resolution tables as a directory of
        ``<r>_lookup_table.yaml`` (created if needed). Each file is written atomically."""
        if None in self.tables:
            atomic_write_text(path, entries_yaml(self.tables[None]))
            return
        if os.path.isfile(path):
            raise ValueError(f"{path} is a file; a table with one table per resolution is saved as a "
                             "directory of <r>_lookup_table.yaml")
        os.makedirs(path, exist_ok=True)
        for resolution, entries in self.tables.items():
            atomic_write_text(table_file(path, resolution), entries_yaml(entries))


def entries_yaml(entries: Mapping) -> str:
    """One table's entries as the reference's YAML."""
    return yaml.safe_dump(dict(entries), sort_keys=True)


def _read_entries(name: str) -> dict:
    with open(name, encoding="utf-8") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ValueError(f"latency table {name} is not valid YAML: {err}") from None
    return _checked_entries(data, name)


def table_files(directory: str) -> dict[int, str]:
    """``{resolution: path}`` of the ``<r>_lookup_table.yaml`` files in ``directory``."""
    files = {}
    for name in sorted(glob.glob(os.path.join(directory, "*" + TABLE_FILE_SUFFIX))):
        match = _TABLE_FILE.match(os.path.basename(name))
        if not match:
            raise ValueError(f"latency table file {name} is not named <resolution>{TABLE_FILE_SUFFIX}")
        files[int(match.group(1))] = name
    return dict(sorted(files.items()))


def load_latency_table(path: str) -> LatencyTable:
    """A single table from one YAML file, or one table per resolution from a directory of
    ``<r>_lookup_table.yaml`` files."""
    if os.path.isdir(path):
        files = table_files(path)
        if not files:
            raise ValueError(f"latency table directory {path} has no *{TABLE_FILE_SUFFIX} files")
        return LatencyTable(source=path, by_resolution={r: _read_entries(name) for r, name in files.items()})
    if not os.path.exists(path):
        raise FileNotFoundError(f"latency table {path} does not exist")
    return LatencyTable(_read_entries(path), path)
