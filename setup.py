"""Packaging for ofa-tf: Once-for-All (OFA) in TensorFlow 2 / Keras 3."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"

EXPORT = ["ai-edge-litert>=2.1", "tensorflow-model-optimization>=0.8.1", "tf-keras==2.21.*"]
TORCH = ["torch==2.13.0"]
PLOT = ["matplotlib"]

setup(
    name="ofa-tf",
    version="0.1.0",
    description=(
        "Once-for-All supernets in TensorFlow 2 / Keras 3: progressive shrinking, "
        "subnet search and TFLite export"
    ),
    long_description=README.read_text(encoding="utf-8") if README.exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["ofa_tf", "ofa_tf.*", "android_bench", "android_bench.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.13,<4",
        "numpy",
        "absl-py",
        "pyyaml",
        # The embedded demo data set is scikit-learn's bundled UCI digits drawn over
        # scikit-image's bundled photos (ofa_tf/data.py).
        "scikit-learn",
        "scikit-image",
        # Kendall tau of the accuracy predictor.
        "scipy",
        # The compiled evolutionary search (ofa_tf/nas/evolution_kernel.py).
        "numba>=0.61",
        # TensorBoard scalars of training runs (tf.summary needs it installed).
        "tensorboard>=2.20,<2.22",
    ],
    extras_require={
        # tflite-support is deliberately absent: it pins protobuf<4, so it is installed
        # separately with `pip install --no-deps -r requirements/export-nodeps.txt`.
        "export": EXPORT,
        "torch": TORCH,
        "plot": PLOT,
        "tfds": ["tensorflow-datasets"],
        # The tests exercise export, the PyTorch import and the plots. The on-device clients
        # (mediapipe: absl-py 2; the Task Library: protobuf 3) cannot be installed next to
        # TensorFlow and tfmot: ofa_tf.export.clients gives each its own cached venv.
        "test": ["pytest", "pytest-timeout", "pytest-xdist"] + EXPORT + TORCH + PLOT,
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
