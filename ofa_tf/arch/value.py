"""`Arch`: one subnet of a search space, validated once, immutable, with its resolution.

Public entry points accept the reference's plain arch dicts (``{"ks", "e", "d", "r"}``, or
``{"d", "e", "w", "r"}`` for a space with elastic width) and turn
them into an `Arch` once with `SearchSpace.arch`; code below them passes the `Arch` on, and
``space.arch(a)`` of an `Arch` of the same space returns it unchecked. An `Arch` is also a
read-only mapping with the dict's keys (``a["ks"]`` is a list, ``a["r"]`` is ``[resolution]``),
so ``set_active_subnet(**a)`` and code written for dicts keep working.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:   # the space constructs Arch values; this module needs no import of it
    from ofa_tf.arch.space import SearchSpace

# Every key an arch dict of some space may have (a space's own: `SearchSpace.arch_keys`).
ARCH_KEYS = ("ks", "e", "d", "w", "r")


def arch_to_json(arch: Mapping) -> str:
    """Canonical JSON of an arch dict (stable key order, so it can be hashed)."""
    return json.dumps({k: list(arch[k]) for k in ARCH_KEYS if k in arch}, sort_keys=False)


class Arch(Mapping):
    """A validated subnet of ``space``: per-slot ``ks`` and ``e``, per-stage ``d`` (the stem's
    first when it is skippable), per-conv-group width indices ``w`` (empty without elastic
    width; ``ks`` is empty with it), and the input ``resolution``. Build it with
    `SearchSpace.arch`, not directly."""

    __slots__ = ("space", "ks", "e", "d", "w", "resolution", "_active_slots")

    def __init__(self, space: SearchSpace, ks, e, d, resolution: int, w=()):
        set_ = object.__setattr__
        set_(self, "space", space)
        set_(self, "ks", tuple(ks))
        set_(self, "e", tuple(e))
        set_(self, "d", tuple(d))
        set_(self, "w", tuple(w))
        set_(self, "resolution", int(resolution))
        set_(self, "_active_slots", tuple(space.active_slots(self)))

    def __setattr__(self, name, value):
        raise AttributeError("Arch is immutable; use with_resolution() or space.arch({...})")

    # -- the arch-dict view ---------------------------------------------------------------
    def __getitem__(self, key):
        if key == "r":
            return [self.resolution]
        if key in self.space.arch_keys:
            return list(getattr(self, key))
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.space.arch_keys)

    def __len__(self) -> int:
        return len(self.space.arch_keys)

    def __hash__(self) -> int:
        return hash((self.ks, self.e, self.d, self.w, self.resolution))

    def __repr__(self) -> str:
        return f"Arch({self.to_json()})"

    def to_dict(self) -> dict:
        """The reference's arch dict (new lists; JSON-ready)."""
        return {key: self[key] for key in self.space.arch_keys}

    def to_json(self) -> str:
        return arch_to_json(self)

    # -- what the subnet runs ---------------------------------------------------------------
    @property
    def active_slots(self) -> tuple:
        """Indices into ``ks`` / ``e`` of the block slots the subnet runs."""
        return self._active_slots

    @property
    def digest(self) -> str:
        """A short stable hash of what the network computes: depths and the choices of the
        active blocks only (an inactive slot's ks / e change nothing, so they don't change it).
        The resolution is not part of it; export file names add it separately."""
        active = self._active_slots
        if self.w:
            canonical = {"e": [self.e[i] for i in active], "d": list(self.d), "w": list(self.w)}
        else:
            canonical = {"ks": [self.ks[i] for i in active], "e": [self.e[i] for i in active],
                         "d": list(self.d)}
        return hashlib.sha1(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:10]

    def with_resolution(self, resolution: int) -> Arch:
        """The same blocks at another of the space's resolutions."""
        return self.space.arch(self, image_size=resolution)
