"""Which tensor of the reference's OFA-MobileNetV3 / OFA-ProxylessNAS / OFA-ResNet50D state_dict is
which variable of ours.

The reference (mit-han-lab/once-for-all) names its tensors after its modules
(``blocks.3.conv.depth_conv.conv.conv.weight``) and stores convolutions as OIHW;
Keras stores HWIO (depthwise: H, W, C, 1) and Dense kernels as (in, out). The
mapping is walked from our supernet's own layers, so it covers exactly the
variables the supernet has, and it runs in both directions. Nothing here needs
torch: tensors are read with ``numpy.asarray``.
"""

from __future__ import annotations

import collections
import dataclasses
import types
from typing import Mapping

import numpy as np

from ofa_tf.arch.layout import make_divisible
from ofa_tf.arch.space import SearchSpace

# Our array = reference array transposed by the first permutation; back by the second.
_LAYOUTS = {
    "conv": ((2, 3, 1, 0), (3, 2, 0, 1)),        # (O, I, kh, kw) <-> (kh, kw, I, O)
    "depthwise": ((2, 3, 0, 1), (2, 3, 0, 1)),   # (C, 1, k, k)   <-> (k, k, C, 1)
    "dense": ((1, 0), (1, 0)),                   # (out, in)      <-> (in, out)
    "same": (None, None),                        # BN vectors, biases, kernel transform matrices
}
# Module-path spellings of older releases and of the reference's dynamic wrappers, reduced
# to one form before names are compared (the reference's own load_state_dict accepts them all).
_ALIASES = ((".mobile_inverted_conv.", ".conv."), (".bn.bn.", ".bn."), (".conv.conv.", ".conv."),
            (".linear.linear.", ".linear."))
_BN_FIELDS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
              ("running_var", "moving_variance"))
_BN_COUNTER = "num_batches_tracked"  # PyTorch bookkeeping, no counterpart in Keras
_MAX_LISTED = 6


@dataclasses.dataclass(frozen=True)
class TensorLink:
    """One reference tensor name, the Keras variable it fills, and how the axes differ."""

    name: str
    variable: object
    layout: str

    @property
    def reference_shape(self) -> tuple:
        shape = tuple(self.variable.shape)
        inverse = _LAYOUTS[self.layout][1]
        return shape if inverse is None else tuple(shape[i] for i in inverse)

    def to_keras(self, array: np.ndarray) -> np.ndarray:
        forward = _LAYOUTS[self.layout][0]
        return array if forward is None else np.transpose(array, forward)

    def to_reference(self) -> np.ndarray:
        value = np.asarray(self.variable.numpy())
        inverse = _LAYOUTS[self.layout][1]
        return value if inverse is None else np.ascontiguousarray(np.transpose(value, inverse))


class CheckpointMismatchError(ValueError):
    """The state_dict does not fit the supernet: tensors missing, unexpected or mis-shaped."""


def canonical_name(name: str) -> str:
    """The reference tensor name with wrapper and legacy module names reduced to one spelling."""
    if name.startswith("module."):  # saved from DataParallel / DistributedDataParallel
        name = name[len("module."):]
    for old, new in _ALIASES:
        name = name.replace(old, new)
    return name


def _bn_links(prefix: str, bn) -> list:
    return [TensorLink(f"{prefix}.{ref}", getattr(bn, ours), "same") for ref, ours in _BN_FIELDS]


