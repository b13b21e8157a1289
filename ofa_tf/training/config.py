"""Settings of a progressive-shrinking run, and which of them a workdir is bound to.

A workdir belongs to one search space, data set and recipe: resuming it with another would
silently mix two runs, so `check_workdir_config` refuses and names the fields that differ.
Settings that do not change what is trained (which phases to run now, logging, checkpoint
frequency, the number of calibration images, the strategy as long as the global batch is
the same) may change between invocations. What the run starts from, the ``--init_weights`` file
(its path and content) and the teacher, is bound too, in ``start.json``: a resumed run distils
from the same teacher and restarts a phase from the same weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from ofa_tf.arch.space import PRESETS, SearchSpace
from ofa_tf.atomic_files import atomic_write_text
from ofa_tf.errors import short_json
from ofa_tf.training.phases import PHASE_NAMES, progressive_shrinking_phases

SPACE_PRESETS = tuple(PRESETS)
STRATEGIES = ("one_device", "mirrored", "multi_worker")
# Compute dtypes of training (Keras dtype policies); see training/precision.py.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
CONFIG_NAME = "config.json"
START_NAME = "start.json"      # what the run starts from: --init_weights (path, sha256), --teacher
# --teacher: the finished teacher phase in the workdir, or the largest subnet of --init_weights.
TEACHERS = ("workdir", "init")
DONE_NAME = "done.json"        # <workdir>/<phase>/done.json marks a finished phase


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    workdir: str
    space: str = "tiny"
    dataset: str = "demo"
    data_dir: str | None = None
    tfds_download: bool = False
    batch_size: int = 64                  # per replica
    image_size_list: tuple = ()           # () = the space's resolutions
    phases: tuple = ()                    # () = every phase of the space
    epochs_scale: float = 1.0
    steps_per_epoch: int = 0              # 0 = one pass over the training split
    lr_scale: float = 1.0
    base_batch_size: int = 64             # a phase's lr is given per this many images
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    dropout: float = 0.1
    bn_momentum: float = 0.9
    seed: int = 0
    init_weights: str | None = None
    teacher: str = "workdir"              # one of TEACHERS
    n_calibration_images: int = 2000
    calibration_batch_size: int = 200
    eval_batch_size: int = 200
    validate_every: int = 1               # epochs
    checkpoint_every: int = 500           # steps; 0 = at the end of each epoch only
    keep_checkpoints: int = 2
    strategy: str = "one_device"
    precision: str = "float32"            # one of PRECISIONS
    tensorboard: bool = True
    verbose: int = 1

    # Fields that bind a workdir (plus the derived global batch and the space's definition).
    BOUND = ("space", "dataset", "image_size_list", "epochs_scale", "steps_per_epoch", "lr_scale",
             "base_batch_size", "momentum", "nesterov", "weight_decay", "label_smoothing",
             "kd_ratio", "dropout", "bn_momentum", "seed", "precision")
    # What a bound field missing from an older workdir's config.json was then (so it resumes).
    BOUND_BEFORE = {"precision": "float32"}

    def __post_init__(self):
        problems = []
        if not self.workdir:
            problems.append("workdir is required")
        if self.space not in SPACE_PRESETS:
            problems.append(f"space {self.space!r} is not one of {SPACE_PRESETS}")
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy {self.strategy!r} is not one of {STRATEGIES}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.teacher not in TEACHERS:
            problems.append(f"teacher {self.teacher!r} is not one of {TEACHERS}")
        elif self.teacher == "init" and not self.init_weights:
            problems.append("teacher 'init' (the largest subnet of the initial weights) needs init_weights")
        if self.space in SPACE_PRESETS:
            # The space's phases (its elastic dimensions decide which), all of them by default.
            names = tuple(progressive_shrinking_phases(self.search_space()))
            object.__setattr__(self, "phases", tuple(self.phases) or names)
            unknown = [p for p in self.phases if p not in names]
            if unknown:
                problems.append(f"phases {list(self.phases)}: {unknown[0]!r} is not a phase of space "
                                f"{self.space!r}; its phases are {list(names)}")
            elif list(self.phases) != sorted(self.phases, key=PHASE_NAMES.index) or len(set(self.phases)) != len(self.phases):
                problems.append(f"phases {list(self.phases)} must follow the progressive-shrinking order "
                                f"{list(names)} without repeats")
        for name in ("batch_size", "base_batch_size", "n_calibration_images", "calibration_batch_size",
                     "eval_batch_size", "validate_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "checkpoint_every", "weight_decay", "kd_ratio"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("epochs_scale", "lr_scale"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.dropout < 1 or not 0 <= self.momentum < 1:
            problems.append("label_smoothing, dropout and momentum must be in [0, 1)")
        if not 0 < self.bn_momentum < 1:
            problems.append(f"bn_momentum must be in (0, 1) (Keras sense), got {self.bn_momentum}")
        if self.dataset == "folder" and not self.data_dir:
            problems.append("dataset 'folder' needs data_dir (the directory holding train/ and val/)")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))
        object.__setattr__(self, "image_size_list", tuple(int(r) for r in self.image_size_list))
        object.__setattr__(self, "phases", tuple(self.phases))
        if self.image_size_list:
            allowed = self.search_space().resolutions
            bad = [r for r in self.image_size_list if r not in allowed]
            if bad:
                raise ValueError(f"invalid training config: image_size_list {list(self.image_size_list)} has "
                                 f"{bad}, not among the space's resolutions {list(allowed)}")

    def search_space(self) -> SearchSpace:
        return SearchSpace.preset(self.space)

    @property
    def resolutions(self) -> tuple:
        return self.image_size_list or self.search_space().resolutions

    def bound_fields(self, global_batch: int, class_names) -> dict:
        """What `check_workdir_config` compares (JSON-ready)."""
        out = {name: getattr(self, name) for name in self.BOUND}
        out["image_size_list"] = list(self.resolutions)
        out["global_batch_size"] = int(global_batch)
        out["space_definition"] = self.search_space().to_dict()
        out["class_names"] = list(class_names)
        return json.loads(json.dumps(out))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def start_record(config: TrainConfig) -> dict:
    """What `START_NAME` binds a workdir to: the initial weights (absolute path and content
    hash, or none) and the teacher."""
    init = config.init_weights
    return {"init_weights": os.path.abspath(init) if init else None,
            "init_weights_sha256": _sha256(init) if init else None, "teacher": config.teacher}


START_REMEDY = ("Rerun with the --init_weights (unchanged) and --teacher it was started with, "
                "or use a new --workdir.")


def check_run_inputs(config: TrainConfig, phases: dict | None = None) -> None:
    """Refuse, before anything is created, a run that would fail later: a workdir that is a
    file, an --init_weights that is not a weights file, a workdir started from other initial
    weights or another teacher, or phases whose start weights or teacher neither the workdir
    nor this run provides. ``phases``: the run's phase table (default: the schedule's)."""
    workdir = config.workdir
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir={workdir} is a file, not a directory")
    if config.init_weights is not None:
        if not os.path.isfile(config.init_weights):
            raise FileNotFoundError(f"--init_weights={config.init_weights}: no such file")
        import h5py

        if not h5py.is_hdf5(config.init_weights):
            raise ValueError(f"--init_weights={config.init_weights} is not a .weights.h5 file (not HDF5)")
    check_workdir_config(workdir, start_record(config), remedy=START_REMEDY, name=START_NAME, create=False)
    done = {name for name in PHASE_NAMES if os.path.exists(os.path.join(workdir, name, DONE_NAME))}
    phases = phases or progressive_shrinking_phases(config.search_space())
    for name in config.phases:
        if name in done:
            continue
        earlier = [p for p in PHASE_NAMES[: PHASE_NAMES.index(name)] if p in done]
        if name != "teacher" and not earlier and not config.init_weights:
            raise ValueError(f"phase {name!r} starts from the weights of an earlier phase, but {workdir} "
                             "has no finished phase before it; run the earlier phases first (e.g. "
                             "--phases=teacher,...) or pass --init_weights")
        if phases[name].use_kd and config.kd_ratio and config.teacher == "workdir" and "teacher" not in done:
            raise ValueError(f"phase {name!r} distils from the teacher, but {workdir} has no finished "
                             "'teacher' phase; run it first, pass --teacher=init (the largest subnet of "
                             "--init_weights) or --kd_ratio=0")
        done.add(name)


def check_workdir_config(workdir: str, bound: dict,
                         remedy: str = "Use a new --workdir, or rerun with the workdir's settings.",
                         name: str = CONFIG_NAME, create: bool = True, missing_means: dict | None = None) -> None:
    """Record ``bound`` in ``workdir/name`` when it is not there yet (only with ``create``), or
    refuse a workdir that was made with other values (the error ends with ``remedy``). A key
    the stored file lacks (written before the field existed) counts as ``missing_means[key]``."""
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        if not create:
            return
        os.makedirs(workdir, exist_ok=True)
        atomic_write_text(path, json.dumps(bound, indent=2))
        return
    with open(path, encoding="utf-8") as f:
        try:
            stored = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); is {workdir} an ofa_tf workdir?") from None
    stored = {**(missing_means or {}), **stored}
    differing = sorted(k for k in set(stored) | set(bound) if stored.get(k) != bound.get(k))
    if differing:
        details = ", ".join(f"{k}: workdir has {short_json(stored.get(k))}, now {short_json(bound.get(k))}"
                            for k in differing)
        raise ValueError(f"workdir {workdir} was created by a different run ({details}). {remedy}")
