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
and the feature encoding it reads. The reference's OFA-ResNet50D predictor
(``ofa_resnet50_acc_predictor.pth``, on ``ResNetArchEncoder`` features, ``resnet_onehot`` here) is
the second entry of ``FORMATS``; its features one-hot the resolution, so it imports for a ResNet
space with the resolutions it was trained on (128, 144, 160, 176, 192, 224, 240, 256 px for the
published one).
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
    output (``output``: its weight name, and its bias's if it has one), each a state_dict name,
    plus (``base``) a tensor holding a base accuracy added to the output. ``n_inputs`` is the
    first layer's width (None: the encoding's feature count for the space)."""

    name: str
    description: str
    family: str
    width_mult: float
    encoding: str
    hidden: tuple           # ((weight name, bias name), ...) of the Linear+ReLU layers
    output: tuple           # (weight name,) or (weight name, bias name) of the last Linear
    base: str | None = None
    n_inputs: int | None = None
    hidden_size: int = 400

    def shapes(self, n_inputs: int) -> dict:
        """Tensor name -> shape for a first layer reading ``n_inputs`` features."""
        shapes, width = {}, n_inputs
        for weight, bias in self.hidden:
            shapes[weight], shapes[bias], width = (self.hidden_size, width), (self.hidden_size,), self.hidden_size
        shapes[self.output[0]] = (1, width)
        shapes.update({name: (1,) for name in self.output[1:] + ((self.base,) if self.base else ())})
        return shapes

    def tensor_problems(self, state_dict, space) -> list[str]:
        """What keeps ``state_dict`` from being this format for ``space`` (empty: nothing)."""
        shapes = self.shapes(self.n_inputs or self._encoder(space).n_dim)
        problems = [f"tensor {name!r} is missing" for name in shapes if name not in state_dict]
        problems += [f"tensor {name!r} is not part of it" for name in state_dict if name not in shapes]
        problems += [f"tensor {name!r} has shape {tuple(state_dict[name].shape)}, expected {shape}"
                     for name, shape in shapes.items()
                     if name in state_dict and tuple(state_dict[name].shape) != shape]
        return problems

    def _encoder(self, space):
        from ofa_tf.nas.encoding import arch_encoder

        return arch_encoder(space, self.encoding)   # raises, naming what the features cannot encode

    def check_space(self, space) -> None:
        """A ValueError unless this predictor predicts subnets of ``space``."""
        self._encoder(space)
        if space.family != self.family or space.width_mult != self.width_mult:
            raise ValueError(f"{self.description} predicts subnets of the {self.family} w{self.width_mult} "
                             f"supernet; --space is {space.family} w{space.width_mult}")


# ofa/tutorial/accuracy_predictor.py: nn.Sequential(Linear(128, 400), ReLU, ..., Linear(400, 1)).
TUTORIAL_MBV3 = PredictorFormat(
    name="ofa_tutorial_mbv3",
    description="the OFA tutorial's accuracy predictor (acc_predictor.pth)",
    family="mobilenet_v3", width_mult=1.2, encoding="ofa_tutorial",
    hidden=(("0.weight", "0.bias"), ("2.weight", "2.bias"), ("4.weight", "4.bias")),
    output=("6.weight", "6.bias"), n_inputs=128)

# ofa/nas/accuracy_predictor/acc_predictor.py (AccuracyPredictor) on ResNetArchEncoder features:
# layers = [Sequential(Linear, ReLU)] x 3 + [Linear(400, 1, bias=False)], plus base_acc. The
# published ofa_resnet50_acc_predictor.pth reads 82 features: 8 resolutions (the reference's
# ResNet50 example encodes 128, 144, 160, 176, 192, 224, 240 and 256 px).
OFA_RESNET50 = PredictorFormat(
    name="ofa_resnet50",
    description="the reference's OFA-ResNet50D accuracy predictor (ofa_resnet50_acc_predictor.pth)",
    family="resnet", width_mult=1.0, encoding="resnet_onehot",
    hidden=tuple((f"layers.{i}.0.weight", f"layers.{i}.0.bias") for i in range(3)),
    output=("layers.3.weight",), base="base_acc")

FORMATS = (TUTORIAL_MBV3, OFA_RESNET50)


def checkpoint_format(state_dict, space, checkpoint: str = "the checkpoint") -> PredictorFormat:
    """The format of ``state_dict`` among those for ``space``'s family, checked against
    ``space``; one ValueError naming what does not fit."""
    candidates = [f for f in FORMATS if f.family == space.family]
    if not candidates:
        raise ValueError(f"no published accuracy predictor is known for the {space.family} family")
    for fmt in candidates:
        fmt.check_space(space)
        if not fmt.tensor_problems(state_dict, space):
            return fmt
    fmt = min(candidates, key=lambda f: len(f.tensor_problems(state_dict, space)))
    problems = fmt.tensor_problems(state_dict, space)
    first = state_dict.get(fmt.hidden[0][0])
    if fmt.n_inputs is None and first is not None and len(problems) == 1 and fmt.hidden[0][0] in problems[0]:
        encoder = fmt._encoder(space)
        raise ValueError(f"{checkpoint} reads {first.shape[1]} features, but this space encodes to "
                         f"{encoder.n_dim} ({encoder.name} features of its {len(space.resolutions)} resolutions, "
                         f"{list(space.resolutions)[:3]} ...): pass a space with the resolutions it was "
                         "trained on")
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise ValueError(f"{checkpoint} is not {fmt.description}: {'; '.join(problems[:3])}{more}")


def predictor_from_state_dict(state_dict, space, checkpoint: str = "the checkpoint"):
    """An ``AccuracyPredictor`` with the checkpoint's weights (its output, a fraction, as ours)."""
    import numpy as np

    from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model

    fmt = checkpoint_format(state_dict, space, checkpoint)
    first_weight = state_dict[fmt.hidden[0][0]]
    hidden_size = int(first_weight.shape[0])
    output_weight = np.asarray(state_dict[fmt.output[0]], np.float32)
    # The last Linear's bias and the base tensor make our base accuracy (the offset added to the
    # bias-free output layer).
    base = sum(float(np.asarray(state_dict[n], np.float32)[0]) for n in fmt.output[1:] + ((fmt.base,) if fmt.base else ()))
    model = build_accuracy_model(int(first_weight.shape[1]), base, hidden_size, len(fmt.hidden), kernel_l2=0.0)
    for i, (weight, bias) in enumerate(fmt.hidden):
        model.get_layer(f"hidden_{i}").set_weights([np.asarray(state_dict[weight], np.float32).T,
                                                    np.asarray(state_dict[bias], np.float32)])
    model.get_layer("output").set_weights([output_weight.T])
    source = {"checkpoint": os.path.abspath(checkpoint), "format": fmt.name,
              "reference": "mit-han-lab/once-for-all"}
    return AccuracyPredictor(space, model, {"imported_from": source}, encoding=fmt.encoding)


