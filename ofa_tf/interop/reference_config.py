"""The reference's static network JSON (``net.config``) as a search space and arch of ours.

The reference publishes its specialized subnets as a static ``MobileNetV3`` or
``ProxylessNASNets`` config: a stem, a list of MBConv blocks each with its own kernel size and
expand ratio, a head and a classifier. Here such a config becomes

* a one-subnet `SearchSpace` (`config_space`): its stages are the config's runs of blocks
  (a new stage where the stride is 2 or the width changes), each of fixed depth, at the
  config's widths (width multiplier 1), so the shared layout (`ofa_tf.arch.layout`) and the
  static builder build it without a second description of a block; and
* when it is a subnet of a preset space, the arch in that space (`preset_arch`).

Both are checked by comparing every layer the layout would build with the config's
(`config_layers` against `layout_layers`): a config the layout cannot express (e.g. a middle
width that is not ``make_divisible(round(in x e))``) is refused with the first difference
named. Nothing here needs TensorFlow or torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
from typing import Mapping

from ofa_tf.arch.layout import Layout, build_layout
from ofa_tf.arch.space import PRESETS, SearchSpace
from ofa_tf.arch.stages import ACTIVATIONS, StageSpec

# The reference's static network classes (`name` of a net.config) and our family of each.
NETWORK_FAMILIES = {"MobileNetV3": "mobilenet_v3", "ProxylessNASNets": "proxyless"}
# The head modules of each class, in order, besides the classifier.
HEAD_MODULES = {"mobilenet_v3": ("final_expand_layer", "feature_mix_layer"),
                "proxyless": ("feature_mix_layer",)}
# The reference's BN defaults when a config has no "bn" entry (torch momentum, eps).
DEFAULT_BN = {"mobilenet_v3": (0.1, 1e-5), "proxyless": (0.1, 1e-3)}
_BLOCK_CLASSES = ("MobileInvertedResidualBlock", "ResidualBlock")
_MBCONV_CLASSES = ("MBInvertedConvLayer", "MBConvLayer")


def read_json_file(path: str, what: str) -> dict:
    """A JSON object from ``path``, with one error naming the file if it is missing or not JSON."""
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise ValueError(f"{what} {path!r} is a directory; pass the file")
        raise FileNotFoundError(f"{what} {path!r} not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path!r} holds a JSON {type(data).__name__}, not an object")
    return data


def _field(entry: Mapping, key: str, where: str, kind=int):
    if not isinstance(entry, Mapping):
        raise ValueError(f"net.config: {where} must be an object, got {type(entry).__name__}")
    if key not in entry:
        raise ValueError(f"net.config: {where} has no {key!r}")
    value = entry[key]
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is str:
        ok = isinstance(value, str) or value is None
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
            (kind is float or float(value).is_integer())
    if not ok:
        raise ValueError(f"net.config: {where}.{key} must be {kind.__name__}, got {value!r}")
    return int(value) if kind is int else value


def network_family(config: Mapping) -> str:
    """Our family of a net.config's network class; one error naming an unknown class."""
    name = config.get("name")
    if not isinstance(name, str) or name not in NETWORK_FAMILIES:
        raise ValueError(f"net.config: network class {name!r} is not supported; known: {sorted(NETWORK_FAMILIES)}")
    return NETWORK_FAMILIES[name]


def _conv_entry(entry, where) -> dict:
    if not isinstance(entry, Mapping) or entry.get("name") != "ConvLayer":
        got = entry.get("name") if isinstance(entry, Mapping) else entry
        raise ValueError(f"net.config: {where} must be a ConvLayer, got {got!r}")
    for key, expected in (("groups", 1), ("dilation", 1)):
        if entry.get(key, expected) != expected:
            raise ValueError(f"net.config: {where}.{key} is {entry[key]!r}; only {expected} is supported")
    if entry.get("ops_order", "weight_bn_act") != "weight_bn_act":
        raise ValueError(f"net.config: {where}.ops_order {entry['ops_order']!r} is not supported (weight_bn_act)")
    return {"in": _field(entry, "in_channels", where), "out": _field(entry, "out_channels", where),
            "kernel_size": _field(entry, "kernel_size", where), "stride": _field(entry, "stride", where),
            "act": _field(entry, "act_func", where, str), "bn": _field(entry, "use_bn", where, bool),
            "bias": _field(entry, "bias", where, bool)}


