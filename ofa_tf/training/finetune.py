"""Fine-tune one subnet of a trained supernet as a plain Keras model, with ``model.fit``.

The subnet is activated, its BN statistics recalibrated (as OFA does before using a subnet)
and extracted with standard Keras layers; then it trains on the data set's training pipeline
with the reference's recipe: SGD with Nesterov momentum 0.9 and coupled L2 weight decay 3e-5
(not on BN or biases), label smoothing 0.1, cosine learning rate, and knowledge distillation
(loss = CE + ``kd_ratio`` x soft CE) from the supernet's largest subnet when the data set has
the supernet's classes. With other classes the classifier is re-initialized for them and there
is no KD (a teacher with other classes cannot distil). BN trains as usual: the model keeps the
statistics it trained with.

Checkpoints (model, teacher, optimizer and its step, dropout's RNG state and the history so far)
go to ``<out stem>.finetune/``; re-running continues at the last one, on the same data stream
(skipped to the step), and ends with the weights of an uninterrupted run. The result is
``<out>.keras`` + ``<out>.json`` (`ofa_tf.artifacts.save_subnet_model`), which
``python -m ofa_tf.export --model=<out>.keras`` exports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from ofa_tf.arch.value import Arch
from ofa_tf.artifacts import save_subnet_model
from ofa_tf.atomic_files import write_done
from ofa_tf.data import DatasetInfo, ImageSource
from ofa_tf.evaluation import BNRecalibrator, activated_subnet
from ofa_tf.nas.accuracy_dataset import EVAL_SPLITS
from ofa_tf.nas.subnet_measurement import CALIBRATION_SEED_OFFSET, eval_batches
from ofa_tf.networks import family_of
from ofa_tf.networks.extraction import extract_subnet
from ofa_tf.networks.weight_transfer import copy_weights_by_path, reinitialized_message
from ofa_tf.training.config import check_workdir_config
from ofa_tf.training.optimizer import ReferenceSGD
from ofa_tf.training.resumable_fit import fit_from_step
from ofa_tf.training.schedule import WarmupCosineDecay
from ofa_tf.training.trainer import distillation_loss, teacher_targets

# The learning rate per 64 images of the last progressive-shrinking phase (expand2), which the
# subnet's weights were last trained with; scaled linearly with the batch, as training scales it.
BASE_LR = 7.5e-3
BASE_BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune; the defaults are the reference's recipe (25 epochs, as its paper's
    shorter fine-tuning of specialized subnets)."""

    out: str                          # NAME.keras; checkpoints in NAME.finetune/
    epochs: int = 25
    batch_size: int = 64
    steps_per_epoch: int = 0          # cap (0: one pass over the training split)
    lr: float | None = None           # None: BASE_LR * batch_size / BASE_BATCH_SIZE
    warmup_epochs: int = 0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    n_calibration_images: int = 2000  # BN recalibration of the extracted subnet (and teacher)
    calibration_batch_size: int = 200
    eval_split: str = "val"
    eval_images: int = 0              # only the first this many of eval_split (0: all)
    eval_batch_size: int = 200
    seed: int = 0
    checkpoint_every: int = 500       # steps; 0 = at the end of each epoch only
    keep_checkpoints: int = 2
    tensorboard: bool = True
    verbose: int = 0                  # Keras' own progress output; one line per epoch is printed anyway
    overwrite: bool = False

    # What a checkpoint directory is bound to: resuming with other values would mix two runs.
    BOUND = ("epochs", "batch_size", "steps_per_epoch", "lr", "warmup_epochs", "momentum", "nesterov",
             "weight_decay", "label_smoothing", "kd_ratio", "n_calibration_images", "seed")

    def __post_init__(self):
        problems = []
        if not str(self.out).endswith(".keras"):
            problems.append(f"out must be a .keras path, got {self.out!r}")
        for name in ("epochs", "batch_size", "calibration_batch_size", "eval_batch_size", "keep_checkpoints"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps_per_epoch", "warmup_epochs", "weight_decay", "kd_ratio", "n_calibration_images",
                     "checkpoint_every", "eval_images"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr is not None and not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.momentum < 1:
            problems.append("label_smoothing and momentum must be in [0, 1)")
        if self.eval_split not in EVAL_SPLITS:
            problems.append(f"eval_split {self.eval_split!r} is not one of {EVAL_SPLITS}")
        if problems:
            raise ValueError("invalid fine-tuning settings: " + "; ".join(problems))

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else BASE_LR * self.batch_size / BASE_BATCH_SIZE

    @property
    def state_dir(self) -> str:
        return os.path.splitext(self.out)[0] + ".finetune"

    def bound_fields(self) -> dict:
        return {name: getattr(self, name) for name in self.BOUND}


def check_outputs(config: FinetuneConfig) -> None:
    """Refuse a finished output without ``overwrite``, and outputs that cannot be written where
    they are asked for. Creates nothing."""
    out, state = config.out, config.state_dir
    if os.path.isdir(out):
        raise ValueError(f"{out} is a directory, not a .keras file")
    if os.path.exists(out) and not config.overwrite:
        raise FileExistsError(f"{out} already exists (a finished fine-tune; pass --overwrite to run it again)")
    if os.path.exists(state) and not os.path.isdir(state):
        raise ValueError(f"{state} is a file; the fine-tune keeps its checkpoints in that directory")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {out}: {parent} is a file")


class DistillingClassifier(keras.Model):
    """Trains ``student`` (a plain Keras classifier) with label-smoothed CE, plus ``kd_ratio`` x
    soft CE to a frozen ``teacher`` when one is given; evaluates top-1 and plain CE. The student
    is what you keep."""

    def __init__(self, student, teacher=None, kd_ratio: float = 1.0, label_smoothing: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.student, self.teacher = student, teacher if kd_ratio > 0 else None
        if self.teacher is not None:
            self.teacher.trainable = False
        self.kd_ratio, self.label_smoothing = float(kd_ratio), float(label_smoothing)
        self.n_classes = int(student.outputs[0].shape[-1])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.kd_tracker = keras.metrics.Mean(name="kd_loss")
        self.top1 = keras.metrics.SparseCategoricalAccuracy(name="top1")

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # Slots built now, not in the first trace (which would then trace the step twice).
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.student.trainable_variables)

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.kd_tracker, self.top1]

    def train_step(self, data):
        images, labels = data[0], tf.cast(tf.reshape(data[1], [-1]), tf.int32)
        variables = self.student.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.student(images, training=True)
            soft = teacher_targets(self.teacher, images) if self.teacher is not None else None
            total, kd = distillation_loss(tf.one_hot(labels, self.n_classes), logits, soft, self.kd_ratio,
                                          self.label_smoothing)
        self.optimizer.apply(tape.gradient(total, variables), variables)
        self.loss_tracker.update_state(total)
        self.kd_tracker.update_state(kd)
        self.top1.update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, labels = data[0], tf.cast(tf.reshape(data[1], [-1]), tf.int32)
        logits = self.student(images, training=False)
        self.loss_tracker.update_state(tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)))
        self.top1.update_state(labels, logits)
        return {"loss": self.loss_tracker.result(), "top1": self.top1.result()}


