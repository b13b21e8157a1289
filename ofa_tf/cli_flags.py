"""Flag groups several CLIs share (workdir, data set, seed, BN calibration), defined in one place
with their defaults taken from the settings dataclass (``TrainConfig``), not written twice.

Each ``define_*`` is called by a CLI when it runs, never at import; a flag another CLI of the
same process already defined is left as it is.
"""

from __future__ import annotations

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