def _block_entry(entry, where) -> dict:
    if not isinstance(entry, Mapping) or entry.get("name") not in _BLOCK_CLASSES:
        got = entry.get("name") if isinstance(entry, Mapping) else entry
        raise ValueError(f"net.config: {where} must be one of {_BLOCK_CLASSES}, got {got!r}")
    conv = entry.get("conv", entry.get("mobile_inverted_conv"))
    name = conv.get("name") if isinstance(conv, Mapping) else conv
    if name not in _MBCONV_CLASSES:
        raise ValueError(f"net.config: {where} holds a {name!r}; only MBConv blocks ({_MBCONV_CLASSES}) are "
                         "supported")
    shortcut = entry.get("shortcut")
    if shortcut is not None and (not isinstance(shortcut, Mapping) or shortcut.get("name") != "IdentityLayer"):
        raise ValueError(f"net.config: {where}.shortcut must be null or an IdentityLayer, got {shortcut!r}")
    expand = _field(conv, "expand_ratio", where, float)
    mid = conv.get("mid_channels")
    in_channels = _field(conv, "in_channels", where)
    if mid is None:   # the reference's default middle width
        mid = in_channels if expand == 1 else round(in_channels * expand)
    elif isinstance(mid, bool) or not isinstance(mid, numbers.Integral):
        raise ValueError(f"net.config: {where}.mid_channels must be int or null, got {mid!r}")
    if conv.get("groups") not in (None, 1):
        raise ValueError(f"net.config: {where}.groups is {conv['groups']!r}; grouped convs are not supported")
    return {"in": in_channels, "out": _field(conv, "out_channels", where),
            "kernel_size": _field(conv, "kernel_size", where), "stride": _field(conv, "stride", where),
            "expand_ratio": float(expand), "mid": int(mid), "act": _field(conv, "act_func", where, str),
            "se": bool(conv.get("use_se", False)), "residual": shortcut is not None}


def _classifier_entry(entry) -> dict:
    where = "classifier"
    if not isinstance(entry, Mapping) or entry.get("name") != "LinearLayer":
        got = entry.get("name") if isinstance(entry, Mapping) else entry
        raise ValueError(f"net.config: classifier must be a LinearLayer, got {got!r}")
    if entry.get("use_bn") or entry.get("act_func") or not entry.get("bias", True):
        raise ValueError("net.config: only a plain classifier (bias, no BN, no activation) is supported")
    return {"in": _field(entry, "in_features", where), "out": _field(entry, "out_features", where)}


def config_layers(config: Mapping) -> list:
    """``(where, fields)`` of every layer of a net.config, in order: the stem (``first_conv``),
    ``blocks.<i>``, the head convs and the classifier, in the form `layout_layers` gives."""
    family = network_family(config)
    blocks = config.get("blocks")
    if not isinstance(blocks, list) or len(blocks) < 2:
        raise ValueError("net.config: blocks must be a list of at least 2 blocks")
    out = [("first_conv", _conv_entry(config.get("first_conv"), "first_conv"))]
    out += [(f"blocks.{i}", _block_entry(b, f"blocks[{i}]")) for i, b in enumerate(blocks)]
    out += [(m, _conv_entry(config.get(m), m)) for m in HEAD_MODULES[family]]
    out.append(("classifier", _classifier_entry(config.get("classifier"))))
    return out