def recalibrated_subnet(supernet, arch: Arch, batches, n_images: int, name: str | None = None,
                        recalibrator: BNRecalibrator | None = None):
    """``arch`` extracted as a plain Keras model after recalibrating its BN statistics on
    ``n_images`` of ``batches`` (0: keep the supernet's); the supernet is left as it was.
    Pass one ``recalibrator`` for several subnets (its compiled step is traced once)."""
    with activated_subnet(supernet, arch):
        if n_images:
            (recalibrator or BNRecalibrator(supernet)).recalibrate(batches, n_images)
        return extract_subnet(supernet, arch, name=name)


def with_new_classifier(model, supernet, arch: Arch, n_classes: int):
    """``model`` (a subnet of ``supernet``) rebuilt for ``n_classes``, every layer's weights
    copied except the output layer's (the classifier), which keeps its fresh initialization
    (also for the same number of other classes). Returns (model, the classifier's name)."""
    layout = dataclasses.replace(supernet.layout, n_classes=n_classes)
    rebuilt = family_of(supernet.space).build_static_model(
        layout, arch, arch.resolution, bn_momentum=supernet.bn_momentum, bn_epsilon=supernet.bn_epsilon,
        name=model.name)
    classifier = rebuilt.layers[-1]   # functional layers come in topological order
    copy_weights_by_path(model, rebuilt, skip=classifier.weights)
    return rebuilt, classifier.name


