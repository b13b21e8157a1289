"""Flag groups several CLIs share (workdir, data set, seed, BN calibration), defined in one place
with their defaults taken from the settings dataclass (``TrainConfig``), not written twice; and
the reading of an --arch value (export, finetune).

Each ``define_*`` is called by a CLI when it runs, never at import; a flag another CLI of the
same process already defined is left as it is.
"""

from __future__ import annotations

import json
import os

from absl import flags

from ofa_tf.training.config import TrainConfig

FLAGS = flags.FLAGS
_DEFAULTS = {f.name: f.default for f in TrainConfig.__dataclass_fields__.values()}


def _define(kind, name: str, default, help_text: str, **kwargs) -> None:
    if name not in FLAGS:
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text, **kwargs)


def define_workdir_flag(help_text: str, required: bool = True) -> None:
    """--workdir: the directory of a training run (its supernet, checkpoints, NAS files)."""
    _define("string", "workdir", None, help_text)
    if required:
        flags.mark_flag_as_required("workdir")


def define_data_flags(dataset_help: str, default: str | None = None, download: bool = False) -> None:
    """--dataset and --data_dir (and --tfds_download with ``download``)."""
    _define("string", "dataset", default, dataset_help)
    _define("string", "data_dir", None, "Root of a 'folder' data set (train/<class>/*.jpg, "
            "val/<class>/*.jpg), or the TFDS data_dir.")
    if download:
        _define("bool", "tfds_download", _DEFAULTS["tfds_download"],
                "Let TFDS download and prepare the data set if it is missing.")


def define_seed_flag(help_text: str) -> None:
    _define("integer", "seed", _DEFAULTS["seed"], help_text)


def define_calibration_flags(count_flag: str = "n_calibration_images", help_suffix: str = "") -> None:
    """How many training images recalibrate a subnet's BN statistics (``count_flag``), in
    batches of --calibration_batch_size."""
    _define("integer", count_flag, _DEFAULTS["n_calibration_images"],
            "Training images that recalibrate a subnet's BN statistics" + help_suffix + ".")
    _define("integer", "calibration_batch_size", _DEFAULTS["calibration_batch_size"],
            "Batch size of BN recalibration.")


def read_arch_flag(value: str) -> dict:
    """--arch: a path to a JSON file (an arch, or a search result holding one), or the JSON itself."""
    text = value
    if not value.lstrip().startswith(("{", "[")):
        if os.path.isdir(value):
            raise ValueError(f"--arch={value} is a directory, not a JSON file")
        if not os.path.exists(value):
            raise FileNotFoundError(f"--arch: no such file {value!r} (and not inline JSON)")
        with open(value, encoding="utf-8") as f:
            text = f.read()
    try:
        arch = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--arch is not valid JSON: {err}") from None
    if isinstance(arch, dict) and isinstance(arch.get("arch"), dict) and "ks" not in arch:
        arch = arch["arch"]   # a result of python -m ofa_tf.search (<constraint>.json)
    if not isinstance(arch, dict):
        raise ValueError(f"--arch must be a JSON object with ks, e, d (and r), got {type(arch).__name__}")
    return arch


def arch_in_space(arch: dict, space) -> dict:
    """An --arch dict with ints widened to per-block / per-stage lists, validated by ``space``."""
    missing = [k for k in ("ks", "e", "d") if k not in arch]
    unknown = sorted(set(arch) - {"ks", "e", "d", "r"})
    if missing or unknown:
        raise ValueError(f"--arch needs exactly the keys ks, e, d (and optionally r); "
                         f"{'missing ' + ', '.join(missing) if missing else 'unknown ' + ', '.join(unknown)}")
    wide = space.expand(arch["ks"], arch["e"], arch["d"])
    if "r" in arch:
        wide["r"] = arch["r"] if isinstance(arch["r"], list) else [arch["r"]]
    return space.validate(wide)


def define_resolutions_flag(help_text: str) -> None:
    """--resolutions: comma-separated input sizes replacing the space's (empty: keep them)."""
    _define("list", "resolutions", [], help_text)


def flag_resolutions() -> list | None:
    """The sizes --resolutions gives (None when empty); one ValueError naming a non-integer."""
    if not FLAGS.resolutions:
        return None
    try:
        return [int(v) for v in FLAGS.resolutions]
    except ValueError:
        raise ValueError(f"--resolutions={','.join(FLAGS.resolutions)} must be comma-separated integers "
                         "(input sizes in px)") from None