def layout_layers(layout: Layout, arch: Mapping, image_size: int) -> list:
    """What `config_layers` gives for the network the layout builds for ``arch``."""
    conv = lambda s: {"in": s.in_channels, "out": s.out_channels, "kernel_size": s.kernel_size,  # noqa: E731
                      "stride": s.stride, "act": s.act, "bn": s.use_bn, "bias": s.use_bias}
    out = [("first_conv", conv(layout.stem))]
    for i, block in enumerate(layout.active_blocks(arch, image_size)):
        s = block.spec
        out.append((f"blocks.{i}", {"in": s.in_channels, "out": s.out_channels, "kernel_size": block.kernel_size,
                                    "stride": s.stride, "expand_ratio": float(block.expand_ratio),
                                    "mid": block.mid_channels, "act": s.act, "se": s.use_se,
                                    "residual": s.residual}))
    for spec in layout.head_convs:
        out.append(("final_expand_layer" if spec is layout.final_expand else "feature_mix_layer", conv(spec)))
    out.append(("classifier", {"in": layout.n_features, "out": layout.n_classes}))
    return out


def first_difference(config: list, built: list, label: str) -> str | None:
    """How the layers ``built`` (`layout_layers`) differ from ``config``'s, or None."""
    if len(config) != len(built):
        n_config = sum(w.startswith("blocks.") for w, _ in config)
        n_built = sum(w.startswith("blocks.") for w, _ in built)
        return f"net.config has {n_config} blocks, {label} {n_built}"
    for (where, theirs), (_, ours) in zip(config, built):
        for key, value in theirs.items():
            same = math.isclose(value, ours[key], abs_tol=1e-9) if key == "expand_ratio" else value == ours[key]
            if not same:
                return f"{where}.{key} is {value!r} in net.config, {ours[key]!r} in {label}"
    return None


def _stages(blocks: list) -> list:
    """The config's blocks after the first, in runs: a new run where the stride is 2, the width
    changes or the activation or SE changes."""
    runs = []
    for fields in blocks:
        last = runs[-1][-1] if runs else None
        if last is None or fields["stride"] != 1 or fields["out"] != last["out"] or \
                (fields["act"], fields["se"]) != (last["act"], last["se"]):
            runs.append([])
        runs[-1].append(fields)
    return runs


def _image_size(run_config: Mapping | None) -> int:
    size = (run_config or {}).get("image_size")
    if isinstance(size, list) and size:   # the reference also trains with a list of sizes
        size = max(size)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 8:
        raise ValueError(f"run.config: image_size must be an int >= 8 (or a list of them), got {size!r}")
    return int(size)


@dataclasses.dataclass(frozen=True)
class SpecializedNet:
    """A net.config as ours: its one-subnet space and arch, the layout, and BN settings (Keras)."""

    config: dict
    family: str
    image_size: int
    space: SearchSpace
    arch: dict
    layout: Layout
    bn_momentum: float
    bn_epsilon: float

    @property
    def n_classes(self) -> int:
        return self.layout.n_classes


