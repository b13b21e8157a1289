"""Fine-tune one subnet of a trained supernet and save it as a plain Keras model.

    python -m ofa_tf.finetune --supernet=runs/demo --arch='{"ks": 5, "e": 4, "d": 2, "r": 48}' \\
        --out=finetuned/subnet.keras
    python -m ofa_tf.finetune --supernet=runs/demo --arch=runs/demo/search/mmacs_3.json \\
        --dataset=folder --data_dir=/data/my_classes --out=finetuned/mine.keras
    python -m ofa_tf.export --model=finetuned/subnet.keras --mode=float32,int8

The subnet (an arch JSON file, a search result, or inline JSON) is extracted with its BN
statistics recalibrated and trained with model.fit on the data set's training split (default:
the one the supernet was trained on) with the reference's recipe (see --helpfull). Other classes
than the supernet's re-initialize the classifier (and turn KD off). Re-running the same command
after a kill continues from the last checkpoint in <out stem>.finetune/; a finished output is
replaced only with --overwrite. Bad input exits 2 with one `error:` line.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ofa_tf.cli import run_absl_main  # noqa: E402
from ofa_tf.errors import user_input  # noqa: E402
from ofa_tf.nas.accuracy_dataset import EVAL_SPLITS  # noqa: E402 (no TensorFlow)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags, defined when it runs (importing this module defines none); defaults are
    FinetuneConfig's (imported here: it loads TensorFlow, after the allocator's re-exec)."""
    from ofa_tf import cli_flags
    from ofa_tf.training.finetune import BASE_BATCH_SIZE, BASE_LR, FinetuneConfig

    d = {f.name: f.default for f in FinetuneConfig.__dataclass_fields__.values()}
    flags.DEFINE_string("supernet", None, "A trained supernet: training workdir or its supernet.json.")
    flags.mark_flag_as_required("supernet")
    flags.DEFINE_string("arch", None, "The subnet: a JSON file (an arch, or a result of ofa_tf.search) or "
                        "inline JSON with ks, e, d (and r); ints or per-block / per-stage lists.")
    flags.mark_flag_as_required("arch")
    flags.DEFINE_integer("resolution", None, "Input resolution (default: the arch's r, else the largest).")
    flags.DEFINE_string("out", None, "The fine-tuned model, NAME.keras (with NAME.json); checkpoints and "
                        "TensorBoard logs go to NAME.finetune/.")
    flags.mark_flag_as_required("out")
    cli_flags.define_data_flags("Data set to fine-tune on: demo, folder or tfds:NAME (default: the one the "
                                "supernet was trained on). Other classes re-initialize the classifier.")
    cli_flags.define_seed_flag("Seed of the data order, dropout and a re-initialized classifier.")
    cli_flags.define_calibration_flags(help_suffix=" before fine-tuning (subnet and teacher; 0: keep the "
                                       "supernet's)")
    flags.DEFINE_integer("epochs", d["epochs"], "Epochs of fine-tuning (the paper fine-tuned 25 or 75).")
    flags.DEFINE_integer("warmup_epochs", d["warmup_epochs"], "Linear warm-up epochs before the cosine.")
    flags.DEFINE_integer("steps_per_epoch", d["steps_per_epoch"],
                         "Cap on steps per epoch (0: one pass over the training split).")
    flags.DEFINE_integer("batch_size", d["batch_size"], "Images per step.")
    flags.DEFINE_float("lr", None, f"Initial learning rate of the cosine schedule (default {BASE_LR:g} x "
                       f"batch_size / {BASE_BATCH_SIZE}: the last progressive-shrinking phase's rate).")
    flags.DEFINE_float("momentum", d["momentum"], "SGD momentum.")
    flags.DEFINE_bool("nesterov", d["nesterov"], "Nesterov momentum.")
    flags.DEFINE_float("weight_decay", d["weight_decay"],
                       "L2 weight decay (coupled, as PyTorch); not applied to BN parameters or biases.")
    flags.DEFINE_float("label_smoothing", d["label_smoothing"], "Label smoothing of the CE loss.")
    flags.DEFINE_float("kd_ratio", d["kd_ratio"], "Weight of distillation from the supernet's largest subnet "
                       "(soft CE); 0 turns KD off. Off anyway when the data set has other classes.")
    flags.DEFINE_enum("eval_split", d["eval_split"], EVAL_SPLITS, "Images validated on after each epoch: val, "
                      "val_even / val_odd (halves of it, as collect and search --measure use them) or train.")
    flags.DEFINE_integer("eval_images", d["eval_images"], "Only the first this many of --eval_split (0: all).")
    flags.DEFINE_integer("eval_batch_size", d["eval_batch_size"], "Batch size of validation.")
    flags.DEFINE_integer("checkpoint_every", d["checkpoint_every"],
                         "Also checkpoint every this many steps (0: only at the end of each epoch).")
    flags.DEFINE_integer("keep_checkpoints", d["keep_checkpoints"], "Checkpoints kept.")
    flags.DEFINE_bool("tensorboard", d["tensorboard"], "Write TensorBoard scalars under NAME.finetune/logs.")
    flags.DEFINE_integer("verbose", d["verbose"], "Keras progress output (0: only the line per epoch).")
    flags.DEFINE_bool("overwrite", False, "Replace a finished fine-tune's output (it is run again).")


def config_from_flags():
    from ofa_tf.training.finetune import FinetuneConfig

    names = [n for n in FinetuneConfig.__dataclass_fields__ if n not in ("out", "n_calibration_images")]
    return FinetuneConfig(out=FLAGS.out, n_calibration_images=FLAGS.n_calibration_images,
                          **{n: FLAGS[n].value for n in names})


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    from ofa_tf.artifacts import load_data_source, load_supernet, read_supernet_meta, training_dataset_spec
    from ofa_tf.cli_flags import arch_in_space, read_arch_flag
    from ofa_tf.training.finetune import SubnetFinetuner, check_outputs

    with user_input():   # everything checked before the slow part
        config = config_from_flags()
        check_outputs(config)
        arch = read_arch_flag(FLAGS.arch)
        meta = read_supernet_meta(FLAGS.supernet)
        workdir = os.path.dirname(meta["_path"])
        supernet, info, _ = load_supernet(FLAGS.supernet)
        arch = supernet.space.arch(arch_in_space(arch, supernet.space), FLAGS.resolution)
        source = load_data_source(workdir, info, FLAGS.dataset, FLAGS.data_dir, same_classes=False)
        spec = FLAGS.dataset or training_dataset_spec(workdir)
        finetuner = SubnetFinetuner(
            supernet, info, arch, source, config, dataset=spec,
            data_dir=os.path.abspath(FLAGS.data_dir) if FLAGS.data_dir else None,
            supernet_path=os.path.abspath(workdir))
        finetuner.claim_state()   # an unfinished fine-tune with other settings is refused here
    result = finetuner.run()
    before = result["val_top1_before"]
    print(f"\nTop-1 on {config.eval_split} ({source.info.name}): "
          + (f"{100 * before:.1f} % before, " if before is not None else "")
          + f"{100 * result['val_top1']:.1f} % after {result['steps']} steps of fine-tuning")
    print(f"Fine-tuned subnet: {config.out} (export: python -m ofa_tf.export --model={config.out})")
    return 0


if __name__ == "__main__":
    run_absl_main(main, define_flags)
