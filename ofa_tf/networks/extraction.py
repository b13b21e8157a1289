"""Turn a subnet of any family's supernet into a plain Keras model with its weights."""

from __future__ import annotations

from typing import Mapping

from ofa_tf.networks.registry import family_of


def extract_subnet(supernet, arch: Mapping, image_size: int | None = None, keras_module=None,
                   preserve_weight: bool = True, name: str | None = None, batch_size: int | None = None):
    """Build ``arch`` with standard layers (the family's static builder, from the supernet's
    layout) and copy the active weights (kernel transforms applied, channels sliced) into it.

    ``image_size`` defaults to the arch's resolution (`SearchSpace.arch`). ``batch_size``
    fixes the input's batch dimension (see `Family.build_static_model`).
    """
    arch = supernet.space.arch(arch)
    if image_size is None:
        image_size = arch.resolution
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    kwargs = {} if keras_module is None else {"keras_module": keras_module}
    model = family_of(supernet.space).build_static_model(supernet.layout, arch, image_size, bn_momentum=supernet.bn_momentum,
                               bn_epsilon=supernet.bn_epsilon, name=name or "ofa_subnet",
                               batch_size=batch_size, **kwargs)
    if not preserve_weight:
        return model
    weights = supernet.active_weights(arch)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise RuntimeError(f"no supernet weights for static layer {layer.name!r}")
        layer.set_weights(weights.pop(layer.name))
    if weights:
        raise RuntimeError(f"supernet weights for layers missing from the subnet: {sorted(weights)}")
    return model
