"""Import one of the reference's specialized subnets (static ``net.config`` + ``init``) as a Keras model.

    python -m ofa_tf.interop.import_specialized --net_config=note10_lat-22ms/net.config \\
        --init=note10_lat-22ms/init --out=imported/note10_22ms
    python -m ofa_tf.export --model=imported/note10_22ms/model.keras --mode=float32,int8

The reference publishes each specialized subnet as a directory with ``net.config`` (the static
``MobileNetV3`` or ``ProxylessNASNets`` as JSON), ``run.config`` (its input size) and ``init``
(the fine-tuned PyTorch state_dict). ``--out`` receives ``model.keras`` + ``model.json`` (arch,
ImageNet class slots and normalization), as ``ofa_tf.finetune`` writes them, so
``ofa_tf.export --model`` takes it as is. The model is built by the static builder from a
one-subnet search space of the config (`ofa_tf.interop.reference_config`); ``--to_arch`` also
gives the config as an arch of the preset space it is a subnet of (``arch.json``), or fails
naming the mismatch. Everything is checked before anything is written.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS

MODEL_NAME = "model.keras"
ARCH_NAME = "arch.json"


def read_specialized(net_config: str, run_config: str | None = None):
    """The `SpecializedNet` of a net.config file; ``run_config`` defaults to the run.config next to it."""
    from ofa_tf.interop.reference_config import config_space, network_family, read_json_file

    config = read_json_file(net_config, "net.config")
    network_family(config)   # an unknown network class is named before run.config is looked for
    if run_config is None:
        run_config = os.path.join(os.path.dirname(os.path.abspath(net_config)), "run.config")
        if not os.path.isfile(run_config):
            raise FileNotFoundError(f"no run.config next to {net_config!r} (it gives the input size); "
                                    "pass --run_config")
    return config_space(config, read_json_file(run_config, "run.config"))


def build_specialized_model(net, batch_size: int | None = None):
    """The plain Keras model of a `SpecializedNet` (random weights), built by its family's static builder."""
    from ofa_tf.networks import family_of

    return family_of(net.space).build_static_model(net.layout, net.arch, net.image_size,
                                                   bn_momentum=net.bn_momentum, bn_epsilon=net.bn_epsilon,
                                                   name="ofa_specialized", batch_size=batch_size)


def load_specialized_state_dict(model, net, state_dict) -> None:
    """Copy the reference static net's state_dict into ``model`` (all or nothing); one
    `CheckpointMismatchError` naming the tensors that do not fit the config."""
    from ofa_tf.interop.reference_mapping import (CheckpointMismatchError, assign_checked, listed_problems,
                                                  static_links)

    problems = assign_checked(static_links(model, net.layout, net.arch, net.image_size), state_dict)
    if problems:
        raise CheckpointMismatchError(f"init does not fit net.config ({net.config['name']}, "
                                      f"{len(net.layout.active_blocks(net.arch, net.image_size))} blocks): "
                                      f"{listed_problems(problems)}")


def import_specialized(net_config: str, out_dir: str | None, run_config: str | None = None,
                       init: str | None = None, to_arch: bool = False, overwrite: bool = False) -> dict:
    """Read, check, build, load and save (into ``out_dir`` unless None). Returns what was done:
    ``net``, ``model``, ``preset`` / ``preset_arch`` (with ``to_arch``), ``model_path``."""
    from ofa_tf.errors import RefusedOverwrite
    from ofa_tf.interop.reference_config import preset_arch
    from ofa_tf.interop.torch_checkpoint import read_state_dict

    if out_dir is not None:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ValueError(f"--out={out_dir} is a file; --out takes a directory (it gets {MODEL_NAME})")
        if os.path.exists(os.path.join(out_dir, MODEL_NAME)) and not overwrite:
            raise RefusedOverwrite(f"{out_dir} already holds {MODEL_NAME}; pass --overwrite to replace it "
                                   "or choose another --out")
    net = read_specialized(net_config, run_config)
    result = {"net": net, "model": None, "model_path": None}
    if to_arch:
        result["preset"], result["preset_arch"] = preset_arch(net)
    state_dict = read_state_dict(init) if init is not None else None
    if out_dir is None and state_dict is None and to_arch:
        return result
    model = build_specialized_model(net)
    if state_dict is not None:
        load_specialized_state_dict(model, net, state_dict)
    result["model"] = model
    if out_dir is not None:
        result["model_path"] = _save(model, net, out_dir, result, net_config, init)
    return result