def import_predictor(checkpoint: str, space_name: str, out_dir: str, overwrite: bool = False,
                     resolutions=None) -> str:
    """Read, check and convert ``checkpoint``; write it to ``out_dir``. Returns the .keras path.
    ``resolutions`` replaces the preset's input sizes. Every check (file, space, output, tensors)
    comes before anything is written."""
    from ofa_tf.arch.space import SearchSpace
    from ofa_tf.errors import RefusedOverwrite, user_input
    from ofa_tf.interop.torch_checkpoint import check_checkpoint_exists, read_state_dict

    with user_input():
        check_checkpoint_exists(checkpoint)
        space = SearchSpace.preset(space_name)
        if resolutions is not None:
            space = space.with_resolutions(resolutions)
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
    from ofa_tf.cli_flags import define_resolutions_flag

    define_resolutions_flag("Input sizes replacing the preset's, comma-separated: the ones the predictor "
                            "encodes, e.g. 128,144,160,176,192,224,240,256 for the reference's OFA-ResNet50D "
                            "predictor with --space=resnet50d (the supernet is imported with the same).")
    flags.mark_flags_as_required(["checkpoint", "out"])


def import_from_flags() -> None:
    from ofa_tf.cli_flags import flag_resolutions
    from ofa_tf.errors import user_input

    with user_input():
        resolutions = flag_resolutions()
    path = import_predictor(FLAGS.checkpoint, FLAGS.space, FLAGS.out, FLAGS.overwrite, resolutions)
    print(f"Imported {FLAGS.checkpoint} ({FLAGS.space}) -> {path}")


def main(argv):
    del argv  # run_absl_main refuses positional arguments
    import_from_flags()
    return 0


if __name__ == "__main__":
    run_absl_main(main, define_flags)