def _block_links(block) -> list:
    spec, p = block.spec, f"blocks.{block.spec.index}.conv"
    links = []
    if spec.has_expand:
        links.append(TensorLink(f"{p}.inverted_bottleneck.conv.conv.weight", block.expand.kernel, "conv"))
        links += _bn_links(f"{p}.inverted_bottleneck.bn.bn", block.expand_bn)
    # The fixed first block is a static layer in the reference (no `.conv.conv` / `.bn.bn` nesting).
    nest = ".conv" if spec.slot is not None else ""
    links.append(TensorLink(f"{p}.depth_conv.conv{nest}.weight", block.depthwise.kernel, "depthwise"))
    for (src, dst), matrix in block.depthwise.transforms.items():
        # Both sides multiply the flattened k*k kernel the same way: ours M @ K(k*k, C),
        # the reference F.linear(K(C, k*k), M) = K @ M^T. So M is copied as is.
        links.append(TensorLink(f"{p}.depth_conv.conv.{src}to{dst}_matrix", matrix, "same"))
    links += _bn_links(f"{p}.depth_conv.bn{'.bn' if nest else ''}", block.depthwise_bn)
    if spec.use_se:
        for part in ("reduce", "expand"):
            conv = getattr(block.se, part)
            links.append(TensorLink(f"{p}.depth_conv.se.fc.{part}.weight", conv.kernel, "conv"))
            links.append(TensorLink(f"{p}.depth_conv.se.fc.{part}.bias", conv.bias, "same"))
    links.append(TensorLink(f"{p}.point_linear.conv{nest}.weight", block.project.kernel, "conv"))
    links += _bn_links(f"{p}.point_linear.bn{'.bn' if nest else ''}", block.project_bn)
    return links


def reference_links(net) -> list:
    """Every float variable of a supernet with its name in the reference's state_dict (the
    family's walk, `_FAMILY_LINKS`)."""
    return _FAMILY_LINKS[net.space.family](net)


def _mbconv_links(net) -> list:
    """An MBConv supernet (``OFAMobileNetV3``, ``OFAProxylessNASNets``). The head's convs are the
    reference's ``final_expand_layer`` and ``feature_mix_layer`` (with BN where the layout has one)."""
    links = [TensorLink("first_conv.conv.weight", net.stem_conv.kernel, "conv")]
    links += _bn_links("first_conv.bn", net.stem_bn)
    for block in net.blocks:
        links += _block_links(block)
    layout = net.layout
    for spec in layout.head_convs:
        module = "final_expand_layer" if spec is layout.final_expand else "feature_mix_layer"
        conv, bn = net.head_layers(spec)
        links.append(TensorLink(f"{module}.conv.weight", conv.kernel, "conv"))
        if bn is not None:
            links += _bn_links(f"{module}.bn", bn)
    return links + _classifier_links(net)


def _classifier_links(net, module: str = "classifier.linear") -> list:
    return [TensorLink(f"{module}.weight", net.classifier.kernel, "dense"),
            TensorLink(f"{module}.bias", net.classifier.bias, "same")]


def _bottleneck_links(net) -> list:
    """``OFAResNets``: ``input_stem.{0,1,2}`` (the residual conv 1 nested in its ResidualBlock),
    ``blocks.{i}.{conv1,conv2,conv3,downsample}``, the classifier."""
    links = []
    for i, (spec, conv, norm) in enumerate(zip(net.layout.stem, net.stem_convs, net.stem_norms)):
        p = f"input_stem.{i}{'.conv' if spec.skippable else ''}"
        links.append(TensorLink(f"{p}.conv.conv.weight", conv.kernel, "conv"))
        links += _bn_links(f"{p}.bn.bn", norm)
    for block in net.blocks:
        for role in block.roles:
            p = f"blocks.{block.spec.index}.{role}"
            links.append(TensorLink(f"{p}.conv.conv.weight", block.convs[role].kernel, "conv"))
            links += _bn_links(f"{p}.bn.bn", block.norms[role])
    return links + _classifier_links(net, "classifier.linear.linear")   # elastic input: a dynamic layer


# Each family's walk over its supernet's variables.
_FAMILY_LINKS = {"mobilenet_v3": _mbconv_links, "proxyless": _mbconv_links, "resnet": _bottleneck_links}


