"""Export a subnet of a supernet to TFLite, verified.

    python -m ofa_tf.export --supernet=runs/demo --preset=max --mode=float32,int8
    python -m ofa_tf.export --supernet=runs/demo --arch=arch.json --mode=qat_int8 --out_dir=exports
    python -m ofa_tf.export --space=mbv3_w1.0 --n_classes=1000 --arch='{"ks": 7, "e": 6, "d": 4}' \\
        --resolution=224 --n_bn_calibration_images=0           # a fresh (untrained) supernet
    python -m ofa_tf.export --supernet=runs/demo --verify=exports/subnet-...-float32.tflite
    python -m ofa_tf.export --model=finetuned/subnet.keras --mode=float32,int8 # a saved subnet

The supernet is a training workdir (or its supernet.json), a .weights.h5 with --space and
--n_classes, or, with neither, a freshly initialized supernet of --space; or --model, a plain
Keras subnet with the JSON written next to it (arch, classes, normalization). Each export is
verified in LiteRT before anything is written; a failed check writes nothing and exits 1.
Bad input exits 2 with one `error:` line.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ofa_tf.cli_flags import arch_in_space, read_arch_flag  # noqa: E402,F401 (shared with finetune)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags, defined when it runs (importing this module defines none)."""
    from ofa_tf import cli_flags
    from ofa_tf.export.converter import IO_TYPES, MODES, OUTPUTS

    cli_flags.define_data_flags("Data for BN recalibration, int8 calibration, QAT and verification: demo, "
                                "folder or tfds:NAME (default: the supernet's own; demo for a fresh one).")
    cli_flags.define_calibration_flags("n_bn_calibration_images", " before export (0: keep the supernet's)")
    cli_flags.define_seed_flag("Seed of the calibration and fine-tuning data order (and fresh weights).")
    flags.DEFINE_string("supernet", None, "A trained supernet: training workdir or its supernet.json.")
    flags.DEFINE_string("model", None, "A saved subnet NAME.keras with NAME.json (arch, classes, "
                        "normalization), e.g. a fine-tuned one; exported with its BN statistics as trained.")
    flags.DEFINE_string("weights", None, "A supernet .weights.h5 (e.g. imported weights); needs --space.")
    from ofa_tf.arch.space import PRESETS

    flags.DEFINE_string("space", None, f"Search space preset ({', '.join(sorted(PRESETS))}) for --weights "
                        "or a fresh supernet; a trained supernet brings its own.")
    flags.DEFINE_integer("n_classes", None, "Classes of a --weights or fresh supernet (default: the data set's).")
    flags.DEFINE_string("arch", None, "The subnet: a JSON file or inline JSON with ks, e, d (and r); ints "
                        "or per-block / per-stage lists.")
    flags.DEFINE_enum("preset", None, ["max", "min"], "The largest or smallest subnet instead of --arch.")
    flags.DEFINE_integer("resolution", None, "Input resolution (default: the arch's r, else the largest).")
    flags.DEFINE_list("mode", ["float32"], "Comma-separated export modes: " + ", ".join(MODES) + ".")
    flags.DEFINE_enum("io_type", "float32", IO_TYPES, "Input/output type of int8 and qat_int8 models.")
    flags.DEFINE_enum("output", "probabilities", OUTPUTS, "What the model returns: probabilities (softmax in "
                      "the graph) or logits. Either way it takes RGB pixels in [0, 255].")
    flags.DEFINE_string("out_dir", "exports", "Output directory.")
    flags.DEFINE_bool("overwrite", False, "Replace existing output files.")
    flags.DEFINE_bool("metadata", True, "Attach TFLite metadata (input range, labels) for MediaPipe Tasks "
                      "and the Task Library.")
    flags.DEFINE_bool("save_keras", False, "Also save the Keras subnet as .keras.")
    flags.DEFINE_bool("save_saved_model", False, "Also save the Keras subnet as a TF SavedModel.")
    flags.DEFINE_integer("n_representative_images", 200, "Training images that set int8 activation ranges.")
    flags.DEFINE_integer("n_verify_images", 200, "Validation images the .tflite is checked on.")
    flags.DEFINE_integer("qat_steps", 20, "Quantization-aware fine-tuning steps (qat_int8).")
    flags.DEFINE_integer("qat_batch_size", 32, "Batch size of quantization-aware fine-tuning.")
    flags.DEFINE_float("qat_learning_rate", 1e-4, "SGD learning rate of quantization-aware fine-tuning.")
    flags.DEFINE_string("version", "1", "Model version written into the metadata.")
    flags.DEFINE_string("verify", None, "Verify an existing .tflite written by this tool instead of exporting.")


