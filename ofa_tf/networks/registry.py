"""Families by name: what training, search, export and android_bench ask for a space's network.

A family module (``ofa_tf/networks/<family>.py``) registers one `Family` when it is imported;
``ofa_tf.networks`` imports every family module, so ``family_of(space)`` finds the family named
by ``space.family``. Code outside ``ofa_tf/networks/`` never names a family's classes.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

_FAMILIES: dict[str, "Family"] = {}


@dataclasses.dataclass(frozen=True)
class Family:
    """A family's Keras side. ``supernet_class(space=, n_classes=, dropout_rate=, bn_momentum=,
    bn_epsilon=, seed=)`` builds the elastic supernet (with OFA's subnet API and
    ``active_weights(arch)``, whose keys are the static model's layer names);
    ``build_static_model(layout, arch, image_size, ...)`` its plain twin; ``build_op_model`` one op
    of the twin, as latency lookup tables time it."""

    name: str
    supernet_class: type
    build_static_model: Callable
    build_op_model: Callable


def register_family(family: Family) -> Family:
    """Make ``family`` known by its name (one registration per name)."""
    registered = _FAMILIES.get(family.name)
    if registered is not None and registered != family:
        raise ValueError(f"family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        raise ValueError(f"unknown network family {name!r}; registered: {sorted(_FAMILIES)}")
    return _FAMILIES[name]


def family_of(space) -> Family:
    """The family of a `SearchSpace` (its ``family`` field)."""
    return get_family(space.family)
