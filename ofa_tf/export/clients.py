"""Classify images with an exported file in the clients apps ship it with, as they ship it.

The clients are MediaPipe Tasks' ``ImageClassifier`` (package ``mediapipe``) and its
predecessor, the tflite-support Task Library's ``ImageClassifier``. Neither installs next to
TensorFlow 2.21 and tensorflow-model-optimization: mediapipe 1.2 needs absl-py 2 (tfmot pins
absl-py 1; older mediapipe needs protobuf 3), the Task Library needs protobuf 3 (TensorFlow
needs protobuf >= 6). So each client gets its own virtual environment, made on first use with
pip and kept under ``$OFA_TF_CLIENT_ENVS`` (default ``~/.cache/ofa-tf/client-envs``), and runs
there in a subprocess that reads uint8 images from a .npy file and prints JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

# Each client: the packages of its environment and a script run there as
# ``python -c SCRIPT MODEL.tflite IMAGES.npy``, printing [[index, category name, score], ...].
_MEDIAPIPE_SCRIPT = """
import json, sys
import numpy as np
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision
options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=sys.argv[1]),
                                        max_results=1)
out = []
with vision.ImageClassifier.create_from_options(options) as classifier:
    for image in np.load(sys.argv[2]):
        top = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                           data=np.ascontiguousarray(image)))
        top = top.classifications[0].categories[0]
        out.append([top.index, top.category_name, float(top.score)])
print(json.dumps(out))
"""

_TASK_LIBRARY_SCRIPT = """
import json, sys
import numpy as np
from tflite_support.task import core, processor, vision
options = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=sys.argv[1]),
                                        classification_options=processor.ClassificationOptions(max_results=1))
classifier = vision.ImageClassifier.create_from_options(options)
out = []
for image in np.load(sys.argv[2]):
    top = classifier.classify(vision.TensorImage.create_from_array(np.ascontiguousarray(image)))
    top = top.classifications[0].categories[0]
    out.append([top.index, top.category_name, float(top.score)])
print(json.dumps(out))
"""


@dataclasses.dataclass(frozen=True)
class Client:
    name: str
    requirements: tuple[str, ...]
    script: str


CLIENTS = {
    "mediapipe": Client("mediapipe", ("mediapipe==1.2.3",), _MEDIAPIPE_SCRIPT),
    # The Task Library's extension is built against numpy 1 and protobuf 3.
    "task_library": Client("task_library", ("tflite-support==0.4.4", "numpy<2", "protobuf<4"),
                           _TASK_LIBRARY_SCRIPT),
}


@dataclasses.dataclass
class Classification:
    """Top-1 of every image: class indices, the category names the file's labels gave, scores."""

    index: np.ndarray
    category_names: list[str]
    scores: np.ndarray


def envs_dir() -> str:
    return os.environ.get("OFA_TF_CLIENT_ENVS") or os.path.join(os.path.expanduser("~"), ".cache",
                                                                 "ofa-tf", "client-envs")


def _client(name: str) -> Client:
    if name not in CLIENTS:
        raise ValueError(f"unknown client {name!r}: expected one of {', '.join(CLIENTS)}")
    return CLIENTS[name]


def client_python(name: str) -> str:
    """The Python of the client's environment, creating the environment first if needed
    (under a lock, so parallel callers build it once; a half-built one is rebuilt)."""
    client = _client(name)
    root = envs_dir()
    os.makedirs(root, exist_ok=True)
    tag = "-".join(r.replace("==", "-").replace("<", "lt") for r in client.requirements)
    env = os.path.join(root, f"{client.name}-py{sys.version_info[0]}{sys.version_info[1]}-{tag}")
    python, done = os.path.join(env, "bin", "python"), os.path.join(env, ".complete")
    with open(os.path.join(root, f".{client.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            shutil.rmtree(env, ignore_errors=True)
            _run([sys.executable, "-m", "venv", env], f"creating the {name} environment")
            _run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                  *client.requirements], f"installing {' '.join(client.requirements)} into {env}")
            with open(done, "w") as f:
                f.write("\n".join(client.requirements) + "\n")
    return python


def _run(command: list[str], what: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")
    return result.stdout


def classify(name: str, tflite_path: str, images: np.ndarray) -> Classification:
    """Top-1 of ``images`` (uint8 RGB [N, H, W, 3], at the model's input size) by ``tflite_path``
    in client ``name`` (``mediapipe`` or ``task_library``)."""
    client = _client(name)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    python = client_python(name)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "images.npy")
        np.save(path, images)
        env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
        env.pop("PYTHONPATH", None)   # the client's own packages only
        with contextlib.chdir(tmp):
            result = subprocess.run([python, "-c", client.script, os.path.abspath(tflite_path), path],
                                    capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{name} could not classify with {tflite_path}: "
                           f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ''}")
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    return Classification(index=np.array([r[0] for r in rows], np.int64),
                          category_names=[r[1] for r in rows],
                          scores=np.array([r[2] for r in rows], np.float32))
