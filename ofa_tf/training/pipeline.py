"""Progressive shrinking end to end in one workdir: phases, checkpoints, resume, validation.

Workdir layout::

    config.json               the settings the workdir is bound to (see training/config.py)
    start.json                what it starts from: --init_weights (path, sha256) and --teacher
    <phase>/ckpt-<step>.*     checkpoints of a phase: supernet, optimizer (its step drives the
                              schedule), the sampler's and dropout's RNG states
    <phase>/done.json         written when the phase is finished, with its last validation
    logs/<phase>/             TensorBoard scalars (train, validation)
    supernet.weights.h5/.json the trained supernet for the export and search tools

Each phase starts from the previous finished phase's final weights (sorted by channel
importance first when the phase opens the width), and distils from the finished teacher phase,
or with ``teacher="init"`` from the largest subnet of ``init_weights``. The first phase run
starts from ``init_weights`` when given: a supernet trained on other classes gives every weight
but its classifier, which is re-initialized (`ofa_tf.networks.weight_transfer`).
Re-running the same command resumes at the last checkpoint: same phase, same step, same
data position (the training stream is skipped to it), same RNG states.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Mapping

import keras
import tensorflow as tf

from ofa_tf.arch.complexity import profile_arch
from ofa_tf.artifacts import save_supernet
from ofa_tf.atomic_files import atomic_write_text, write_done
from ofa_tf.data import load_dataset
from ofa_tf.errors import BadInput
from ofa_tf.evaluation import SubnetValidator
from ofa_tf.networks import family_of
from ofa_tf.networks.weight_transfer import check_weights_fit, load_weights_fit
from ofa_tf.training.config import (DONE_NAME, START_NAME, START_REMEDY, TrainConfig, check_run_inputs,
                                    check_workdir_config, start_record)
from ofa_tf.training.checkpoints import model_checkpoint, restore_model
from ofa_tf.training.optimizer import ReferenceSGD
from ofa_tf.training.phases import (PHASE_NAMES, Phase, phase_validation_archs,
                                    progressive_shrinking_phases)
from ofa_tf.training.precision import dtype_policy, optimizer_for
from ofa_tf.training.resumable_fit import fit_from_step
from ofa_tf.training.schedule import WarmupCosineDecay
from ofa_tf.training.trainer import OFATrainer


@dataclasses.dataclass(frozen=True)
class PhasePlan:
    """A phase scaled to this run: epochs, steps and learning rate."""
    phase: Phase
    epochs: int            # warm-up included
    warmup_steps: int      # the first steps of the first epoch(s), linear from 0
    steps_per_epoch: int
    lr: float

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def plan_phase(phase: Phase, config: TrainConfig, n_train: int, global_batch: int) -> PhasePlan:
    """Scale a phase's epochs by ``epochs_scale`` (at least one), its learning rate by the global
    batch (linear scaling from ``base_batch_size``, as OFA multiplies by the number of GPUs) and
    by ``lr_scale``, and cap an epoch at ``steps_per_epoch``.

    The warm-up is scaled in steps, not whole epochs, so a shortened schedule keeps the
    reference's share of warm-up (5 of 125 epochs): rounding 5 x 0.025 epochs down to none left
    the demo's from-scratch teacher at lr 0.06 from its first step, stuck at chance for an epoch.
    """
    steps = max(1, n_train // global_batch)
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    epochs = max(1, round((phase.epochs + phase.warmup_epochs) * config.epochs_scale))
    warmup_steps = round(phase.warmup_epochs * config.epochs_scale * steps)
    lr = phase.lr * config.lr_scale * global_batch / config.base_batch_size
    return PhasePlan(phase, epochs, warmup_steps, steps, lr)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``one_device``: the default strategy. ``mirrored``: every GPU, or every logical CPU device
    when there is no GPU. ``multi_worker``: from ``TF_CONFIG``."""
    if name == "one_device":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}")