class _EpochEnd(keras.callbacks.Callback):
    """Checkpoint every ``checkpoint_every`` steps; at each epoch end record the epoch in the
    history, print one progress line, then checkpoint (history and weights saved together)."""

    def __init__(self, run: "SubnetFinetuner"):
        super().__init__()
        self.run = run
        self.started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        every, step = self.run.config.checkpoint_every, self.run.step
        if every and step % every == 0 and step % self.run.steps_per_epoch:
            self.run.save()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        entry = {"epoch": epoch + 1, "step": self.run.step,
                 **{k: float(v) for k, v in (logs or {}).items()}}
        self.run.record(entry)
        self.run.log(f"epoch {epoch + 1}/{self.run.total_steps // self.run.steps_per_epoch} (step {self.run.step}/{self.run.total_steps},"
                     f" {time.time() - self.started:.0f}s): loss {entry.get('loss', float('nan')):.4f}"
                     + (f", kd {entry['kd_loss']:.4f}" if self.run.teacher is not None else "")
                     + f", train top-1 {100 * entry.get('top1', float('nan')):.1f} %, "
                     f"val top-1 {100 * entry.get('val_top1', float('nan')):.1f} %")
        self.run.save()


class SubnetFinetuner:
    """Fine-tunes ``arch`` of ``supernet`` on ``source``; see the module docstring.

    ``supernet_info`` is the supernet's data (classes, normalization); ``source`` may have other
    classes. ``dataset`` / ``data_dir`` name the source in the saved JSON (for export), and
    ``supernet_path`` where the supernet came from.
    """

    def __init__(self, supernet, supernet_info: DatasetInfo, arch: Mapping, source: ImageSource,
                 config: FinetuneConfig, *, dataset: str | None = None, data_dir: str | None = None,
                 supernet_path: str | None = None):
        self.supernet, self.config, self.source = supernet, config, source
        self.arch = supernet.space.arch(arch)
        self.info: DatasetInfo = source.info
        self.dataset, self.data_dir, self.supernet_path = dataset, data_dir, supernet_path
        self.same_classes = self.info.class_names == supernet_info.class_names
        self.steps_per_epoch = max(1, self.info.n_train // config.batch_size)
        if config.steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, config.steps_per_epoch)
        self.total_steps = (config.epochs + config.warmup_epochs) * self.steps_per_epoch
        self.messages: list[str] = []
        self.teacher = self.model = None

    # -------------------------------------------------------------- checks
    def check_outputs(self) -> None:
        check_outputs(self.config)

    def claim_state(self) -> None:
        """Check the outputs, then bind the checkpoint directory to these settings (a finished
        run started again with ``overwrite`` first loses its checkpoints); refuses checkpoints
        made with other settings, naming them."""
        config = self.config
        self.check_outputs()
        if config.overwrite and os.path.exists(config.out):
            shutil.rmtree(config.state_dir, ignore_errors=True)
        check_workdir_config(config.state_dir, self.bound_fields(),
                             remedy="Use another --out, or rerun with the settings it was started with.")

    def bound_fields(self) -> dict:
        return json.loads(json.dumps({**self.config.bound_fields(), "arch": self.arch.to_dict(),
                                      "supernet": self.supernet_path, "class_names": self.info.class_names}))

    # -------------------------------------------------------------- state
    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def log(self, message: str) -> None:
        self.messages.append(message)
        print(f"[finetune] {message}", flush=True)

    def record(self, entry: dict) -> None:
        history = [e for e in self.history if e["epoch"] != entry["epoch"]] + [entry]
        self._history.assign(json.dumps(sorted(history, key=lambda e: e["epoch"])))

    @property
    def history(self) -> list:
        return json.loads(self._history.numpy().decode("utf-8"))

    def save(self) -> None:
        write_done(self.manager.save(checkpoint_number=self.step))

    # -------------------------------------------------------------- data
    def train_data(self, step: int):
        return self.source.train(self.config.batch_size, self.arch.resolution, seed=self.config.seed,
                                 skip=step * self.config.batch_size)

    def val_data(self):
        return eval_batches(self.source, self.config.eval_split, self.config.eval_batch_size,
                            self.arch.resolution, self.config.eval_images)

    def _calibration(self):
        batch = min(self.config.calibration_batch_size, max(1, self.config.n_calibration_images))
        return self.source.train(batch, self.arch.resolution, seed=self.config.seed + CALIBRATION_SEED_OFFSET)

    # -------------------------------------------------------------- build
    def build(self) -> None:
        """The student (and teacher), optimizer and checkpoint; restores the last checkpoint."""
        config, space = self.config, self.supernet.space
        self.claim_state()
        keras.utils.set_random_seed(config.seed)   # the new classifier and dropout follow --seed
        n_cal = config.n_calibration_images
        recalibrator = BNRecalibrator(self.supernet) if n_cal else None
        student = recalibrated_subnet(self.supernet, self.arch, self._calibration(), n_cal,
                                      recalibrator=recalibrator)
        how = (f"subnet extracted, BN recalibrated on {n_cal} training images" if n_cal
               else "subnet extracted with the supernet's BN statistics")
        if not self.same_classes:
            student, classifier = with_new_classifier(student, self.supernet, self.arch, self.info.num_classes)
            how += ("; the data set's classes are not the supernet's: "
                    + reinitialized_message(classifier, self.supernet.n_classes, self.info.num_classes))
        self.reinitialized = not self.same_classes
        self.student = student
        use_kd = self.same_classes and config.kd_ratio > 0
        if use_kd:
            largest = space.arch(space.largest(), self.arch.resolution)
            self.teacher = recalibrated_subnet(self.supernet, largest, self._calibration(), n_cal,
                                               name="teacher", recalibrator=recalibrator)
        kd = (f"KD from the supernet's largest subnet (kd_ratio {config.kd_ratio:g})" if use_kd
              else "no KD" + ("" if self.same_classes else " (the teacher has other classes)"))
        self.model = DistillingClassifier(student, self.teacher, config.kd_ratio, config.label_smoothing)
        schedule = WarmupCosineDecay(config.base_lr, decay_steps=config.epochs * self.steps_per_epoch,
                                     warmup_steps=config.warmup_epochs * self.steps_per_epoch)
        self.optimizer = ReferenceSGD(schedule, momentum=config.momentum, nesterov=config.nesterov,
                                      l2_decay=config.weight_decay)
        self.model.compile(optimizer=self.optimizer, jit_compile=False)
        self._history = tf.Variable("[]", dtype=tf.string, trainable=False)
        rng = [layer.seed_generator.state for layer in student.layers
               if getattr(layer, "seed_generator", None) is not None]
        parts = {"model": student, "optimizer": self.optimizer, "rng": rng, "history": self._history}
        if self.teacher is not None:
            parts["teacher"] = self.teacher
        self.checkpoint = tf.train.Checkpoint(**parts)
        self.manager = tf.train.CheckpointManager(self.checkpoint, config.state_dir,
                                                  max_to_keep=config.keep_checkpoints)
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            how = f"resumed at step {self.step} from {config.state_dir}"
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                before = self.model.evaluate(self.val_data(), verbose=0, return_dict=True)
            self.record({"epoch": 0, "step": 0, "val_loss": float(before["loss"]),
                         "val_top1": float(before["top1"])})
            how += f"; val top-1 before fine-tuning {100 * before['top1']:.1f} %"
            self.save()
        self.log(f"{how}; {kd}")

    # -------------------------------------------------------------- run
    def run(self) -> dict:
        """Build (unless built), train to the end, save ``config.out`` + JSON; returns the
        fine-tune's metadata as saved."""
        if self.model is None:
            self.build()
        config = self.config
        self.log(f"{config.epochs} epochs ({config.warmup_epochs} warm-up) x {self.steps_per_epoch} steps "
                 f"of {config.batch_size} images at {self.arch.resolution} px, lr {config.base_lr:.4g} cosine, "
                 f"label smoothing {config.label_smoothing:g}, weight decay {config.weight_decay:g}")
        callbacks = [_EpochEnd(self)]
        if config.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(os.path.join(config.state_dir, "logs"),
                                                         update_freq=max(1, min(100, self.steps_per_epoch))))
        with warnings.catch_warnings():   # Keras warns each time a finite validation set ends
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            fit_from_step(self.model, self.train_data, lambda: self.step, self.total_steps, self.steps_per_epoch,
                          callbacks=callbacks, verbose=config.verbose, validation_data=self.val_data())
        history = self.history
        extra = {"finetune": {
            "supernet": self.supernet_path, "steps": self.step, "steps_per_epoch": self.steps_per_epoch,
            "classifier_reinitialized": self.reinitialized, "kd": self.teacher is not None,
            "settings": {**config.bound_fields(), "lr": config.base_lr, "eval_split": config.eval_split,
                         "eval_images": config.eval_images,
                         "optimizer": "ReferenceSGD (torch SGD semantics)", "schedule": "cosine"},
            "val_top1_before": history[0].get("val_top1") if history and history[0]["epoch"] == 0 else None,
            "val_top1": history[-1].get("val_top1") if history else None,
            "history": history}}
        save_subnet_model(self.student, config.out, arch=self.arch.to_dict(), space=self.supernet.space,
                          info=self.info, dataset=self.dataset, data_dir=self.data_dir, extra=extra)
        self.log(f"saved {config.out} (val top-1 {100 * (extra['finetune']['val_top1'] or np.nan):.1f} %)")
        return extra["finetune"]