def _as_array(tensor) -> np.ndarray:
    if hasattr(tensor, "detach"):  # a torch tensor; numpy() needs it on the CPU without grad
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def checkpoint_width_mult(state_dict: Mapping, space: SearchSpace) -> float | None:
    """The width multiplier a reference state_dict was built with, read from its feature-mix
    layer (``make_divisible(space.feature_mix_width * width_mult)`` channels); None if that
    tensor is absent. A space with elastic width (``width_mult_list``) has the one multiplier 1.0."""
    if space.width_mult_list:
        return space.width_mult
    by_name = {canonical_name(k): v for k, v in state_dict.items()}
    tensor = by_name.get("feature_mix_layer.conv.weight")
    if tensor is None or len(tensor.shape) != 4:
        return None
    width, base = int(tensor.shape[0]), space.feature_mix_width
    guess = round(width / base, 2)
    return guess if make_divisible(base * guess) == width else width / base


# The reference's supernet families this mapping reads: each one's space at a width, and the
# reference's class of it (in ofa.imagenet_classification.elastic_nn.networks).
def _resnet50d_space(width_mult: float = 1.0) -> SearchSpace:
    """OFA-ResNet50D as released: elastic widths 0.65 / 0.8 / 1.0, so no other one multiplier."""
    if width_mult != 1.0:
        raise ValueError(f"OFA-ResNet50D has elastic widths (width_mult_list 0.65, 0.8, 1.0) and no width "
                         f"multiplier {width_mult:g}; leave out --width_mult")
    return SearchSpace.resnet50d()


REFERENCE_SPACES = {"mobilenet_v3": SearchSpace.mobilenet_v3, "proxyless": SearchSpace.proxyless,
                    "resnet": _resnet50d_space}
REFERENCE_CLASSES = {"mobilenet_v3": "OFAMobileNetV3", "proxyless": "OFAProxylessNASNets", "resnet": "OFAResNets"}


def checkpoint_family(state_dict: Mapping) -> str:
    """The family a reference state_dict belongs to: OFA-ResNet50D has an ``input_stem``;
    OFA-ProxylessNAS has a feature-mix layer with BN and no final expand layer; OFA-MobileNetV3
    the reverse."""
    names = {canonical_name(k) for k in state_dict}
    if any(name.startswith("input_stem.") for name in names):
        return "resnet"
    if "feature_mix_layer.bn.weight" in names and "final_expand_layer.conv.weight" not in names:
        return "proxyless"
    return "mobilenet_v3"


def _describe(net) -> str:
    s = net.space
    width = f"width_mult_list={list(s.width_mult_list)}" if s.width_mult_list else \
        f"width_mult={s.width_mult}, ks_list={list(s.ks_list)}"
    return (f"{type(net).__name__}({width}, expand_ratio_list={list(s.expand_ratio_list)}, "
            f"depth_list={list(s.depth_list)}, n_classes={net.n_classes})")


def _mismatch(net, state_dict: Mapping, problems: list) -> CheckpointMismatchError:
    listed = listed_problems(problems)
    width = checkpoint_width_mult(state_dict, net.space)
    if width is not None and abs(width - net.space.width_mult) > 1e-6:
        return CheckpointMismatchError(
            f"state_dict was built with width_mult {width:g}, not {net.space.width_mult:g}: import it "
            f"with width_mult {width:g} (first differences: {listed})")
    return CheckpointMismatchError(f"state_dict does not fit {_describe(net)}: {listed}")


def load_reference_state_dict(net, state_dict: Mapping) -> None:
    """Copy a reference supernet's state_dict into ``net`` of the same family (all or nothing).

    Every tensor is checked first; a missing, unexpected or mis-shaped tensor raises one
    :class:`CheckpointMismatchError` naming it, and ``net`` is left untouched.
    """
    problems = assign_checked(reference_links(net), state_dict)
    if problems:
        raise _mismatch(net, state_dict, problems)


