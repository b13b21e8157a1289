"""Train an OFA supernet by progressive shrinking.

    python -m ofa_tf.train --flagfile=configs/demo.flags
    python -m ofa_tf.train --flagfile=configs/imagenet_mbv3_w1.0.flags --data_dir=/data/imagenet

Flags on the command line override the flagfile. Re-running the same command resumes the
workdir where it stopped; `--phases` picks which phases to run now. At the end it prints the
top-1 of the smallest, a middle and the largest subnet of the last phase (BN recalibrated) and
leaves `supernet.weights.h5` + `supernet.json` in the workdir for export and search.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ofa_tf.errors import user_input  # noqa: E402
from ofa_tf.training.config import (PRECISIONS, SPACE_PRESETS, STRATEGIES, TEACHERS,  # noqa: E402
                                    TrainConfig, check_run_inputs)
from ofa_tf.training.phases import PHASE_NAMES  # noqa: E402

FLAGS = flags.FLAGS
_D = TrainConfig.__dataclass_fields__


def define_flags() -> None:
    """The CLI's flags, defined when it runs (importing this module defines none). Every
    TrainConfig field has a flag of the same name, whose default is the field's."""
    from ofa_tf import cli_flags

    cli_flags.define_workdir_flag("Directory for checkpoints, logs and the trained supernet. "
                                  "Re-running with the same workdir resumes.")
    cli_flags.define_data_flags("'demo' (embedded, no download), 'folder' (ImageNet layout under --data_dir: "
                                "train/<class>/*.jpg, val/<class>/*.jpg) or 'tfds:NAME'.",
                                default=_D["dataset"].default, download=True)
    cli_flags.define_seed_flag("Seed of weights, data order and subnet sampling.")
    cli_flags.define_calibration_flags(help_suffix=" before evaluation")
    flags.DEFINE_enum("space", _D["space"].default, SPACE_PRESETS, "Search space preset.")
    flags.DEFINE_integer("batch_size", _D["batch_size"].default,
                         "Images per replica per step; the global batch is this times the replicas.")
    flags.DEFINE_list("image_size_list", [], "Training resolutions sampled per batch (default: the space's).")
    flags.DEFINE_list("phases", [], "Phases to run now, in order (default: every phase of the space, from "
                      + ",".join(PHASE_NAMES) + "; a space without several kernel sizes has no kernel phase, "
                      "one without elastic width no width phases). Finished phases in the workdir are skipped.")
    flags.DEFINE_float("epochs_scale", _D["epochs_scale"].default,
                       "Multiplies every phase's epochs (and warm-up epochs); each phase keeps >= 1 epoch.")
    flags.DEFINE_integer("steps_per_epoch", _D["steps_per_epoch"].default,
                         "Cap on steps per epoch (0: one pass over the training split).")
    flags.DEFINE_float("lr_scale", _D["lr_scale"].default, "Multiplies every phase's learning rate.")
    flags.DEFINE_integer("base_batch_size", _D["base_batch_size"].default,
                         "The phase learning rates are per this many images; lr scales linearly with the "
                         "global batch.")
    flags.DEFINE_float("momentum", _D["momentum"].default, "SGD momentum.")
    flags.DEFINE_bool("nesterov", _D["nesterov"].default, "Nesterov momentum.")
    flags.DEFINE_float("weight_decay", _D["weight_decay"].default,
                       "L2 weight decay (coupled, as PyTorch); not applied to BN parameters or biases.")
    flags.DEFINE_float("label_smoothing", _D["label_smoothing"].default, "Label smoothing of the CE loss.")
    flags.DEFINE_float("kd_ratio", _D["kd_ratio"].default,
                       "Weight of the distillation loss (soft CE to the teacher); 0 turns KD off.")
    flags.DEFINE_float("dropout", _D["dropout"].default, "Dropout before the classifier.")
    flags.DEFINE_float("bn_momentum", _D["bn_momentum"].default,
                       "BN momentum, Keras sense (0.9 = PyTorch 0.1).")
    flags.DEFINE_string("init_weights", None,
                        "A supernet .weights.h5 to start the first phase from when the workdir has no "
                        "finished earlier phase (e.g. imported reference weights, or a workdir's "
                        "supernet.weights.h5). Trained on other classes: every weight but the classifier "
                        "is loaded and the classifier re-initialized. Bound to the workdir (start.json).")
    flags.DEFINE_enum("teacher", _D["teacher"].default, TEACHERS,
                      "What the phases after the teacher distil from: 'workdir' (the finished teacher phase) "
                      "or 'init' (the largest subnet of --init_weights, which must have the data set's "
                      "classes; the teacher phase may then be skipped).")
    flags.DEFINE_integer("eval_batch_size", _D["eval_batch_size"].default, "Batch size of validation.")
    flags.DEFINE_integer("validate_every", _D["validate_every"].default,
                         "Validate the phase's smallest, middle and largest subnet every this many epochs "
                         "(and always at the end of a phase).")
    flags.DEFINE_integer("checkpoint_every", _D["checkpoint_every"].default,
                         "Also checkpoint every this many steps (0: only at the end of each epoch).")
    flags.DEFINE_integer("keep_checkpoints", _D["keep_checkpoints"].default, "Checkpoints kept per phase.")
    flags.DEFINE_enum("strategy", _D["strategy"].default, STRATEGIES,
                      "tf.distribute strategy: one_device, mirrored (all GPUs, or all logical CPUs), "
                      "multi_worker (from TF_CONFIG).")
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (0: leave as is); "
                         "with --strategy=mirrored this trains data-parallel on one machine without GPUs.")
    flags.DEFINE_enum("precision", _D["precision"].default, PRECISIONS,
                      "Compute dtype of training: float32, or a Keras mixed-precision policy (variables, "
                      "BN statistics, softmax and loss stay float32; mixed_float16 adds dynamic loss "
                      "scaling). Saved weights and exports are float32 either way. Bound to the workdir.")
    flags.DEFINE_bool("tensorboard", _D["tensorboard"].default, "Write TensorBoard scalars under <workdir>/logs.")
    flags.DEFINE_integer("verbose", _D["verbose"].default,
                         "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.")


