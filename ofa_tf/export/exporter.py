"""Export one subnet of a supernet: recalibrate, extract, convert, annotate, verify, write.

Nothing reaches the output directory before the flatbuffer has passed verification, and
every file is written under a temporary name and renamed, so a failed or interrupted export
leaves no file behind, and an existing file is only replaced with ``overwrite=True``.
A JSON sidecar next to each .tflite records the arch, mode, calibration settings and the
verification results, which is what ``verify_file`` needs to check the file again later.

The file takes RGB pixel values in [0, 255] and normalizes them inside the graph; it outputs
probabilities (softmax in the graph) or, with ``output="logits"``, logits
(`converter.pixel_model`). It is verified against the Keras subnet wrapped the same way, on
validation images turned back into whole pixel values, as a camera hands them over.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Mapping

import numpy as np

from ofa_tf.arch.complexity import profile_arch
from ofa_tf.arch.layout import build_layout
from ofa_tf.arch.space import SearchSpace
from ofa_tf.arch.value import Arch
from ofa_tf.artifacts import read_versioned_json
from ofa_tf.atomic_files import atomic_save, atomic_save_dir, atomic_write_bytes, atomic_write_text
from ofa_tf.data import DatasetInfo, ImageSource
from ofa_tf.evaluation import BNRecalibrator, activated_subnet
from ofa_tf.export import converter, metadata, verify
from ofa_tf.networks.extraction import extract_subnet

SIDECAR_FORMAT_VERSION = 2   # 2: pixel input, normalization and output in the graph


@dataclasses.dataclass
class ExportSettings:
    """How to export; the defaults suit a trained supernet and the embedded data."""

    mode: str = "float32"
    io_type: str = "float32"            # int8 / uint8 input and output for full-integer modes
    output: str = "probabilities"       # or "logits"
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
        converter.check_output(self.output)
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
    """`Arch.digest` of ``arch``: depths and the choices of active blocks only."""
    return space.arch(arch).digest


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


def _description(arch: Mapping, image_size: int, mode: str, output: str) -> str:
    return (f"Once-for-All subnet exported by ofa-tf ({mode}, {image_size}x{image_size} RGB pixels "
            f"in [0, 255] in, {output} out). "
            f"arch={json.dumps({k: list(v) for k, v in arch.items()}, separators=(',', ':'))}")


def to_pixels(images: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """Normalized images (as the data pipeline makes them) back to whole pixel values in
    [0, 255], as float32: the input of an exported file."""
    pixels = (np.asarray(images, np.float64) * np.asarray(info.std) + np.asarray(info.mean)) * 255.0
    return np.clip(np.round(pixels), 0, 255).astype(np.float32)


class SubnetExporter:
    """Exports subnets of one supernet with its data (for BN recalibration, int8 calibration,
    QAT and verification). ``data`` may be None only for float modes with
    ``n_bn_calibration_images=0`` and verification on random images."""

    def __init__(self, supernet, info: DatasetInfo, data: ImageSource | None, source: str | None = None):
        self.supernet, self.info, self.data, self.source = supernet, info, data, source
        self.space, self.layout, self.n_classes = supernet.space, supernet.layout, supernet.n_classes
        self._recalibrator = None   # one traced calibration step serves every export
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
        """Pixel images [0, 255] with labels; random ones for float modes without data."""
        if self.data is None:
            rng = np.random.default_rng(settings.seed)
            shape = (settings.n_verify_images, image_size, image_size, 3)
            return [(rng.integers(0, 256, shape).astype(np.float32), np.zeros(shape[0], np.int32))]
        return ((to_pixels(images, self.info), labels)
                for images, labels in _images(self.data.val(50, image_size), settings.n_verify_images))

    def _for_clients(self, model, settings: ExportSettings):
        return converter.pixel_model(model, self.info.mean, self.info.std, settings.output)

    def _recalibrate(self, arch: Arch, settings: ExportSettings) -> None:
        """Recompute the BN statistics of ``arch``, which must be the active subnet."""
        if not self._recalibrates(settings):
            return
        if self._recalibrator is None:
            self._recalibrator = BNRecalibrator(self.supernet)
        batch = min(settings.calibration_batch_size, settings.n_bn_calibration_images)
        self._recalibrator.recalibrate(
            self._train_batches(batch, arch.resolution, settings.seed), settings.n_bn_calibration_images)

    def _recalibrates(self, settings: ExportSettings) -> bool:
        return bool(settings.n_bn_calibration_images)

    def _subnets(self, arch: Arch, settings: ExportSettings, phone: bool = True):
        """The Keras subnet (free batch), the one converted (batch 1; None unless ``phone``) and,
        for qat_int8, the fine-tuned fake-quantized one with its losses: normalized images in,
        logits out, after BN recalibration (the supernet's statistics are restored)."""
        qat_model, qat_losses, phone_model = None, None, None
        with activated_subnet(self.supernet, arch):
            self._recalibrate(arch, settings)
            subnet = extract_subnet(self.supernet, arch)
            if phone:
                phone_model = extract_subnet(self.supernet, arch, batch_size=1)
            if phone and settings.mode == "qat_int8":
                from ofa_tf.export.qat import qat_finetune

                qat_model, qat_losses = qat_finetune(
                    self.supernet, arch, arch.resolution,
                    self._train_batches(settings.qat_batch_size, arch.resolution, settings.seed + 1),
                    settings.qat_steps, settings.qat_learning_rate)
        return subnet, phone_model, qat_model, qat_losses

    # -- export -----------------------------------------------------------------------------
    def resolve(self, arch: Mapping, image_size: int | None = None) -> tuple[Arch, int]:
        """``arch`` as an `Arch` (see `SearchSpace.arch` for its resolution) and its resolution."""
        arch = self.space.arch(arch, image_size)
        return arch, arch.resolution

    def export(self, arch: Mapping, out_dir: str, settings: ExportSettings | None = None,
               image_size: int | None = None) -> ExportResult:
        settings = settings or ExportSettings()
        arch, image_size = self.resolve(arch, image_size)
        paths = output_paths(self.space, arch, image_size, out_dir, settings)
        check_outputs(out_dir, paths, settings.overwrite)
        if settings.mode in ("int8", "qat_int8") or self._recalibrates(settings):
            self._need_data(f"{settings.mode} export with BN recalibration")

        subnet, phone_model, qat_model, qat_losses = self._subnets(arch, settings)
        keras_model = self._for_clients(subnet, settings)
        phone_model = self._for_clients(phone_model, settings)
        if qat_model is not None:
            qat_model = self._for_clients(qat_model, settings)

        representative = None
        if settings.mode in ("int8", "qat_int8"):
            def representative():
                batches = _images(self._train_batches(1, image_size, settings.seed + 2),
                                  settings.n_representative_images)
                return (to_pixels(images, self.info) for images, _ in batches)
        tflite = converter.to_tflite(qat_model if qat_model is not None else phone_model, settings.mode,
                                     representative, settings.io_type)
        if settings.write_metadata:
            tflite = metadata.add_metadata(
                tflite, name=os.path.basename(os.path.splitext(paths["tflite"])[0]), version=settings.version,
                description=_description(arch, image_size, settings.mode, settings.output),
                class_names=self.info.class_names, output=settings.output)

        counts = self._check_graph(tflite, settings.mode, arch, image_size, settings.output)
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
            tflite_path=paths["tflite"], sidecar_path=paths["sidecar"], arch=arch.to_dict(), mode=settings.mode,
            io_type=settings.io_type, image_size=image_size,
            mmacs=profile_arch(arch, self.space, self.n_classes, image_size).mmacs,
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

    def _check_graph(self, tflite, mode: str, arch: Mapping, image_size: int, output: str):
        if mode != "float32":
            return verify.check_graph(tflite)
        return verify.check_graph(tflite, self.layout, arch, image_size, pixel_input=True,
                                  softmax=output == "probabilities")

    def _sidecar(self, result: ExportResult, settings: ExportSettings) -> dict:
        return {
            "format_version": SIDECAR_FORMAT_VERSION, "tflite": os.path.basename(result.tflite_path),
            "arch": result.arch, "image_size": result.image_size, "mode": result.mode,
            "io_type": result.io_type, "mmacs": result.mmacs, "size_bytes": result.size_bytes,
            "supernet": self.source, "space": self.space.to_dict(),
            "n_classes": self.n_classes, "data": self.info.name,
            "class_names": list(self.info.class_names),
            "input": {"pixel_range": [0, 255], "normalization_in_graph": {
                "mean": list(self.info.mean), "std": list(self.info.std)}},
            "output": settings.output,
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
        settings = dataclasses.replace(settings, output=sidecar["output"])
        space = self.space
        if SearchSpace.from_dict(sidecar["space"]) != space:
            raise ValueError(f"{tflite_path} was exported from a different search space than this supernet")
        arch, image_size = self.resolve(sidecar["arch"], sidecar["image_size"])
        if sidecar["mode"] == "qat_int8":
            raise ValueError("a qat_int8 file can only be verified at export time (its fine-tuned "
                             "weights are not in the supernet)")
        keras_model = self._for_clients(self._subnets(arch, settings, phone=False)[0], settings)
        counts = self._check_graph(tflite_path, sidecar["mode"], arch, image_size, settings.output)
        agreement = verify.compare(verify.TFLiteModel(tflite_path), keras_model,
                                   self._verify_batches(settings, image_size), settings.n_verify_images)
        verify.check_agreement(sidecar["mode"], agreement)
        return {"arch": arch.to_dict(), "mode": sidecar["mode"], "image_size": image_size,
                "verification": agreement.to_dict(), "op_counts": dict(sorted(counts.items()))}


class ModelExporter(SubnetExporter):
    """Exports one saved plain Keras subnet (`ofa_tf.artifacts.save_subnet_model`, e.g. a
    fine-tuned one) in every mode, with its BN statistics as trained (no recalibration; QAT
    starts from its weights). ``data`` feeds int8 calibration, QAT and verification."""

    def __init__(self, model, info: DatasetInfo, data: ImageSource | None, arch: Mapping,
                 space: SearchSpace, source: str | None = None):
        self.supernet, self.model, self.info, self.data, self.source = None, model, info, data, source
        self.space, self.arch = space, space.arch(arch, require_resolution=True)
        self.n_classes = int(model.outputs[0].shape[-1])
        self.layout = build_layout(space, self.n_classes)
        if info.num_classes != self.n_classes:
            raise ValueError(f"the class names list {info.num_classes} classes but the model has "
                             f"{self.n_classes} outputs")
        size = self.arch.resolution
        if tuple(model.inputs[0].shape[1:]) != (size, size, 3):
            raise ValueError(f"the model takes {list(model.inputs[0].shape[1:])} images, not the "
                             f"{size}x{size} RGB of its arch")

    def resolve(self, arch: Mapping | None = None, image_size: int | None = None) -> tuple[Arch, int]:
        """The model's own arch and resolution; another ``arch`` / ``image_size`` is an error."""
        own, size = super().resolve(self.arch)
        if arch is not None and super().resolve(arch, image_size)[0] != own or image_size not in (None, size):
            raise ValueError("a saved model exports as the subnet it is: drop the arch / resolution")
        return own, size

    def _recalibrates(self, settings: ExportSettings) -> bool:
        return False

    def _rebuild(self, batch_size: int | None, keras_module=None):
        """The model rebuilt by the static builder (fixed batch, or in tf_keras), same weights."""
        from ofa_tf.networks import family_of

        epsilon = next((layer.epsilon for layer in self.model.layers if hasattr(layer, "epsilon")), 1e-5)
        kwargs = {} if keras_module is None else {"keras_module": keras_module}
        rebuilt = family_of(self.space).build_static_model(self.layout, self.arch, self.arch.resolution, bn_epsilon=epsilon,
                                     batch_size=batch_size, **kwargs)
        names = {layer.name for layer in self.model.layers}
        for layer in rebuilt.layers:
            if layer.weights:
                if layer.name not in names:
                    raise ValueError(f"{self.source or 'the model'} is not the subnet its arch describes "
                                     f"(no layer {layer.name!r})")
                layer.set_weights(self.model.get_layer(layer.name).get_weights())
        return rebuilt

    def _subnets(self, arch: Arch, settings: ExportSettings, phone: bool = True):
        if not phone:
            return self.model, None, None, None
        qat_model, qat_losses = None, None
        if settings.mode == "qat_int8":
            from ofa_tf.export.qat import qat_finetune_model

            qat_model, qat_losses = qat_finetune_model(
                lambda tf_keras: self._rebuild(None, tf_keras),
                self._train_batches(settings.qat_batch_size, arch.resolution, settings.seed + 1),
                settings.qat_steps, settings.qat_learning_rate)
        return self.model, self._rebuild(1), qat_model, qat_losses


def read_sidecar(tflite_path: str) -> dict:
    """The JSON written next to an exported .tflite."""
    path = os.path.splitext(tflite_path)[0] + ".json"
    if not os.path.exists(tflite_path):
        raise FileNotFoundError(f"no such file: {tflite_path}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{tflite_path} has no sidecar {os.path.basename(path)} (written by "
                                "python -m ofa_tf.export); cannot tell which arch it holds")
    return read_versioned_json(path, SIDECAR_FORMAT_VERSION)