def _save(model, net, out_dir: str, result: dict, net_config: str, init: str | None) -> str:
    from ofa_tf.artifacts import atomic_write_text, save_subnet_model
    from ofa_tf.interop.import_torch import imagenet_info

    source = {"net_config": os.path.abspath(net_config), "init": init and os.path.abspath(init),
              "reference": "mit-han-lab/once-for-all", "network": net.config["name"]}
    if result.get("preset"):
        source.update(preset=result["preset"], preset_arch=result["preset_arch"])
        os.makedirs(out_dir, exist_ok=True)
        atomic_write_text(os.path.join(out_dir, ARCH_NAME), json.dumps(result["preset_arch"]) + "\n")
    path = os.path.join(out_dir, MODEL_NAME)
    save_subnet_model(model, path, arch=net.arch, space=net.space, info=imagenet_info(net.n_classes),
                      extra={"imported_from": source})
    return path


def main(argv):
    from ofa_tf.arch.complexity import profile_layout
    from ofa_tf.errors import BadInput, user_input

    if FLAGS.out is None and not FLAGS.to_arch:
        raise BadInput("--out is required (unless --to_arch only prints the arch)")
    with user_input():   # reading and checking the files; building the model is not input
        result = import_specialized(FLAGS.net_config, FLAGS.out, FLAGS.run_config, FLAGS.init,
                                    FLAGS.to_arch, FLAGS.overwrite)
    net = result["net"]
    if FLAGS.to_arch:
        arch, preset = result["preset_arch"], result["preset"]
        print(json.dumps(arch))
        from ofa_tf.arch.space import SearchSpace

        resolutions = SearchSpace.preset(preset).resolutions
        inside = "" if net.image_size in resolutions else \
            f"; its input size {net.image_size} px is outside the space's {min(resolutions)}-{max(resolutions)} px"
        print(f"net.config is a subnet of --space={preset}{inside}")
    if result["model_path"]:
        profile = profile_layout(net.layout, net.arch, net.image_size)
        weights = f"weights from {FLAGS.init}" if FLAGS.init else "random weights (no --init)"
        print(f"Imported specialized subnet: {net.config['name']}, {len(net.arch['ks']) + 1} blocks, "
              f"{net.image_size} px, {net.n_classes} classes, {profile.params:,} params, {profile.macs:,} MACs, "
              f"{weights} -> {result['model_path']} "
              f"(export: python -m ofa_tf.export --model={result['model_path']})")
    return 0


def define_flags():
    """The CLI's flags, defined when it runs, so importing this module defines none."""
    flags.DEFINE_string("net_config", None, "The reference's net.config (static MobileNetV3 or "
                        "ProxylessNASNets JSON) of a specialized subnet.")
    flags.DEFINE_string("run_config", None, "Its run.config (input size). Default: run.config next to "
                        "--net_config.")
    flags.DEFINE_string("init", None, "Its weights: the reference's init file (a PyTorch state_dict). "
                        "Default: random weights.")
    flags.DEFINE_string("out", None, f"Output directory; gets {MODEL_NAME} and model.json (and {ARCH_NAME} "
                        "with --to_arch).")
    flags.DEFINE_bool("to_arch", False, "Print the config as an arch dict (ks, e, d, r) of the preset space "
                      "it is a subnet of; fail naming the mismatch if it is none's.")
    flags.DEFINE_bool("overwrite", False, f"Replace a {MODEL_NAME} already in --out.")
    flags.mark_flags_as_required(["net_config"])


def run():
    from ofa_tf.cli import run_absl_main

    run_absl_main(main, define_flags)


if __name__ == "__main__":
    run()