def config_from_flags() -> TrainConfig:
    sizes = []
    for value in FLAGS.image_size_list:
        try:
            sizes.append(int(value))
        except ValueError:
            raise ValueError(f"--image_size_list: {value!r} is not an integer") from None
    # Every TrainConfig field has a flag of the same name.
    values = {name: FLAGS[name].value for name in _D}
    values.update(image_size_list=tuple(sizes), phases=tuple(FLAGS.phases))
    return TrainConfig(**values)

def split_cpu(n: int) -> None:
    import tensorflow as tf

    if n > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def main(argv):
    with user_input():
        config = config_from_flags()
        check_run_inputs(config)   # before TensorFlow starts and before the workdir is touched
    split_cpu(FLAGS.cpu_devices)
    from ofa_tf.training.pipeline import ProgressiveShrinking, format_results_table

    with user_input():
        pipeline = ProgressiveShrinking(config)
    results = pipeline.run()
    last = config.phases[-1]
    validation = results[last]["validation"]
    n_val = next(iter(validation.values()))["n"]
    print(f"\nTop-1 on {pipeline.info.name} validation ({n_val} images"
          + (f" of {pipeline.info.n_val}; the others could not be read" if n_val != pipeline.info.n_val else "")
          + f") after phase {last!r}, BN recalibrated on {config.n_calibration_images} training images:\n")
    print(format_results_table(validation))
    written = "" if pipeline.is_chief else " (written by the chief; this worker kept its copies in .scratch/)"
    print(f"\nTrained supernet: {os.path.join(config.workdir, 'supernet.json')}{written}")
    return 0


def run():
    from ofa_tf.cli import run_absl_main

    run_absl_main(main, define_flags)


if __name__ == "__main__":
    run()