def local_replicas(strategy) -> int:
    """Replicas this process runs (all of them, except across several workers)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return len(strategy.extended.worker_devices)
    return strategy.num_replicas_in_sync


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


class _StepCheckpoint(keras.callbacks.Callback):
    """Save every ``every`` optimizer steps and at each epoch end; validate every few epochs."""

    def __init__(self, run: "_PhaseRun"):
        super().__init__()
        self.run = run

    def on_train_batch_end(self, batch, logs=None):
        every = self.run.config.checkpoint_every
        step = self.run.step
        if every and step % every == 0 and step % self.run.plan.steps_per_epoch:
            self.run.save()

    def on_epoch_end(self, epoch, logs=None):
        self.run.save()
        if (epoch + 1) % self.run.config.validate_every == 0 or self.run.step >= self.run.plan.total_steps:
            self.run.validate()


class _PhaseRun:
    """One phase: build its trainer, restore or initialise its state, train, validate."""

    def __init__(self, pipeline: "ProgressiveShrinking", plan: PhasePlan):
        self.pipeline, self.plan, self.config = pipeline, plan, pipeline.config
        self.phase = plan.phase
        self.directory = pipeline.path(self.phase.name)
        self.last_validation = None
        supernet = pipeline.supernet
        with pipeline.strategy.scope():
            self.trainer = OFATrainer(supernet, self.phase, teacher=pipeline.teacher_for(self.phase),
                                      kd_ratio=self.config.kd_ratio,
                                      label_smoothing=self.config.label_smoothing,
                                      resolutions=self.config.resolutions,
                                      seed=pipeline.phase_seed(self.phase))
            schedule = WarmupCosineDecay(plan.lr, decay_steps=plan.total_steps - plan.warmup_steps,
                                         warmup_steps=plan.warmup_steps)
            self.optimizer = optimizer_for(ReferenceSGD(schedule, momentum=self.config.momentum,
                                                        nesterov=self.config.nesterov,
                                                        l2_decay=self.config.weight_decay),
                                           self.config.precision)
            self.trainer.compile(optimizer=self.optimizer, jit_compile=False)
        rng_states = [self.trainer.seed_generator.state] + [
            layer.seed_generator.state for layer in supernet._flatten_layers()
            if getattr(layer, "seed_generator", None) is not None]
        self.checkpoint = model_checkpoint(supernet, optimizer=self.optimizer, rng=rng_states)
        self.manager = tf.train.CheckpointManager(self.checkpoint, pipeline.writable(self.directory),
                                                  max_to_keep=self.config.keep_checkpoints)
        self.summary = (tf.summary.create_file_writer(pipeline.path("logs", self.phase.name, "validation"))
                        if self.config.tensorboard else None)

    @property
    def trace_count(self) -> int:
        """Traces of the train step; a distributed step is traced once per replica of this
        worker, counted once."""
        return self.trainer.trace_count // local_replicas(self.pipeline.strategy)

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def save(self):
        write_done(self.manager.save(checkpoint_number=self.step))

    def start(self) -> str:
        """Restore the phase's last checkpoint, or set up its initial state and checkpoint it."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            return f"resumed at step {self.step}"
        source = self.pipeline.load_start_weights(self.phase)
        if self.phase.sort_channels is not None:
            self.pipeline.supernet.sort_channels(self.phase.sort_channels)
            source += f", channels sorted (expand_ratio_stage={self.phase.sort_channels})"
        self.save()
        return source

    def train(self):
        plan, config = self.plan, self.config
        callbacks = [_StepCheckpoint(self)]
        if config.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(self.pipeline.path("logs", self.phase.name),
                                                         update_freq=max(1, min(100, plan.steps_per_epoch))))
        # A resumed run first finishes its interrupted epoch, then runs whole epochs.
        fit_from_step(self.trainer, lambda step: self.pipeline.train_data(
            self.phase, skip=step * self.pipeline.global_batch), lambda: self.step, plan.total_steps,
            plan.steps_per_epoch, callbacks=callbacks, verbose=config.verbose)
        if self.last_validation is None or self.last_validation["step"] != self.step:
            self.validate()

    def validate(self):
        archs = phase_validation_archs(self.pipeline.supernet.space, self.phase.ks_list,
                                       self.phase.expand_ratio_list, self.phase.depth_list,
                                       self.config.resolutions, self.phase.width_list)
        started = time.time()
        results = self.pipeline.validator.evaluate_many(archs)
        for name, arch in archs.items():
            results[name]["arch"] = arch
            results[name]["mmacs"] = profile_arch(arch, self.pipeline.supernet.space,
                                                  n_classes=self.pipeline.supernet.n_classes).mmacs
        step = self.step
        self.last_validation = {"step": step, "epoch": step / self.plan.steps_per_epoch, "subnets": results}
        if self.summary is not None:
            with self.summary.as_default():
                for name, r in results.items():
                    for metric in ("top1", "top5", "loss"):
                        tf.summary.scalar(f"{name}/{metric}", r[metric], step=step)
            self.summary.flush()
        row = "  ".join(f"{name} top1 {r['top1']:.1f}% top5 {r['top5']:.1f}%" for name, r in results.items())
        print(f"[{self.phase.name}] step {step}/{self.plan.total_steps} validation (BN recalibrated, "
              f"{time.time() - started:.0f}s): {row}", flush=True)

    def finish(self) -> dict:
        done = {"phase": self.phase.name, "steps": self.step, "trace_count": self.trace_count,
                "validation": self.last_validation["subnets"]}
        if self.pipeline.is_chief:
            atomic_write_text(os.path.join(self.directory, DONE_NAME), json.dumps(done, indent=2))
        return done


