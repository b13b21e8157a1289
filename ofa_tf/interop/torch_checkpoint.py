"""The reference's PyTorch checkpoint files: read a state_dict, write one, name the releases.

torch is an optional extra (``pip install ".[torch]"``) needed only here. Files are read
with ``torch.load(weights_only=True)``, which unpickles tensors and plain containers only,
so a checkpoint cannot run code on this machine.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import numpy as np

from ofa_tf.atomic_files import atomic_save

# The reference's released supernets (ofa/model_zoo.py) and their width multipliers (OFA-ResNet50D's
# widths are elastic, 0.65 / 0.8 / 1.0 of its base widths: its one multiplier is 1.0).
RELEASES = {"ofa_mbv3_d234_e346_k357_w1.0": 1.0, "ofa_mbv3_d234_e346_k357_w1.2": 1.2,
            "ofa_proxyless_d234_e346_k357_w1.3": 1.3, "ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0": 1.0}
RELEASE_URL = "https://raw.githubusercontent.com/han-cai/files/master/ofa/ofa_nets/{name}"


def require_torch():
    """The torch module, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError:
        raise ImportError('reading or writing PyTorch checkpoints needs torch: pip install "ofa-tf[torch]" '
                          '(or pip install -e ".[torch]" in a checkout)') from None
    return torch


def release_width_mult(path: str) -> float | None:
    """The width multiplier of a released checkpoint, recognised by its file name."""
    return RELEASES.get(os.path.basename(os.fspath(path)))


def check_checkpoint_exists(path: str) -> None:
    """Raise FileNotFoundError unless ``path`` is a file; for a bare release name, say where the
    reference publishes it (nothing is downloaded here)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return
    name = os.path.basename(path)
    if name in RELEASES:
        url = RELEASE_URL.format(name=name)
        raise FileNotFoundError(
            f"checkpoint file {path!r} not found, and this tool does not download. The "
            f"reference publishes it at {url}; fetch it (e.g. curl -L -o {name} {url}) and "
            "pass the file's path to --checkpoint")
    raise FileNotFoundError(f"checkpoint file {path!r} not found")


def read_state_dict(path: str) -> dict:
    """The state_dict in a checkpoint file (``{"state_dict": ...}`` or the state_dict itself),
    as numpy arrays keyed by tensor name."""
    path = os.fspath(path)
    check_checkpoint_exists(path)
    torch = require_torch()
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip, key and runtime errors alike
        raise ValueError(f"cannot read {path!r} as a PyTorch checkpoint: {_load_failure(err)}") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise ValueError(f"{path!r} holds neither a state_dict nor a dict with a 'state_dict' entry")
    out = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path!r}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
        out[str(key)] = value.detach().cpu().numpy()
    return out


def _load_failure(err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in one line, without torch's advice to load
    with ``weights_only=False`` (which would let the file run code)."""
    text = str(err)
    if "Weights only load failed" in text:
        found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global|\n|$)", text)
        return ("it holds Python objects besides tensors and plain containers"
                + (f" ({found.group(1).strip()})" if found else "")
                + ", which this tool does not load")
    if isinstance(err, EOFError) or not text.strip():
        return "the file is empty or cut short"
    first = next(line.strip() for line in text.splitlines() if line.strip())
    return f"not a torch.save file ({type(err).__name__}: {first[:200]})"


def write_state_dict(state_dict: Mapping, path: str) -> None:
    """Save ``{"state_dict": ...}`` as the reference's releases are saved (written to a
    temporary name, then renamed)."""
    torch = require_torch()
    path = os.fspath(path)
    tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state_dict.items()}
    atomic_save(path, lambda tmp: torch.save({"state_dict": tensors}, tmp))
