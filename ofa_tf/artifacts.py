"""The trained supernet as other tools read it: ``supernet.weights.h5`` + ``supernet.json``;
and one subnet as a plain Keras model: ``NAME.keras`` + ``NAME.json``.

The JSON says how to rebuild the model (search space, classes, dropout, BN settings, or the
subnet's arch) and how to feed it (input normalization, class names), so export and search
need nothing else. All files are written under temporary names and renamed
(``ofa_tf.atomic_files``), so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Mapping

from ofa_tf.arch.space import SearchSpace
from ofa_tf.atomic_files import atomic_save, atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)

if TYPE_CHECKING:   # ofa_tf.data loads TensorFlow; the file helpers here must not need it
    from ofa_tf.data import DatasetInfo, ImageSource

FORMAT_VERSION = 1
WEIGHTS_NAME = "supernet.weights.h5"
META_NAME = "supernet.json"


def read_versioned_json(path: str, format_version: int) -> dict:
    """A JSON file written by this project, with one clear error if it is not valid JSON or not
    of the ``format_version`` this code reads."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
    if data.get("format_version") != format_version:
        raise ValueError(f"{path} has format_version {data.get('format_version')!r}; "
                         f"this version of ofa_tf reads {format_version}")
    return data


def save_supernet(supernet, info: DatasetInfo, directory: str, extra: Mapping[str, Any] | None = None) -> str:
    """Save weights and metadata into ``directory``; returns the JSON's path."""
    os.makedirs(directory, exist_ok=True)
    atomic_save(os.path.join(directory, WEIGHTS_NAME), supernet.save_weights, suffix=".weights.h5")
    meta = {"format_version": FORMAT_VERSION, "weights": WEIGHTS_NAME,
            "model": {"n_classes": supernet.n_classes, "dropout_rate": supernet.dropout_rate,
                      "bn_momentum": supernet.bn_momentum, "bn_epsilon": supernet.bn_epsilon,
                      "space": supernet.space.to_dict()},
            "data": info.to_dict(), **dict(extra or {})}
    path = os.path.join(directory, META_NAME)
    atomic_write_text(path, json.dumps(meta, indent=2))
    return path


def read_supernet_meta(path: str) -> dict:
    """The metadata dict of a saved supernet (``path``: the JSON or its directory)."""
    if os.path.isdir(path):
        path = os.path.join(path, META_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no trained supernet at {path} (expected {META_NAME} written by "
                                "python -m ofa_tf.train)")
    meta = read_versioned_json(path, FORMAT_VERSION)
    meta["_path"] = path
    return meta


def load_supernet(path: str):
    """Rebuild and load a saved supernet: returns ``(supernet, DatasetInfo, meta)``."""
    meta = read_supernet_meta(path)
    model = dict(meta["model"])
    space = SearchSpace.from_dict(model.pop("space"))
    net = build_supernet(space, weights=os.path.join(os.path.dirname(meta["_path"]), meta["weights"]),
                         **model)
    from ofa_tf.data import DatasetInfo

    return net, DatasetInfo.from_dict(meta["data"]), meta


SUBNET_FORMAT_VERSION = 1


def subnet_sidecar_path(model_path: str) -> str:
    return os.path.splitext(model_path)[0] + ".json"


def save_subnet_model(model, path: str, *, arch: Mapping, space: SearchSpace, info: DatasetInfo,
                      dataset: str | None = None, data_dir: str | None = None,
                      extra: Mapping[str, Any] | None = None) -> str:
    """Save a plain Keras subnet (normalized images in, logits out, as `extract_subnet` builds it)
    as ``path`` (.keras) with the JSON ``ofa_tf.export --model`` reads next to it: the arch with
    its resolution, the search space, the class names and normalization, and the data set it
    was trained on. Returns the JSON's path."""
    if not path.endswith(".keras"):
        raise ValueError(f"a subnet model is saved as .keras, got {path!r}")
    arch = space.validate(arch, require_resolution=True)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    atomic_save(path, model.save, suffix=".keras")
    meta = {"format_version": SUBNET_FORMAT_VERSION, "model": os.path.basename(path), "arch": arch,
            "space": space.to_dict(), "data": info.to_dict(), "dataset": dataset, "data_dir": data_dir,
            **dict(extra or {})}
    sidecar = subnet_sidecar_path(path)
    atomic_write_text(sidecar, json.dumps(meta, indent=2))
    return sidecar


def load_subnet_model(path: str):
    """A subnet saved by `save_subnet_model`: ``(keras.Model, DatasetInfo, meta)``; ``meta`` holds
    the arch (validated), ``space`` as a `SearchSpace` and the data set it was trained on."""
    sidecar = subnet_sidecar_path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model: {path}")
    if not os.path.exists(sidecar):
        raise FileNotFoundError(f"{path} has no {os.path.basename(sidecar)} next to it (the arch, classes "
                                "and normalization, as ofa_tf.artifacts.save_subnet_model writes them)")
    meta = read_versioned_json(sidecar, SUBNET_FORMAT_VERSION)
    space = SearchSpace.from_dict(meta["space"])
    meta = {**meta, "space": space, "arch": space.validate(meta["arch"]), "_path": sidecar}
    import keras

    from ofa_tf.data import DatasetInfo

    try:
        model = keras.models.load_model(path, compile=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} is not a loadable Keras model: {str(err).splitlines()[0][:300]}") from None
    return model, DatasetInfo.from_dict(meta["data"]), meta


def build_supernet(space: SearchSpace, n_classes: int, weights: str | None = None, **kwargs):
    """A supernet of ``space``'s family, built, with ``weights`` (a .weights.h5) loaded if given.

    Weights saved from a different space or class count give one error naming the file.
    """
    import numpy as np

    # Not a cycle (ofa_tf.networks never imports this module): Keras loads only when a supernet
    # is built, so the CLIs that read metadata and write files here start without it.
    from ofa_tf.networks import family_of

    net = family_of(space).supernet_class(space=space, n_classes=n_classes, **kwargs)
    net(np.zeros((1, 32, 32, 3), np.float32), training=False)
    if weights is not None:
        if not os.path.exists(weights):
            raise FileNotFoundError(f"no such weights file: {weights}")
        try:
            net.load_weights(weights)
        except (ValueError, KeyError) as err:
            reason = " ".join(line.strip() for line in str(err).splitlines() if line.strip())[:400]
            raise ValueError(f"{weights} does not fit a supernet of this search space with "
                             f"{n_classes} classes (saved from another space?): {reason}") from None
    return net


def training_dataset_spec(workdir: str) -> str:
    """The ``dataset`` the trainer recorded in ``<workdir>/config.json`` ('demo' if absent)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return "demo"
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("dataset", "demo")


def load_data_source(workdir: str, info: DatasetInfo, dataset: str | None = None,
                     data_dir: str | None = None, same_classes: bool = True) -> ImageSource:
    """The supernet's data set (default: the one it was trained on), normalized as in training.
    With ``same_classes=False`` the data set may have other classes (fine-tuning to new ones)."""
    from ofa_tf.data import load_dataset

    spec = dataset or training_dataset_spec(workdir)
    kwargs = {} if spec == "demo" else {"mean": info.mean, "std": info.std}
    source = load_dataset(spec, data_dir, **kwargs)
    if same_classes and source.info.class_names != info.class_names:
        raise ValueError(f"data set {spec!r} has classes {source.info.class_names[:5]}...; the supernet "
                         f"was trained on {info.class_names[:5]}...")
    return source
