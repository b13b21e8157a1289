"""Import the reference's pretrained OFA-MobileNetV3, OFA-ProxylessNAS or OFA-ResNet50D (PyTorch)
as an ofa_tf supernet.

    python -m ofa_tf.interop.import_torch --checkpoint ofa_mbv3_d234_e346_k357_w1.0 \\
        --width_mult 1.0 --out runs/ofa_mbv3_w1.0
    python -m ofa_tf.interop.import_torch --checkpoint ofa_proxyless_d234_e346_k357_w1.3 \\
        --out runs/ofa_proxyless_w1.3
    python -m ofa_tf.interop.import_torch \\
        --checkpoint ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0 --out runs/ofa_resnet50d

The family is read from the tensors (OFA-ResNet50D has an input stem; ProxylessNAS's feature-mix
layer has BN, and it has no final expand layer), the width multiplier from the release name or
the feature-mix layer (OFA-ResNet50D's widths are elastic: its space is the released one).

``--out`` is a directory that receives ``supernet.weights.h5`` + ``supernet.json``, the same
pair ``python -m ofa_tf.train`` leaves in its workdir, so ``ofa_tf.artifacts.load_supernet``,
export and search take it as is (``--init_weights=<out>/supernet.weights.h5`` fine-tunes it).
Every tensor is checked before anything is written; a missing, unexpected or mis-shaped
tensor is named in the error.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ofa_tf.interop.torch_checkpoint import (check_checkpoint_exists, read_state_dict,  # noqa: E402
                                             release_width_mult)

FLAGS = flags.FLAGS

# ImageNet-1k (ILSVRC 2012), the data set of the reference's releases.
IMAGENET_N_TRAIN = 1_281_167
IMAGENET_N_VAL = 50_000


def imagenet_info(n_classes: int = 1000):
    """The data description saved with an imported supernet: ImageNet's size and normalization.
    The checkpoints carry no class names, so they are ``class_0`` ... in the reference's order."""
    from ofa_tf.data import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo

    return DatasetInfo(name="imagenet" if n_classes == 1000 else "imported",
                       class_names=[f"class_{i}" for i in range(n_classes)],
                       n_train=IMAGENET_N_TRAIN if n_classes == 1000 else 0,
                       n_val=IMAGENET_N_VAL if n_classes == 1000 else 0,
                       mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _n_classes(state_dict) -> int:
    from ofa_tf.interop.reference_mapping import canonical_name

    by_name = {canonical_name(k): v for k, v in state_dict.items()}
    classifier = by_name.get("classifier.linear.weight")
    return int(classifier.shape[0]) if classifier is not None and classifier.ndim == 2 else 1000


def import_reference_checkpoint(checkpoint: str, out_dir: str, width_mult: float | None = None,
                                overwrite: bool = False, resolutions=None):
    """Read ``checkpoint``, load it into a new supernet of its family and save it to ``out_dir``.
    ``resolutions`` replaces the released space's input sizes (128-224 px, step 4), e.g. for the
    8 sizes an accuracy predictor one-hots. Returns ``(supernet, path of supernet.json)``."""
    # Inputs and the output are checked before TensorFlow loads and the checkpoint is read.
    from ofa_tf.artifacts import META_NAME, WEIGHTS_NAME
    from ofa_tf.errors import RefusedOverwrite

    check_checkpoint_exists(checkpoint)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out={out_dir} is a file; --out takes a directory (it gets {WEIGHTS_NAME} "
                         f"and {META_NAME})")
    # supernet.json is written last: weights without it are an interrupted import's, replaced.
    if os.path.exists(os.path.join(out_dir, META_NAME)) and not overwrite:
        raise RefusedOverwrite(f"{out_dir} already holds a supernet ({META_NAME}, {WEIGHTS_NAME}); pass "
                               "--overwrite to replace it or choose another --out")
    if width_mult is not None and width_mult <= 0:
        raise ValueError(f"--width_mult must be positive, got {width_mult}")
    from ofa_tf.artifacts import save_supernet
    from ofa_tf.interop.reference_mapping import (REFERENCE_SPACES, checkpoint_family, checkpoint_width_mult,
                                                  load_reference_state_dict)
    from ofa_tf.networks import family_of

    state_dict = read_state_dict(checkpoint)
    family = checkpoint_family(state_dict)
    if family not in REFERENCE_SPACES:
        raise ValueError(f"{checkpoint!r} is an OFA {family} supernet, which the command line does not import "
                         "yet (ofa_tf.interop.reference_mapping.load_reference_state_dict loads it into a supernet)")
    reference_space = REFERENCE_SPACES[family]
    released = release_width_mult(checkpoint)
    if width_mult is None:
        width_mult = released or checkpoint_width_mult(state_dict, reference_space())
        if width_mult is None:
            raise ValueError(f"cannot tell the width multiplier of {checkpoint!r} (it has no "
                             "feature_mix_layer.conv.weight); pass --width_mult")
    elif released is not None and released != width_mult:
        raise ValueError(f"--width_mult {width_mult:g} does not match the release "
                         f"{os.path.basename(checkpoint)}, which has width_mult {released:g}")
    space = reference_space(float(width_mult))
    if resolutions is not None:
        space = space.with_resolutions(resolutions)
    net = family_of(space).supernet_class(space=space, n_classes=_n_classes(state_dict))
    load_reference_state_dict(net, state_dict)
    source = {"checkpoint": os.path.abspath(checkpoint), "reference": "mit-han-lab/once-for-all",
              "width_mult": float(width_mult)}
    meta_path = save_supernet(net, imagenet_info(net.n_classes), out_dir, extra={"imported_from": source})
    return net, meta_path


def main(argv):
    from ofa_tf.errors import BadInput, user_input

    if FLAGS.out.endswith(".h5"):
        raise BadInput(f"--out takes a directory (it gets supernet.weights.h5 and supernet.json), "
                       f"got {FLAGS.out!r}")
    from ofa_tf.cli_flags import flag_resolutions

    with user_input():   # reading and checking the checkpoint; the conversion itself is not input
        resolutions = flag_resolutions()
        net, meta_path = import_reference_checkpoint(FLAGS.checkpoint, FLAGS.out, FLAGS.width_mult,
                                                     FLAGS.overwrite, resolutions)
    n_weights = sum(int(v.numpy().size) for v in net.weights if "float" in str(v.dtype))
    print(f"Imported {FLAGS.checkpoint} ({n_weights:,} values, width_mult {net.space.width_mult:g}, "
          f"{net.n_classes} classes) -> {os.path.dirname(meta_path)}")
    return 0


def define_flags():
    """The CLI's flags, defined when it runs, so importing this module defines none."""
    flags.DEFINE_string("checkpoint", None, "The reference's checkpoint file (a PyTorch state_dict, or a "
                        "dict holding it under 'state_dict'), e.g. ofa_mbv3_d234_e346_k357_w1.0, "
                        "ofa_proxyless_d234_e346_k357_w1.3 or ofa_resnet50_d0-1-2_e0.2-0.25-0.35_w0.65-0.8-1.0.")
    flags.DEFINE_float("width_mult", None, "Width multiplier of the checkpoint's supernet (1.0 or 1.2 for the "
                       "MobileNetV3 releases, 1.3 for ProxylessNAS; OFA-ResNet50D has none). Default: read from the "
                       "checkpoint.")
    flags.DEFINE_string("out", None, "Output directory; gets supernet.weights.h5 and supernet.json.")
    flags.DEFINE_bool("overwrite", False, "Replace a supernet already saved in --out.")
    from ofa_tf.cli_flags import define_resolutions_flag

    define_resolutions_flag("Input sizes of the imported supernet's space, comma-separated (default: the "
                            "release's 128-224 px, step 4). The reference's OFA-ResNet50D accuracy predictor "
                            "one-hots 128,144,160,176,192,224,240,256: import with those for ofa_tf.search "
                            "--predictor to take it.")
    flags.mark_flags_as_required(["checkpoint", "out"])


def run():
    from ofa_tf.cli import run_absl_main

    run_absl_main(main, define_flags)


if __name__ == "__main__":
    run()
