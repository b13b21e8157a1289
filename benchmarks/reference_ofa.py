"""Import the PyTorch reference (the installed ``ofa`` package) for side-by-side checks.

``ofa`` imports torchvision at package level (data loaders) although the parts we compare
against (arch encoder, latency table keys, evolution, the torch supernet) never use it, and
torchvision is not installed here. :func:`import_reference` puts a stand-in for torchvision on
the import path first, so those modules load; nothing from torchvision is ever called.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder(types.ModuleType):
    """A torchvision module whose every attribute is an inert class."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *args, **kwargs: None})


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Placeholder(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def import_reference(module: str):
    """``importlib.import_module(module)`` for an ``ofa.*`` module; ImportError if ofa or torch
    is missing."""
    try:
        importlib.import_module("torchvision")
    except ImportError:
        sys.meta_path.insert(0, _TorchvisionStandIn())
    return importlib.import_module(module)
