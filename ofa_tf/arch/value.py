"""`Arch`: one subnet of a search space, validated once, immutable, with its resolution.

Public entry points accept the reference's plain arch dicts (``{"ks", "e", "d", "r"}``) and turn
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

ARCH_KEYS = ("ks", "e", "d", "r")


def arch_to_json(arch: Mapping) -> str:
    """Canonical JSON of an arch dict (stable key order, so it can be hashed)."""
    return json.dumps({k: list(arch[k]) for k in ARCH_KEYS if k in arch}, sort_keys=False)


class Arch(Mapping):
    """A validated subnet of ``space``: per-slot ``ks`` and ``e``, per-stage ``d``, and the
    input ``resolution``. Build it with `SearchSpace.arch`, not directly."""

    __slots__ = ("space", "ks", "e", "d", "resolution", "_active_slots")

    def __init__(self, space: SearchSpace, ks, e, d, resolution: int):
        set_ = object.__setattr__
        set_(self, "space", space)
        set_(self, "ks", tuple(ks))
        set_(self, "e", tuple(e))
        set_(self, "d", tuple(d))
        set_(self, "resolution", int(resolution))
        set_(self, "_active_slots", tuple(i for s in range(space.n_stages)
                                          for i in space.stage_slots(s)[: self.d[s]]))

    def __setattr__(self, name, value):
        raise AttributeError("Arch is immutable; use with_resolution() or space.arch({...})")

    # -- the arch-dict view ---------------------------------------------------------------
    def __getitem__(self, key):
        if key == "r":
            return [self.resolution]
        if key in ("ks", "e", "d"):
            return list(getattr(self, key))
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(ARCH_KEYS)

    def __len__(self) -> int:
        return len(ARCH_KEYS)

    def __hash__(self) -> int:
        return hash((self.ks, self.e, self.d, self.resolution))

    def __repr__(self) -> str:
        return f"Arch({self.to_json()})"

    def to_dict(self) -> dict:
        """The reference's arch dict (new lists; JSON-ready)."""
        return {key: self[key] for key in ARCH_KEYS}

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
        canonical = {"ks": [self.ks[i] for i in active], "e": [self.e[i] for i in active],
                     "d": list(self.d)}
        return hashlib.sha1(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:10]

    def with_resolution(self, resolution: int) -> Arch:
        """The same blocks at another of the space's resolutions."""
        return self.space.arch(self, image_size=resolution)
