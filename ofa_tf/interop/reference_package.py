"""Import the PyTorch reference (the installed ``ofa`` package) for side-by-side checks.

``ofa`` imports torchvision at package level (data loaders), and ``ofa.tutorial`` imports gdown
(through ``ofa.model_zoo``, for downloads), although the parts we compare against (arch encoder,
latency tables, evolution, the tutorial's predictor, the torch supernet) never use them, and
neither is installed here. :func:`import_reference` puts a stand-in for each missing one on the
import path first, so those modules load; nothing from them is ever called.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types


# Packages ``ofa`` imports at module level but never calls in what we compare against.
UNUSED_DEPENDENCIES = ("torchvision", "gdown")


class _Placeholder(types.ModuleType):
    """A stand-in module whose every attribute is an inert class."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {"__init__": lambda self, *args, **kwargs: None})


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package: str):
        self.package = package

    def find_spec(self, name, path, target=None):
        if name == self.package or name.startswith(self.package + "."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Placeholder(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def import_reference(module: str):
    """``importlib.import_module(module)`` for an ``ofa.*`` module; ImportError if ofa or torch
    is missing."""
    for package in UNUSED_DEPENDENCIES:
        try:
            importlib.import_module(package)
        except ImportError:
            sys.meta_path.insert(0, _StandIn(package))
    return importlib.import_module(module)
