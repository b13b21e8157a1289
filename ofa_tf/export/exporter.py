"""Export one subnet of a supernet: recalibrate, extract, convert, annotate, verify, write.

Nothing reaches the output directory before the flatbuffer has passed verification, and
every file is written under a temporary name and renamed, so a failed or interrupted export
leaves no file behind, and an existing file is only replaced with ``overwrite=True``.
A JSON sidecar next to each .tflite records the arch, mode, calibration settings and the
verification results, which is what ``verify_export`` needs to check the file again later.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Mapping

import numpy as np

from ofa_tf.artifacts import read_versioned_json
from ofa_tf.atomic_files import atomic_save, atomic_save_dir, atomic_write_bytes, atomic_write_text
from ofa_tf.data import DatasetInfo, ImageSource
from ofa_tf.export import converter, metadata, verify
from ofa_tf.layers.elastic_norm import preserved_statistics
from ofa_tf.profile import profile_arch
from ofa_tf.space import SearchSpace
from ofa_tf.subnet import extract_subnet
from ofa_tf.training.validation import SubnetValidator

SIDECAR_FORMAT_VERSION = 1


@dataclasses.dataclass
class ExportSettings:
    """How to export; the defaults suit a trained supernet and the embedded data."""

    mode: str = "float32"
    io_type: str = "float32"            # int8 / uint8 input and output for full-integer modes
    n_bn_calibration_images: int = 2000  # 0: keep the supernet's BN statistics
    calibration_batch_size: int = 200
    n_representative_images: int = 200  # int8 activation ranges
    n_verify_images: int = 200
    qat_steps: int = 20
    qat_batch_size: int = 32
    qat_learning_rate: float = 1e-4
    write_metadata: bool = True
    save_keras: bool = False
    save_saved_model: bool = False
    overwrite: bool = False
    version: str = "1"
    seed: int = 0

    def __post_init__(self):
        converter.check_mode(self.mode, self.io_type)
        for field in ("n_bn_calibration_images", "n_representative_images"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        for field in ("calibration_batch_size", "n_verify_images", "qat_steps", "qat_batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.mode in ("int8", "qat_int8") and self.n_representative_images < 1:
            raise ValueError(f"{self.mode} export needs n_representative_images >= 1")
        if not self.qat_learning_rate > 0:
            raise ValueError(f"qat_learning_rate must be > 0, got {self.qat_learning_rate}")


@dataclasses.dataclass
class ExportResult:
    tflite_path: str
    sidecar_path: str
    arch: dict
    mode: str
    io_type: str
    image_size: int
    mmacs: float
    size_bytes: int
    agreement: verify.Agreement
    op_counts: dict
    qat_losses: list | None = None
    float_agreement: verify.Agreement | None = None   # qat_int8: against the float subnet
    extra_paths: list = dataclasses.field(default_factory=list)


def arch_hash(arch: Mapping, space: SearchSpace) -> str:
    """A short hash of what the network computes: depths and the choices of active blocks only
    (an inactive slot's ks / e change nothing, so they do not change the name)."""
    active = space.active_slots(arch)
    canonical = {"ks": [arch["ks"][i] for i in active], "e": [arch["e"][i] for i in active],
                 "d": list(arch["d"])}
    return hashlib.sha1(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:10]


def output_stem(arch: Mapping, space: SearchSpace, image_size: int, mode: str, io_type: str) -> str:
    """``subnet-<arch hash>-r<resolution>-<mode>[-io_<type>]``: stable and descriptive."""
    stem = f"subnet-{arch_hash(arch, space)}-r{image_size}-{mode}"
    return stem if io_type == "float32" else f"{stem}-io_{io_type}"


def output_paths(space: SearchSpace, arch: Mapping, image_size: int, out_dir: str,
                 settings: ExportSettings) -> dict:
    """The files an export writes: tflite, sidecar and the optional keras / saved_model."""
    stem = os.path.join(out_dir, output_stem(arch, space, image_size, settings.mode, settings.io_type))
    paths = {"tflite": f"{stem}.tflite", "sidecar": f"{stem}.json"}
    if settings.save_keras:
        paths["keras"] = f"{stem}.keras"
    if settings.save_saved_model:
        paths["saved_model"] = f"{stem}.saved_model"
    return paths


def check_outputs(out_dir: str, paths: Mapping, overwrite: bool) -> None:
    """Fail early, naming the problem, when ``out_dir`` is not writable or an output exists."""
    paths = list(paths.values())
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write to output directory {out_dir!r}: {err.strerror}") from None
    if not overwrite:
        existing = [p for p in paths if os.path.exists(p)]
        if existing:
            raise FileExistsError(f"{existing[0]} already exists (pass overwrite / --overwrite to replace it)")


def _images(dataset, limit: int):
    """Up to ``limit`` (images, labels) from a batched dataset, as numpy."""
    seen = 0
    for images, labels in dataset:
        images, labels = np.asarray(images)[: limit - seen], np.asarray(labels)[: limit - seen]
        seen += len(images)
        yield images, labels
        if seen >= limit:
            return


def _description(arch: Mapping, image_size: int, mode: str) -> str:
    return (f"Once-for-All subnet exported by ofa-tf ({mode}, {image_size}x{image_size} input). "
            f"arch={json.dumps({k: list(v) for k, v in arch.items()}, separators=(',', ':'))}")


class SubnetExporter:
    """Exports subnets of one supernet with its data (for BN recalibration, int8 calibration,
    QAT and verification). ``data`` may be None only for float modes with
    ``n_bn_calibration_images=0`` and verification on random images."""

    def __init__(self, supernet, info: DatasetInfo, data: ImageSource | None, source: str | None = None):
        self.supernet, self.info, self.data, self.source = supernet, info, data, source
        if info.num_classes != supernet.n_classes:
            raise ValueError(f"the data set has {info.num_classes} classes but the supernet "
                             f"{supernet.n_classes}")

    # -- data -------------------------------------------------------------------------------
    def _need_data(self, what: str):
        if self.data is None:
            raise ValueError(f"{what} needs training images: give a data set")
        return self.data

    def _train_batches(self, batch_size: int, image_size: int, seed: int):
        return self._need_data("this export").train(batch_size, image_size, seed=seed)

    def _verify_batches(self, settings: ExportSettings, image_size: int):
        if self.data is None:   # random normalized images: float modes of an untrained supernet
            rng = np.random.default_rng(settings.seed)
            images = rng.normal(size=(settings.n_verify_images, image_size, image_size, 3)).astype(np.float32)
            return [(images, np.zeros(len(images), np.int32))]
        return _images(self.data.val(50, image_size), settings.n_verify_images)

    def _recalibrate(self, arch: Mapping, image_size: int, settings: ExportSettings) -> None:
        if not settings.n_bn_calibration_images:
            return
        batch = min(settings.calibration_batch_size, settings.n_bn_calibration_images)
        validator = SubnetValidator(
            self.supernet, calibration_data=lambda size: self._train_batches(batch, size, settings.seed),
            eval_data=lambda size: None, n_calibration_images=settings.n_bn_calibration_images)
        self.supernet.set_active_subnet(**arch)
        validator.recalibrate(image_size)

    # -- export -----------------------------------------------------------------------------
    def resolve(self, arch: Mapping, image_size: int | None = None) -> tuple[dict, int]:
        """Validate ``arch``; the resolution is ``image_size``, else ``arch["r"]``, else the largest."""
        space = self.supernet.space
        arch = space.validate(arch)
        if image_size is None:
            image_size = arch["r"][0] if "r" in arch else max(space.resolutions)
        if image_size not in space.resolutions:
            raise ValueError(f"resolution {image_size} is not in the space's resolutions "
                             f"{min(space.resolutions)}..{max(space.resolutions)}")
        return {**arch, "r": [image_size]}, image_size

    def export(self, arch: Mapping, out_dir: str, settings: ExportSettings | None = None,
               image_size: int | None = None) -> ExportResult:
        settings = settings or ExportSettings()
        arch, image_size = self.resolve(arch, image_size)
        paths = output_paths(self.supernet.space, arch, image_size, out_dir, settings)
        check_outputs(out_dir, paths, settings.overwrite)
        if settings.mode in ("int8", "qat_int8") or settings.n_bn_calibration_images:
            self._need_data(f"{settings.mode} export with BN recalibration")

        previous = self.supernet.get_active_arch()
        with preserved_statistics(self.supernet):
            try:
                self._recalibrate(arch, image_size, settings)
                keras_model = extract_subnet(self.supernet, arch, image_size)
                phone_model = extract_subnet(self.supernet, arch, image_size, batch_size=1)
                qat_model, qat_losses = None, None
                if settings.mode == "qat_int8":
                    from ofa_tf.export.qat import qat_finetune

                    qat_model, qat_losses = qat_finetune(
                        self.supernet, arch, image_size,
                        self._train_batches(settings.qat_batch_size, image_size, settings.seed + 1),
                        settings.qat_steps, settings.qat_learning_rate)
            finally:
                self.supernet.set_active_subnet(**previous)

        representative = None
        if settings.mode in ("int8", "qat_int8"):
            def representative():
                batches = _images(self._train_batches(1, image_size, settings.seed + 2),
                                  settings.n_representative_images)
                return (images.astype(np.float32) for images, _ in batches)
        tflite = converter.to_tflite(qat_model if qat_model is not None else phone_model, settings.mode,
                                     representative, settings.io_type)
        if settings.write_metadata:
            tflite = metadata.add_metadata(
                tflite, name=os.path.basename(os.path.splitext(paths["tflite"])[0]), version=settings.version,
                description=_description(arch, image_size, settings.mode),
                class_names=self.info.class_names, mean=self.info.mean, std=self.info.std)

        counts = verify.check_graph(tflite, *((self.supernet.layout, arch, image_size)
                                              if settings.mode == "float32" else ()))
        runner = verify.TFLiteModel(tflite)
        reference = qat_model if qat_model is not None else keras_model
        agreement = verify.compare(runner, reference, self._verify_batches(settings, image_size),
                                   settings.n_verify_images)
        verify.check_agreement(settings.mode, agreement)
        float_agreement = None
        if qat_model is not None:
            float_agreement = verify.compare(runner, keras_model, self._verify_batches(settings, image_size),
                                             settings.n_verify_images)

        result = ExportResult(
            tflite_path=paths["tflite"], sidecar_path=paths["sidecar"], arch=arch, mode=settings.mode,
            io_type=settings.io_type, image_size=image_size,
            mmacs=profile_arch(arch, self.supernet.space, self.supernet.n_classes, image_size).mmacs,
            size_bytes=len(tflite), agreement=agreement, op_counts=dict(sorted(counts.items())),
            qat_losses=qat_losses, float_agreement=float_agreement)
        if settings.save_keras:
            atomic_save(paths["keras"], keras_model.save, suffix=".keras")
            result.extra_paths.append(paths["keras"])
        if settings.save_saved_model:
            atomic_save_dir(paths["saved_model"],
                            lambda tmp: keras_model.export(tmp, format="tf_saved_model", verbose=False))
            result.extra_paths.append(paths["saved_model"])
        atomic_write_bytes(paths["tflite"], tflite)
        atomic_write_text(paths["sidecar"], json.dumps(self._sidecar(result, settings), indent=2))
        return result

    def _sidecar(self, result: ExportResult, settings: ExportSettings) -> dict:
        return {
            "format_version": SIDECAR_FORMAT_VERSION, "tflite": os.path.basename(result.tflite_path),
            "arch": result.arch, "image_size": result.image_size, "mode": result.mode,
            "io_type": result.io_type, "mmacs": result.mmacs, "size_bytes": result.size_bytes,
            "supernet": self.source, "space": self.supernet.space.to_dict(),
            "n_classes": self.supernet.n_classes, "data": self.info.name,
            "settings": dataclasses.asdict(settings),
            "verification": result.agreement.to_dict(),
            "verification_vs_float": result.float_agreement and result.float_agreement.to_dict(),
            "qat_losses": result.qat_losses, "op_counts": result.op_counts,
            "extra_outputs": [os.path.basename(p) for p in result.extra_paths]}

    def verify_file(self, tflite_path: str, settings: ExportSettings | None = None) -> dict:
        """Check an existing export again against a freshly extracted Keras subnet (after the
        same BN recalibration), using the arch and settings of its sidecar JSON."""
        sidecar = read_sidecar(tflite_path)
        settings = settings or ExportSettings(**{k: v for k, v in sidecar["settings"].items()
                                                 if k in {f.name for f in dataclasses.fields(ExportSettings)}})
        space = self.supernet.space
        if SearchSpace.from_dict(sidecar["space"]) != space:
            raise ValueError(f"{tflite_path} was exported from a different search space than this supernet")
        arch, image_size = self.resolve(sidecar["arch"], sidecar["image_size"])
        if sidecar["mode"] == "qat_int8":
            raise ValueError("a qat_int8 file can only be verified at export time (its fine-tuned "
                             "weights are not in the supernet)")
        previous = self.supernet.get_active_arch()
        with preserved_statistics(self.supernet):
            try:
                self._recalibrate(arch, image_size, settings)
                keras_model = extract_subnet(self.supernet, arch, image_size)
            finally:
                self.supernet.set_active_subnet(**previous)
        counts = verify.check_graph(tflite_path, *((self.supernet.layout, arch, image_size)
                                                   if sidecar["mode"] == "float32" else ()))
        agreement = verify.compare(verify.TFLiteModel(tflite_path), keras_model,
                                   self._verify_batches(settings, image_size), settings.n_verify_images)
        verify.check_agreement(sidecar["mode"], agreement)
        return {"arch": arch, "mode": sidecar["mode"], "image_size": image_size,
                "verification": agreement.to_dict(), "op_counts": dict(sorted(counts.items()))}


def read_sidecar(tflite_path: str) -> dict:
    """The JSON written next to an exported .tflite."""
    path = os.path.splitext(tflite_path)[0] + ".json"
    if not os.path.exists(tflite_path):
        raise FileNotFoundError(f"no such file: {tflite_path}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{tflite_path} has no sidecar {os.path.basename(path)} (written by "
                                "python -m ofa_tf.export); cannot tell which arch it holds")
    return read_versioned_json(path, SIDECAR_FORMAT_VERSION)
