"""TFLite metadata, so MediaPipe Tasks' and the Task Library's `ImageClassifier` take the file
as it is.

The metadata carries the model's name and version, a description (with the arch as JSON, so a
file says which subnet it is), the input normalization and the class labels. Both clients
normalize pixel values p in [0, 255] as (p - mean) / std before a float input; MediaPipe only
takes one mean and one std for all channels. The exported models normalize per channel inside
the graph and take pixels as they come, so the metadata says mean 0, std 1. (Integer-input
models take uint8 / int8 pixels; the clients skip normalization for those.) The output is
described as probabilities or logits, as exported.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Sequence

LABEL_FILE = "labels.txt"
INSTALL_HINT = ("TFLite metadata needs tflite-support, installed without its dependencies "
                "(pip install --no-deps -r requirements/export-nodeps.txt), and the system library "
                "libusb-1.0-0 (apt-get install libusb-1.0-0)")


def _tflite_support():
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as schema
        from tensorflow_lite_support.metadata.python import metadata
        from tensorflow_lite_support.metadata.python.metadata_writers import image_classifier, metadata_info
    except ImportError as err:
        raise RuntimeError(f"{INSTALL_HINT}: {err}") from None
    return schema, metadata, image_classifier, metadata_info


def add_metadata(tflite: bytes, *, name: str, version: str, description: str,
                 class_names: Sequence[str], output: str = "probabilities", author: str = "ofa-tf") -> bytes:
    """Return ``tflite`` with image-classifier metadata attached (the labels packed inside).

    The model must take RGB pixel values in [0, 255] (`converter.pixel_model`); ``output`` says
    whether it returns probabilities (softmax in the graph) or logits.
    """
    schema, _, image_classifier, info = _tflite_support()
    if any("\n" in str(c) for c in class_names):
        raise ValueError("class names must not contain newlines (the label file has one per line)")
    outputs = {"probabilities": "class probabilities (softmax)", "logits": "class logits"}
    if output not in outputs:
        raise ValueError(f"unknown output {output!r}: expected one of {', '.join(outputs)}")
    with tempfile.TemporaryDirectory() as tmp:
        labels = os.path.join(tmp, LABEL_FILE)
        with open(labels, "w", encoding="utf-8") as f:
            f.write("".join(f"{c}\n" for c in class_names))
        writer = image_classifier.MetadataWriter.create_from_metadata_info(
            bytearray(tflite),
            general_md=info.GeneralMd(name=name, version=version, description=description,
                                      author=author, licenses="Apache-2.0"),
            input_md=info.InputImageTensorMd(
                name="image", description="RGB image, pixel values in [0, 255] (normalized per "
                                          "channel inside the model)",
                norm_mean=[0.0], norm_std=[1.0], color_space_type=schema.ColorSpaceType.RGB),
            output_md=info.ClassificationTensorMd(
                name=output, description=outputs[output], label_files=[info.LabelFileMd(labels)]))
        return bytes(writer.populate())


def read_metadata(tflite: bytes | str) -> dict:
    """The metadata `add_metadata` writes, read back: name, version, description, author,
    the input's ``mean`` / ``std`` in pixel units (what a client subtracts and divides by; none
    for an integer input), ``output`` (the output tensor's name) and ``class_names``."""
    _, metadata, _, _ = _tflite_support()
    if isinstance(tflite, (bytes, bytearray)):
        displayer = metadata.MetadataDisplayer.with_model_buffer(bytes(tflite))
    else:
        displayer = metadata.MetadataDisplayer.with_model_file(tflite)
    model = json.loads(displayer.get_metadata_json())
    graph = model["subgraph_metadata"][0]
    units = graph["input_tensor_metadata"][0].get("process_units", [])
    normalization = next((unit["options"] for unit in units if unit["options_type"] == "NormalizationOptions"),
                         {})
    label_file = graph["output_tensor_metadata"][0]["associated_files"][0]["name"]
    labels = displayer.get_associated_file_buffer(label_file).decode("utf-8").splitlines()
    return {"name": model.get("name"), "version": model.get("version"),
            "description": model.get("description"), "author": model.get("author"),
            "mean": normalization.get("mean"), "std": normalization.get("std"),
            "output": graph["output_tensor_metadata"][0]["name"], "class_names": labels}