def assign_checked(links: list, state_dict: Mapping) -> list:
    """Fill every link's variable from ``state_dict`` if every tensor fits; else change nothing and
    return the problems (missing, unexpected, mis-shaped or doubly spelled tensors)."""
    given = {}
    for key in state_dict:
        if key.rsplit(".", 1)[-1] == _BN_COUNTER:
            continue
        given.setdefault(canonical_name(key), []).append(key)
    problems, values = [], []
    for name, keys in given.items():
        if len(keys) > 1:
            problems.append(f"tensors {keys} are spellings of the same tensor {name!r}")
    expected = {canonical_name(link.name) for link in links}
    for link in links:
        keys = given.get(canonical_name(link.name))
        if not keys:
            problems.append(f"missing tensor {link.name!r} (shape {link.reference_shape})")
            continue
        array = _as_array(state_dict[keys[0]])
        if tuple(array.shape) != link.reference_shape:
            problems.append(f"tensor {keys[0]!r} has shape {tuple(array.shape)}, "
                            f"expected {link.reference_shape}")
            continue
        values.append((link, array))
    for name, keys in given.items():
        if name not in expected:
            problems.append(f"unexpected tensor {keys[0]!r}")
    if not problems:
        for link, array in values:
            link.variable.assign(link.to_keras(array).astype(np.float32))
    return problems


def listed_problems(problems: list) -> str:
    """The first few problems in one line, and how many more there are."""
    more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    return "; ".join(problems[:_MAX_LISTED]) + more


class _StaticBlock:
    """A static model's layers of one block under the names `_block_links` reads from a supernet
    block (the static builder names its layers as the supernet's sublayers)."""

    def __init__(self, model, spec, position: int):
        p, get = spec.name, model.get_layer
        # The reference numbers a static net's blocks in order, and nests no dynamic wrappers.
        self.spec = dataclasses.replace(spec, index=position, slot=None)
        if spec.has_expand:
            self.expand, self.expand_bn = get(f"{p}_expand"), get(f"{p}_expand_bn")
        depthwise = get(f"{p}_depthwise")
        self.depthwise = types.SimpleNamespace(kernel=depthwise.kernel, transforms={})
        self.depthwise_bn = get(f"{p}_depthwise_bn")
        if spec.use_se:
            self.se = types.SimpleNamespace(reduce=get(f"{p}_se_reduce"), expand=get(f"{p}_se_expand"))
        self.project, self.project_bn = get(f"{p}_project"), get(f"{p}_project_bn")


class _StaticNet:
    """A static model (`ofa_tf.networks.static.build_static_model`) as `reference_links` walks a
    supernet, so one mapping serves both."""

    def __init__(self, model, layout, arch, image_size: int):
        get = model.get_layer
        self.layout, self.space = layout, layout.space
        self.stem_conv, self.stem_bn = get(layout.stem.name), get(f"{layout.stem.name}_bn")
        self.blocks = [_StaticBlock(model, block.spec, i)
                       for i, block in enumerate(layout.active_blocks(arch, image_size))]
        self.classifier = get("logits")
        self._get = get

    def head_layers(self, spec):
        return self._get(spec.name), (self._get(f"{spec.name}_bn") if spec.use_bn else None)


def static_links(model, layout, arch, image_size: int) -> list:
    """Every float variable of a static model with its name in the reference's static network
    (``MobileNetV3`` / ``ProxylessNASNets`` of ``ofa.imagenet_classification.networks``)."""
    return [dataclasses.replace(link, name=canonical_name(link.name))
            for link in reference_links(_StaticNet(model, layout, arch, image_size))]


def reference_state_dict(net) -> "collections.OrderedDict[str, np.ndarray]":
    """``net``'s weights as the reference supernet's ``state_dict()`` (numpy arrays,
    reference names and layouts, BN batch counters at 0), the inverse of
    :func:`load_reference_state_dict`."""
    out = collections.OrderedDict()
    for link in reference_links(net):
        out[link.name] = link.to_reference()
        if link.name.endswith(".running_var"):
            out[link.name[: -len("running_var")] + _BN_COUNTER] = np.zeros((), np.int64)
    return out