def config_space(config: Mapping, run_config: Mapping | None) -> SpecializedNet:
    """The one-subnet space of a net.config (see the module docstring), checked layer by layer."""
    family = network_family(config)
    layers = config_layers(config)
    image_size = _image_size(run_config)
    blocks = [fields for where, fields in layers if where.startswith("blocks.")]
    first, runs = blocks[0], _stages(blocks[1:])
    stages = []
    for i, run in enumerate(runs):
        act = run[0]["act"]
        if act not in ACTIVATIONS:
            raise ValueError(f"net.config: stage {i + 1} uses activation {act!r}; supported: {ACTIVATIONS}")
        if run[0]["stride"] not in (1, 2):
            raise ValueError(f"net.config: a block has stride {run[0]['stride']}; only 1 and 2 are supported")
        stages.append(StageSpec(width=run[0]["out"], stride=run[0]["stride"], act=act, use_se=run[0]["se"],
                                depth=len(run)))
    head = dict(layers[-1 - len(HEAD_MODULES[family]):-1])
    stage_blocks = [b for run in runs for b in run]
    for i, fields in enumerate(stage_blocks, 1):
        if fields["expand_ratio"] == 1:
            raise ValueError(f"net.config: blocks[{i}] has expand ratio 1 (no expansion conv), which only "
                             "the first block may have")
    try:
        space = SearchSpace(
            ks_list=sorted({b["kernel_size"] for b in stage_blocks}),
            expand_ratio_list=sorted({b["expand_ratio"] for b in stage_blocks}),
            depth_list=sorted({len(run) for run in runs}), resolutions=(image_size,), width_mult=1.0,
            stages=tuple(stages), stem_width=layers[0][1]["out"], first_block_width=first["out"],
            final_expand_width=head["final_expand_layer"]["out"] if "final_expand_layer" in head else 0,
            feature_mix_width=head["feature_mix_layer"]["out"], family=family)
    except ValueError as err:
        raise ValueError(f"net.config does not describe a supported network: {err}") from None
    arch = {"ks": [b["kernel_size"] for b in stage_blocks], "e": [b["expand_ratio"] for b in stage_blocks],
            "d": [len(run) for run in runs], "r": [image_size]}
    arch = space.validate(arch, require_resolution=True)
    classifier = config["classifier"]
    dropout = classifier.get("dropout_rate", 0) or 0
    layout = build_layout(space, layers[-1][1]["out"], float(dropout))
    difference = first_difference(layers, layout_layers(layout, arch, image_size), "the layout built from it")
    if difference:
        raise ValueError(f"net.config is not a network our layout builds: {difference}")
    momentum, eps = DEFAULT_BN[family]
    bn = config.get("bn") or {}
    if not isinstance(bn, Mapping):
        raise ValueError(f"net.config: bn must be an object with momentum and eps, got {bn!r}")
    momentum, eps = bn.get("momentum", momentum), bn.get("eps", eps)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (momentum, eps)) \
            or not (0 < momentum < 1 and eps > 0):
        raise ValueError("net.config: bn must hold a momentum in (0, 1) and a positive eps, got "
                         f"{config.get('bn')!r}")
    return SpecializedNet(dict(config), family, image_size, space, arch, layout, 1.0 - float(momentum), float(eps))


class NotASubnetError(ValueError):
    """The config is no subnet of any preset space of its family."""


def preset_arch(net: SpecializedNet) -> tuple:
    """``(preset name, arch dict in it)`` for the first preset space (`PRESETS`) of which the config
    is a subnet; the arch's ``r`` is the config's image size, which may lie outside the preset's
    training resolutions. Raises `NotASubnetError` naming each preset's first mismatch."""
    layers = config_layers(net.config)
    blocks = [fields for where, fields in layers if where.startswith("blocks.")]
    runs = _stages(blocks[1:])
    reasons = []
    for name, make in PRESETS.items():
        space = make()
        if space.family != net.family:
            continue
        reason, arch = _fit(space, runs, net, layers)
        if reason is None:
            return name, arch
        reasons.append(f"{name}: {reason}")
    raise NotASubnetError(f"net.config ({net.config['name']}) is not a subnet of any preset space: "
                          + "; ".join(reasons))


def _fit(space: SearchSpace, runs: list, net: SpecializedNet, layers: list) -> tuple:
    """(None, arch) if the config's stages fit ``space``; else (the first mismatch, None)."""
    if len(runs) != space.n_stages:
        return f"net.config has {len(runs)} stages, the space {space.n_stages}", None
    ks, e, d = [], [], []
    for s, run in enumerate(runs):
        slots = len(space.stage_slots(s))
        if len(run) not in space.stage_depths(s):
            return f"stage {s + 1} has {len(run)} blocks, the space allows {list(space.stage_depths(s))}", None
        ks += [b["kernel_size"] for b in run] + [min(space.ks_list)] * (slots - len(run))
        e += [b["expand_ratio"] for b in run] + [min(space.expand_ratio_list)] * (slots - len(run))
        d.append(len(run))
    try:
        arch = space.validate({"ks": ks, "e": e, "d": d})
    except ValueError as err:
        return str(err), None
    layout = build_layout(space, net.n_classes, net.layout.dropout_rate)
    difference = first_difference(layers, layout_layers(layout, arch, net.image_size), "the space")
    if difference:
        return difference, None
    return None, {**arch, "r": [net.image_size]}