class ProgressiveShrinking:
    """Runs ``config.phases`` in ``config.workdir``; see the module docstring."""

    def __init__(self, config: TrainConfig, phase_overrides: Mapping[str, Phase] | None = None):
        """``phase_overrides`` replaces entries of the schedule by name (an ablation's own
        phase, e.g. every choice open from the teacher on, for as long as the schedule it stands
        in for); each keeps its slot in the phase order, and so its workdir directory."""
        self.config = config
        space = config.search_space()
        self.phases = progressive_shrinking_phases(space, phase_overrides)
        check_run_inputs(config, self.phases)
        # Weight initialization (Keras' global seed) follows --seed too, so a run is repeatable.
        keras.utils.set_random_seed(config.seed)
        self.strategy = make_strategy(config.strategy)
        self.is_chief = _is_chief(self.strategy)
        replicas = self.strategy.num_replicas_in_sync
        self.global_batch = config.batch_size * replicas
        kwargs = {"download": True} if config.tfds_download else {}
        self.source = load_dataset(config.dataset, config.data_dir, **kwargs)
        self.info = self.source.info
        with self.strategy.scope(), dtype_policy(config.precision):
            self.supernet = family_of(space).supernet_class(
                n_classes=self.info.num_classes, space=space, dropout_rate=config.dropout,
                bn_momentum=config.bn_momentum, seed=config.seed)
        self.init_fit = self._check_init_weights()
        # Checked before the workdir is created or touched.
        # Only the chief records them; every worker checks what is there.
        check_workdir_config(config.workdir, config.bound_fields(self.global_batch, self.info.class_names),
                             missing_means=TrainConfig.BOUND_BEFORE, create=self.is_chief)
        self.start = start_record(config)   # hashed once: recorded now, reported with the supernet
        check_workdir_config(config.workdir, self.start, remedy=START_REMEDY, name=START_NAME,
                             create=self.is_chief)
        self._teacher = None
        self.validator = SubnetValidator(
            self.supernet,
            calibration_data=lambda size: self.source.train(config.calibration_batch_size, size,
                                                            seed=config.seed + 7919),
            eval_data=lambda size: self.source.val(config.eval_batch_size, size),
            n_calibration_images=config.n_calibration_images)

    # -------------------------------------------------------------- paths
    def path(self, *parts) -> str:
        return os.path.join(self.config.workdir, *parts)

    def writable(self, directory: str) -> str:
        """Where this worker writes: the real directory on the chief, a scratch one elsewhere
        (multi-worker checkpointing needs every worker to write, but only the chief's counts)."""
        if self.is_chief:
            return directory
        task = self.strategy.cluster_resolver.task_id
        return os.path.join(self.config.workdir, ".scratch", f"worker-{task}", os.path.basename(directory))

    def is_done(self, name: str) -> bool:
        return os.path.exists(self.path(name, DONE_NAME))

    def read_done(self, name: str) -> dict:
        with open(self.path(name, DONE_NAME), encoding="utf-8") as f:
            return json.load(f)

    # ------------------------------------------------------------ weights
    def _check_init_weights(self):
        """How ``init_weights`` fits this run's supernet (one error naming the weight if it does
        not); a teacher taken from it must have the data set's classes."""
        config = self.config
        if not config.init_weights:
            return None
        fit = check_weights_fit(self.supernet, config.init_weights, self.info.class_names,
                                target=f"this run's supernet (space {config.space!r}, "
                                       f"{self.info.num_classes} classes)")
        if config.teacher == "init" and config.kd_ratio and not fit.same_classes:
            names = "other" if fit.file_classes == self.info.num_classes else f"{fit.file_classes}"
            raise BadInput(f"--teacher=init distils from the largest subnet of --init_weights="
                           f"{config.init_weights}, which has {names} classes, not the data set's "
                           f"{self.info.num_classes}; run the teacher phase on this data "
                           "(--teacher=workdir) or pass --kd_ratio=0")
        return fit

    def _restore_model(self, model, name: str):
        latest = tf.train.latest_checkpoint(self.path(name))
        if latest is None:
            raise RuntimeError(f"phase {name!r} is marked done but {self.path(name)} has no checkpoint")
        restore_model(model, latest)

    def load_start_weights(self, phase: Phase) -> str:
        earlier = [p for p in PHASE_NAMES[: PHASE_NAMES.index(phase.name)] if self.is_done(p)]
        if earlier:
            self._restore_model(self.supernet, earlier[-1])
            return f"started from phase {earlier[-1]!r}"
        if self.init_fit is not None:
            how = load_weights_fit(self.supernet, self.init_fit)
            return f"started from {self.config.init_weights} ({how})"
        if phase.name != "teacher":
            raise ValueError(f"phase {phase.name!r} starts from the weights of an earlier phase, but "
                             f"{self.config.workdir} has no finished phase before it; run the earlier "
                             "phases first (e.g. --phases=teacher,...) or pass --init_weights")
        return "started from random initialization"

    def teacher_for(self, phase: Phase):
        if not phase.use_kd or self.config.kd_ratio == 0:
            return None
        if self._teacher is None:
            from_init = self.config.teacher == "init"
            if not from_init and not self.is_done("teacher"):
                raise ValueError(f"phase {phase.name!r} distils from the teacher, but {self.config.workdir} "
                                 "has no finished 'teacher' phase; run it first, pass --teacher=init (the "
                                 "largest subnet of --init_weights) or --kd_ratio=0")
            with self.strategy.scope(), dtype_policy(self.config.precision):
                self._teacher = family_of(self.supernet.space).supernet_class(
                    n_classes=self.info.num_classes, space=self.supernet.space,
                    dropout_rate=self.config.dropout, bn_momentum=self.config.bn_momentum, name="teacher")
            if from_init:
                load_weights_fit(self._teacher, self.init_fit)   # same classes: checked up front
            else:
                self._restore_model(self._teacher, "teacher")
            self._teacher.set_max_net()
        return self._teacher

    def _kd_source(self) -> str:
        if self.config.teacher == "init":
            return f"KD from the largest subnet of {self.config.init_weights}"
        return "KD from the teacher"

    # --------------------------------------------------------------- data
    def phase_seed(self, phase: Phase) -> int:
        """Seed of a phase's data order and subnet sampling, distinct per phase."""
        return self.config.seed * 1000 + PHASE_NAMES.index(phase.name)

    def train_data(self, phase: Phase, skip: int) -> tf.data.Dataset:
        return self.source.train(self.global_batch, max(self.config.resolutions),
                                 seed=self.phase_seed(phase), skip=skip)

    # ---------------------------------------------------------------- run
    def run(self) -> dict:
        """Run the configured phases; returns ``{phase: done record}`` for them."""
        results = {}
        for name in self.config.phases:
            phase = self.phases[name]
            plan = plan_phase(phase, self.config, self.info.n_train, self.global_batch)
            if self.is_done(name):
                self._restore_model(self.supernet, name)
                results[name] = self.read_done(name)
                print(f"[{name}] already finished in {self.config.workdir}; skipped", flush=True)
                continue
            run = _PhaseRun(self, plan)
            how = run.start()
            print(f"[{name}] {how}; {plan.epochs} epochs x {plan.steps_per_epoch} steps of "
                  f"{self.global_batch} images, lr {plan.lr:.4g} ({plan.warmup_steps} warm-up steps), "
                  f"{phase.dynamic_batch_size} subnet(s) per step, "
                  f"{self._kd_source() if run.trainer.teacher is not None else 'no KD'}", flush=True)
            started = time.time()
            run.train()
            results[name] = run.finish()
            print(f"[{name}] finished in {time.time() - started:.0f}s; train step traced "
                  f"{run.trace_count} time(s)", flush=True)
        if self.is_chief:
            save_supernet(self.supernet, self.info, self.config.workdir, extra={
                "phases_completed": [p for p in PHASE_NAMES if self.is_done(p)],
                "start": {**self.start, "classifier_reinitialized":
                          self.init_fit is not None and not self.init_fit.same_classes},
                "validation": {name: r["validation"] for name, r in results.items()},
            })
        return results


def format_results_table(validation: dict) -> str:
    """Markdown table of a phase's validation: subnet, resolution, MMACs, top-1, top-5."""
    lines = ["| subnet | resolution | MMACs | top-1 (%) | top-5 (%) |", "|---|---|---|---|---|"]
    for name, r in validation.items():
        lines.append(f"| {name} | {r['arch']['r'][0]} | {r['mmacs']:.1f} | {r['top1']:.1f} | {r['top5']:.1f} |")
    return "\n".join(lines)

