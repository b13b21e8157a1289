"""TFLite export of subnets: conversion (float32, float16, dynamic_int8, int8, qat_int8) of
models that take RGB pixels and return probabilities, metadata for MediaPipe Tasks and the
Task Library, verification in LiteRT, and a check in those clients (`clients`).

    from ofa_tf.export import ExportSettings, SubnetExporter
    result = SubnetExporter(supernet, info, data).export(arch, "exports", ExportSettings(mode="int8"))

The command line is ``python -m ofa_tf.export`` (see its ``--help``). Names are imported on
first use, so ``python -m ofa_tf.export`` can set up logging before TensorFlow loads.
"""

import importlib

_EXPORTS = {
    "clients": ["classify"],
    "converter": ["IO_TYPES", "MODES", "OUTPUTS", "pixel_model", "to_tflite"],
    "exporter": ["ExportResult", "ExportSettings", "ModelExporter", "SubnetExporter", "arch_hash",
                 "output_stem", "read_sidecar"],
    "metadata": ["add_metadata", "read_metadata"],
    "verify": ["ExportCheckError", "TFLiteModel", "check_graph", "compare", "expected_float_op_counts",
               "op_counts"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'ofa_tf.export' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ofa_tf.export.{_MODULE_OF[name]}"), name)
