"""Import the reference's pretrained accuracy predictor (PyTorch) as an ofa_tf AccuracyPredictor.

    python -m ofa_tf.interop.import_predictor --checkpoint acc_predictor.pth --space=mbv3_w1.2 \\
        --out runs/ofa_mbv3_w1.2/nas

The OFA tutorial publishes ``acc_predictor.pth``, an MLP (128-400-400-400-1, ReLU) that predicts
the ImageNet top-1 (as a fraction) of subnets of the w1.2 OFA-MobileNetV3 supernet from the
tutorial's own 128 features (``ofa_tutorial`` in ``ofa_tf.nas.encoding``). The importer checks
every tensor and that the features can encode ``--space`` before anything is written, then
writes ``<out>/accuracy_predictor.keras`` + ``.json``; the encoding is saved with it, so
``AccuracyPredictor.load`` and ``python -m ofa_tf.search --predictor`` read the right features.
In a supernet workdir's ``nas/`` directory it is the search's default predictor.

A checkpoint format is a :class:`PredictorFormat`: the tensors it holds, the spaces it predicts
and the feature encoding it reads. Other published predictors (the reference's OFA-ResNet50D
one, with its own encoder) become one more entry of ``FORMATS``.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from ofa_tf.cli import run_absl_main  # noqa: E402

FLAGS = flags.FLAGS
PREDICTOR_NAME = "accuracy_predictor.keras"


@dataclasses.dataclass(frozen=True)
class PredictorFormat:
    """One published predictor checkpoint: an MLP of ``hidden`` Linear+ReLU layers and a Linear
    output (``output``), each a (weight, bias) pair of state_dict names, with their shapes."""

    name: str
    description: str
    family: str
    width_mult: float
    encoding: str
    hidden: tuple           # ((weight name, bias name), ...) of the Linear+ReLU layers
    output: tuple           # (weight name, bias name) of the last Linear
    shapes: dict            # tensor name -> shape

    def tensor_problems(self, state_dict) -> list[str]:
        """What keeps ``state_dict`` from being this format (empty: nothing)."""
        problems = [f"tensor {name!r} is missing" for name in self.shapes if name not in state_dict]
        problems += [f"tensor {name!r} is not part of it" for name in state_dict if name not in self.shapes]
        problems += [f"tensor {name!r} has shape {tuple(state_dict[name].shape)}, expected {shape}"
                     for name, shape in self.shapes.items()
                     if name in state_dict and tuple(state_dict[name].shape) != shape]
        return problems

    def check_space(self, space) -> None:
        """A ValueError unless this predictor predicts subnets of ``space``."""
        from ofa_tf.nas.encoding import arch_encoder

        arch_encoder(space, self.encoding)   # raises, naming what the features cannot encode
        if space.family != self.family or space.width_mult != self.width_mult:
            raise ValueError(f"{self.description} predicts subnets of the {self.family} w{self.width_mult} "
                             f"supernet; --space is {space.family} w{space.width_mult}")


def _mlp_shapes(n_dim: int, hidden: int, n_layers: int) -> dict:
    shapes, width = {}, n_dim
    for i in range(n_layers):
        shapes[f"{2 * i}.weight"], shapes[f"{2 * i}.bias"] = (hidden, width), (hidden,)
        width = hidden
    shapes[f"{2 * n_layers}.weight"], shapes[f"{2 * n_layers}.bias"] = (1, hidden), (1,)
    return shapes


# ofa/tutorial/accuracy_predictor.py: nn.Sequential(Linear(128, 400), ReLU, ..., Linear(400, 1)).
TUTORIAL_MBV3 = PredictorFormat(
    name="ofa_tutorial_mbv3",
    description="the OFA tutorial's accuracy predictor (acc_predictor.pth)",
    family="mobilenet_v3", width_mult=1.2, encoding="ofa_tutorial",
    hidden=(("0.weight", "0.bias"), ("2.weight", "2.bias"), ("4.weight", "4.bias")),
    output=("6.weight", "6.bias"),
    shapes=_mlp_shapes(128, 400, 3))

FORMATS = (TUTORIAL_MBV3,)


def checkpoint_format(state_dict, space, checkpoint: str = "the checkpoint") -> PredictorFormat:
    """The format of ``state_dict`` among those for ``space``'s family, checked against
    ``space``; one ValueError naming what does not fit."""
    candidates = [f for f in FORMATS if f.family == space.family]
    if not candidates:
        raise ValueError(f"no published accuracy predictor is known for the {space.family} family")
    for fmt in candidates:
        if not fmt.tensor_problems(state_dict):
            fmt.check_space(space)
            return fmt
    fmt = min(candidates, key=lambda f: len(f.tensor_problems(state_dict)))
    problems = fmt.tensor_problems(state_dict)
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise ValueError(f"{checkpoint} is not {fmt.description}: {'; '.join(problems[:3])}{more}")


def predictor_from_state_dict(state_dict, space, checkpoint: str = "the checkpoint"):
    """An ``AccuracyPredictor`` with the checkpoint's weights (its output, a fraction, as ours)."""
    import numpy as np

    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model

    fmt = checkpoint_format(state_dict, space, checkpoint)
    first_weight = state_dict[fmt.hidden[0][0]]
    hidden_size = int(first_weight.shape[0])
    output_weight, output_bias = (np.asarray(state_dict[n], np.float32) for n in fmt.output)
    # The last Linear's bias is our base accuracy (the offset added to the bias-free output layer).
    model = build_accuracy_model(int(first_weight.shape[1]), float(output_bias[0]), hidden_size,
                                 len(fmt.hidden), kernel_l2=0.0)
    for i, (weight, bias) in enumerate(fmt.hidden):
        model.get_layer(f"hidden_{i}").set_weights([np.asarray(state_dict[weight], np.float32).T,
                                                    np.asarray(state_dict[bias], np.float32)])
    model.get_layer("output").set_weights([output_weight.T])
    source = {"checkpoint": os.path.abspath(checkpoint), "format": fmt.name,
              "reference": "mit-han-lab/once-for-all"}
    return AccuracyPredictor(space, model, {"imported_from": source}, encoding=fmt.encoding)


