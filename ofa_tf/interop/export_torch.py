"""Export an ofa_tf supernet as the reference's PyTorch checkpoint (the inverse of import_torch).

    python -m ofa_tf.interop.export_torch --supernet runs/demo --out ofa_mbv3.pth

``--supernet`` is a directory with ``supernet.json`` + ``supernet.weights.h5`` (a training workdir
or an import). The ``.pth`` holds ``{"state_dict": ...}`` with the reference's names and layouts,
so the reference's ``OFAMobileNetV3(...).load_state_dict(torch.load(path)["state_dict"])`` takes
it when it is built with the same width, kernel, expand and depth lists.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS


def export_reference_checkpoint(supernet_dir: str, out_path: str, overwrite: bool = False) -> int:
    """Write the supernet in ``supernet_dir`` to ``out_path``; returns the number of tensors."""
    from ofa_tf.artifacts import load_supernet
    from ofa_tf.interop.reference_mapping import reference_state_dict
    from ofa_tf.interop.torch_checkpoint import require_torch, write_state_dict

    from ofa_tf.errors import RefusedOverwrite

    if os.path.isdir(out_path):
        raise ValueError(f"--out={out_path} is a directory; --out is the .pth file to write")
    if os.path.exists(out_path) and not overwrite:
        raise RefusedOverwrite(f"{out_path} exists; pass --overwrite to replace it")
    require_torch()  # fail before the slow load when torch is missing
    net, _, _ = load_supernet(supernet_dir)
    state_dict = reference_state_dict(net)
    write_state_dict(state_dict, out_path)
    return len(state_dict)


def main(argv):
    from ofa_tf.errors import user_input

    with user_input():
        n_tensors = export_reference_checkpoint(FLAGS.supernet, FLAGS.out, FLAGS.overwrite)
    print(f"Wrote {n_tensors} tensors in the reference's layout to {FLAGS.out}")
    return 0


def define_flags():
    """The CLI's flags, defined when it runs, so importing this module defines none."""
    flags.DEFINE_string("supernet", None, "Directory holding supernet.json and supernet.weights.h5.")
    flags.DEFINE_string("out", None, "The .pth file to write.")
    flags.DEFINE_bool("overwrite", False, "Replace --out if it exists.")
    flags.mark_flags_as_required(["supernet", "out"])


def run():
    from ofa_tf.cli import run_absl_main

    run_absl_main(main, define_flags)


if __name__ == "__main__":
    run()