def load_supernet_flags():
    """(supernet, DatasetInfo or None, workdir or data set spec, description of the source).

    The data set itself is loaded later (`load_data`), after the arch has been checked."""
    from ofa_tf.artifacts import build_supernet, load_supernet
    from ofa_tf.arch.space import SearchSpace

    if FLAGS.supernet and (FLAGS.weights or FLAGS.space or FLAGS.n_classes):
        raise ValueError("--supernet brings its own space, classes and weights; drop --weights, "
                         "--space and --n_classes")
    if FLAGS.supernet:
        supernet, info, meta = load_supernet(FLAGS.supernet)
        return supernet, info, os.path.dirname(meta["_path"]), os.path.abspath(FLAGS.supernet)
    if not FLAGS.space:
        raise ValueError("give --supernet (a trained workdir), or --space (with --weights, or alone "
                         "for a freshly initialized supernet)")
    space = SearchSpace.preset(FLAGS.space)
    spec = FLAGS.dataset or "demo"
    n_classes = FLAGS.n_classes or (10 if spec == "demo" else None)
    if n_classes is None:
        raise ValueError("--n_classes is needed with --space and a data set other than demo")
    import keras

    keras.utils.set_random_seed(FLAGS.seed)
    supernet = build_supernet(space, n_classes, weights=FLAGS.weights)
    source = os.path.abspath(FLAGS.weights) if FLAGS.weights else f"fresh:{FLAGS.space}:seed{FLAGS.seed}"
    return supernet, None, spec, source


def load_model_flags():
    """(ModelExporter without data yet, the model's sidecar) for --model."""
    from ofa_tf.artifacts import load_subnet_model
    from ofa_tf.export.exporter import ModelExporter

    clashing = [f"--{name}" for name in ("supernet", "weights", "space", "n_classes", "arch", "preset",
                                         "resolution") if getattr(FLAGS, name) is not None]
    if clashing:
        raise ValueError(f"--model brings its own arch, classes and weights; drop {', '.join(clashing)}")
    model, info, meta = load_subnet_model(FLAGS.model)
    exporter = ModelExporter(model, info, None, meta["arch"], meta["space"],
                             source=os.path.abspath(FLAGS.model))
    return exporter, meta


def load_data(workdir_or_spec: str, info):
    """The data set and the DatasetInfo the export writes (the supernet's own when trained)."""
    from ofa_tf.artifacts import load_data_source
    from ofa_tf.data import DatasetInfo, load_dataset

    if info is not None:   # a trained supernet: the data set it was trained on, unless --dataset
        return load_data_source(workdir_or_spec, info, FLAGS.dataset, FLAGS.data_dir), info
    data = load_dataset(workdir_or_spec, FLAGS.data_dir)
    info = data.info
    n_classes = FLAGS.n_classes or info.num_classes
    if n_classes != info.num_classes:
        # A supernet for another class count (e.g. imported ImageNet weights): the data set
        # still feeds BN recalibration, calibration and verification; the labels are generic.
        info = DatasetInfo(name=info.name, class_names=[f"class_{i}" for i in range(n_classes)],
                           n_train=info.n_train, n_val=info.n_val, mean=info.mean, std=info.std)
    return data, info


def settings_for(mode: str):
    from ofa_tf.export.exporter import ExportSettings

    return ExportSettings(
        mode=mode, io_type=FLAGS.io_type, output=FLAGS.output,
        n_bn_calibration_images=FLAGS.n_bn_calibration_images,
        calibration_batch_size=FLAGS.calibration_batch_size,
        n_representative_images=FLAGS.n_representative_images, n_verify_images=FLAGS.n_verify_images,
        qat_steps=FLAGS.qat_steps, qat_batch_size=FLAGS.qat_batch_size,
        qat_learning_rate=FLAGS.qat_learning_rate, write_metadata=FLAGS.metadata,
        save_keras=FLAGS.save_keras, save_saved_model=FLAGS.save_saved_model,
        overwrite=FLAGS.overwrite, version=FLAGS.version, seed=FLAGS.seed)


def format_result(result) -> str:
    a = result.agreement
    line = (f"{result.tflite_path}\n  {result.mode}, {result.image_size}px, {result.mmacs:.1f} MMACs, "
            f"{result.size_bytes / 1024:.0f} KiB; vs Keras on {a.n} images: max |Δoutput| "
            f"{a.max_abs_diff:.2g}, top-1 agreement {100 * a.top1_agreement:.1f} %, top-1 "
            f"{100 * a.tflite_top1:.1f} % (Keras {100 * a.keras_top1:.1f} %)")
    if result.float_agreement is not None:
        line += (f"\n  vs the float subnet before fine-tuning: top-1 agreement "
                 f"{100 * result.float_agreement.top1_agreement:.1f} %")
    return line


def check_flags(modes) -> None:
    """The flag combinations, checked before anything loads."""
    from ofa_tf.export.converter import MODES

    if not modes:
        raise ValueError("--mode is empty")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown --mode {unknown[0]!r}: expected one of {', '.join(MODES)}")
    if FLAGS.verify:
        if FLAGS.arch or FLAGS.preset:
            raise ValueError("--verify reads the arch from the file's sidecar; drop --arch/--preset")
    elif bool(FLAGS.arch) == bool(FLAGS.preset) and not FLAGS.model:
        raise ValueError("give exactly one of --arch (JSON file or inline JSON) and --preset (max|min)")