def import_predictor(checkpoint: str, space_name: str, out_dir: str, overwrite: bool = False) -> str:
    """Read, check and convert ``checkpoint``; write it to ``out_dir``. Returns the .keras path.
    Every check (file, space, output, tensors) comes before anything is written."""
    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.errors import RefusedOverwrite, user_input
    from ofa_tf.interop.torch_checkpoint import check_checkpoint_exists, read_state_dict

    with user_input():
        check_checkpoint_exists(checkpoint)
        space = SearchSpace.preset(space_name)
        if os.path.isfile(out_dir) or out_dir.endswith(".keras"):
            raise ValueError(f"--out takes a directory (it gets {PREDICTOR_NAME} and its .json), got {out_dir!r}")
        path = os.path.join(out_dir, PREDICTOR_NAME)
        existing = [p for p in (path, path + ".json") if os.path.exists(p)]
        if existing and not overwrite:
            raise RefusedOverwrite(f"{existing[0]} exists; pass --overwrite to replace it or choose another --out")
        state_dict = read_state_dict(checkpoint)
        checkpoint_format(state_dict, space, checkpoint)
    predictor_from_state_dict(state_dict, space, checkpoint).save(path)
    return path


def define_flags() -> None:
    """The CLI's flags, defined when it runs, so importing this module defines none."""
    flags.DEFINE_string("checkpoint", None, "The reference's predictor checkpoint (a PyTorch state_dict), e.g. "
                        "acc_predictor.pth of the OFA tutorial.")
    flags.DEFINE_string("space", "mbv3_w1.2", "Search space preset the predictor is for (the tutorial's: "
                        "mbv3_w1.2).")
    flags.DEFINE_string("out", None, f"Output directory; gets {PREDICTOR_NAME} and {PREDICTOR_NAME}.json "
                        "(a supernet workdir's nas/ makes it that supernet's default predictor).")
    flags.DEFINE_bool("overwrite", False, "Replace a predictor already saved in --out.")
    flags.mark_flags_as_required(["checkpoint", "out"])


def import_from_flags() -> None:
    path = import_predictor(FLAGS.checkpoint, FLAGS.space, FLAGS.out, FLAGS.overwrite)
    print(f"Imported {FLAGS.checkpoint} ({FLAGS.space}) -> {path}")


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    import_from_flags()
    return 0


if __name__ == "__main__":
    run_absl_main(main, define_flags)