def verify_settings(path: str):
    """The settings of an export's sidecar, with the verification flags given on the command line."""
    import dataclasses

    from ofa_tf.export.exporter import ExportSettings, read_sidecar

    names = {f.name for f in dataclasses.fields(ExportSettings)}
    stored = {k: v for k, v in read_sidecar(path)["settings"].items() if k in names}
    given = {name: FLAGS[name].value for name in ("n_verify_images", "n_bn_calibration_images",
                                                 "calibration_batch_size") if FLAGS[name].present}
    return ExportSettings(**{**stored, **given})


def main(argv):
    from ofa_tf.errors import user_input

    with user_input():
        modes = [m.strip() for m in FLAGS.mode if m.strip()]
        check_flags(modes)
        settings = [settings_for(m) for m in modes]
        arch = read_arch_flag(FLAGS.arch) if FLAGS.arch else None
        checked_verify = verify_settings(FLAGS.verify) if FLAGS.verify else None
        if FLAGS.model:
            return export_model(settings, checked_verify)
        supernet, info, spec, source = load_supernet_flags()
        if arch is not None:
            arch = arch_in_space(arch, supernet.space)
        if FLAGS.resolution is not None and FLAGS.resolution not in supernet.space.resolutions:
            raise ValueError(f"--resolution={FLAGS.resolution} is not one of the space's resolutions")
        from ofa_tf.export.exporter import SubnetExporter

        if arch is None and not FLAGS.verify:
            arch = supernet.space.largest() if FLAGS.preset == "max" else supernet.space.smallest()
        if arch is not None:   # fail on an unwritable or existing output before the slow part
            arch = supernet.space.arch(arch, FLAGS.resolution)
            check_all_outputs(supernet.space, arch, settings, source)
        data, info = load_data(spec, info)
    return run_exports(SubnetExporter(supernet, info, data, source=source), arch, settings, checked_verify)


def check_all_outputs(space, arch, settings, source) -> None:
    """Fail on an unwritable or existing output before the slow part (a finished export of the
    same settings is kept, an interrupted one's leftovers are replaced later)."""
    from ofa_tf.export.exporter import check_outputs, output_paths
    from ofa_tf.export.resume import is_finished

    for s in settings:
        paths = output_paths(space, arch, arch.resolution, FLAGS.out_dir, s)
        finished = is_finished(paths, arch, arch.resolution, s, source)
        check_outputs(FLAGS.out_dir, {} if finished or not os.path.exists(paths["sidecar"]) else paths,
                      s.overwrite)


def export_model(settings, checked_verify) -> int:
    """--model: check the outputs, then load the data set the model was trained on (or
    --dataset) and export or verify."""
    from ofa_tf.artifacts import load_data_source

    exporter, meta = load_model_flags()
    arch, _ = exporter.resolve()
    if not FLAGS.verify:
        check_all_outputs(exporter.space, arch, settings, exporter.source)
    # The images only feed int8 calibration and verification (no labels), so a data set with other
    # classes serves, e.g. --dataset=demo for an imported ImageNet model.
    exporter.data = load_data_source(os.path.dirname(meta["_path"]), exporter.info,
                                     FLAGS.dataset or meta.get("dataset"),
                                     FLAGS.data_dir or meta.get("data_dir"), same_classes=False)
    return run_exports(exporter, arch, settings, checked_verify)


def run_exports(exporter, arch, settings, checked_verify) -> int:
    """Verify --verify, or export each mode (keeping finished exports of the same settings)."""
    from ofa_tf.errors import CheckFailed, user_input
    from ofa_tf.export.resume import export_or_keep
    from ofa_tf.export.verify import ExportCheckError

    try:
        if FLAGS.verify:
            with user_input():
                report = exporter.verify_file(FLAGS.verify, checked_verify)
            v = report["verification"]
            print(f"{FLAGS.verify}: OK ({report['mode']}, {v['n']} images: max |Δoutput| "
                  f"{v['max_abs_diff']:.2g}, top-1 agreement {100 * v['top1_agreement']:.1f} %)")
            return 0
        for s in settings:
            with user_input():   # an existing output (without --overwrite) is refused here
                result, path = export_or_keep(exporter, arch, FLAGS.out_dir, s, image_size=FLAGS.resolution)
            print(format_result(result) if result is not None
                  else f"{path}\n  {s.mode}: already exported with the same settings; kept", flush=True)
    except ExportCheckError as err:
        raise CheckFailed(f"verification failed, nothing written: {err}") from None
    return 0


def run():
    from ofa_tf.cli import run_absl_main

    run_absl_main(main, define_flags)


if __name__ == "__main__":
    run()
