"""One progressive-shrinking phase as a Keras model, so ``model.fit`` drives it.

Each step: sample a resolution and resize the batch to it; get the frozen
teacher's soft labels once; then for each of the phase's ``dynamic_batch_size``
subnets, sample it inside the compiled step, compute label-smoothed CE plus
``kd_ratio`` x soft CE against the teacher, and add its gradients; finally one
optimizer update with the summed gradients (as the reference does).

Under a mixed-precision policy (`ofa_tf.training.precision`) the networks compute in float16
or bfloat16; logits are cast to float32 before the teacher's softmax, the KD term and the loss,
and with a loss-scaling optimizer the loss is scaled before the gradient (its ``apply``
unscales, and skips a step whose gradients overflow).

With ``jit_compile`` (phases that train one fixed subnet only), each resolution's forward and
backward pass is one XLA cluster, compiled on first use with the subnet's shapes static
(`ofa_tf.layers.common.static_choices`); the step picks the sampled resolution's cluster.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ofa_tf.layers.common import static_choices
from ofa_tf.training.phases import Phase
from ofa_tf.training.precision import scale_loss
from ofa_tf.training.sampling import SubnetSampler


def soft_cross_entropy(soft_targets, logits):
    """Mean over the batch of -sum(p_teacher * log_softmax(student)), in float32."""
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.reduce_sum(-soft_targets * tf.nn.log_softmax(logits), axis=-1))


def teacher_targets(teacher, images):
    """The frozen teacher's softmax, what the student distils towards (no gradient)."""
    return tf.stop_gradient(tf.nn.softmax(tf.cast(teacher(images, training=False), tf.float32)))


def distillation_loss(one_hot, logits, soft_targets, kd_ratio: float, label_smoothing: float):
    """OFA's training loss: label-smoothed CE, plus ``kd_ratio`` x soft CE to the teacher's
    ``soft_targets`` when given (None: no KD), in float32. Returns (total, KD term)."""
    logits = tf.cast(logits, tf.float32)
    loss = tf.reduce_mean(keras.losses.categorical_crossentropy(
        one_hot, logits, from_logits=True, label_smoothing=label_smoothing))
    kd = soft_cross_entropy(soft_targets, logits) if soft_targets is not None else tf.zeros(())
    return loss + kd_ratio * kd, kd


def _across_workers(strategy) -> bool:
    """Whether ``strategy`` spans several worker processes (as Keras tells them apart)."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


class OFATrainer(keras.Model):
    """Trains ``supernet`` through one phase; the supernet itself is what you keep."""

    def __init__(self, supernet, phase: Phase, teacher=None, kd_ratio=1.0, label_smoothing=0.1,
                 resolutions=None, seed=0, jit_compile=False, **kwargs):
        super().__init__(**kwargs)
        if phase.use_kd and teacher is None and kd_ratio > 0:
            raise ValueError(f"phase {phase.name!r} distils from a teacher; pass teacher= "
                             "(the network from the teacher phase) or kd_ratio=0")
        if jit_compile and (phase.is_elastic or phase.dynamic_batch_size != 1):
            raise ValueError(f"jit_compile needs a phase that trains one fixed subnet (XLA compiles static "
                             f"shapes); phase {phase.name!r} samples a subnet every step")
        self.jit_compile_subnet = bool(jit_compile)
        self._compiled = {}     # resolution -> its XLA-compiled forward and backward pass
        self.supernet, self.phase = supernet, phase
        self.teacher = teacher if phase.use_kd and kd_ratio > 0 else None
        if self.teacher is not None:
            self.teacher.trainable = False
        self.kd_ratio, self.label_smoothing = float(kd_ratio), float(label_smoothing)
        space = supernet.space
        self.seed_generator = keras.random.SeedGenerator(seed, name="sampler_seed")
        self.sampler = SubnetSampler(space, phase.ks_list, phase.expand_ratio_list, phase.depth_list,
                                     resolutions or space.resolutions, self.seed_generator, phase.width_list)
        # Non-elastic phases train one fixed network: the largest of the phase.
        self.set_phase_subnet()
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.kd_tracker = keras.metrics.Mean(name="kd_loss")
        self.top1 = keras.metrics.SparseCategoricalAccuracy(name="top1")
        self.trace_count = 0

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # Build the optimizer's slots now: created during the first trace, they would make
        # tf.function trace the train step a second time.
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.supernet.trainable_variables)

    def set_phase_subnet(self):
        """Activate the phase's largest subnet (what a non-elastic phase trains)."""
        self.supernet.set_active_subnet(**self.phase.largest_arch(self.supernet.space))

    def call(self, inputs, training=False):
        return self.supernet(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.kd_tracker, self.top1]

    def compute_gradients(self, images, labels):
        """Summed gradients of the step's sampled subnets (nothing is applied).

        Returns (mean loss, mean KD loss, gradients aligned with
        ``supernet.trainable_variables``, float32 logits of the last subnet). With a
        loss-scaling optimizer the gradients are of the scaled loss (``apply`` unscales).
        """
        self.trace_count += 1          # Python side effect: runs once per trace
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        one_hot = tf.one_hot(labels, self.supernet.n_classes)
        if self.jit_compile_subnet:
            index = self.sampler.sample_resolution_index()
            total, kd, logits, grads = tf.switch_case(index, [
                lambda r=r: self._compiled_pass(r)(images, one_hot) for r in self.sampler.resolutions])
            return total, kd, grads, logits, labels
        resolution = self.sampler.sample_resolution()
        images = tf.image.resize(images, tf.stack([resolution, resolution]))
        soft_targets = None
        if self.teacher is not None:
            soft_targets = teacher_targets(self.teacher, images)

        def one_subnet():
            if self.phase.is_elastic:
                self.supernet.assign_active_subnet(**self.sampler.sample_arch())
            return self._subnet_gradients(images, one_hot, soft_targets)

        n = self.phase.dynamic_batch_size
        total, kd, logits, grads = one_subnet()
        if n > 1:
            # The other subnets run in a loop, not unrolled, so the traced graph stays one subnet big.
            # One iteration at a time: each iteration assigns the choice variables that the
            # previous one's forward and backward pass read (overlapping them would mix subnets).
            def body(i, total, kd, logits, grads):
                t, k, lg, g = one_subnet()
                return i + 1, total + t, kd + k, lg, [a + b for a, b in zip(grads, g)]

            _, total, kd, logits, grads = tf.while_loop(
                lambda i, *_: i < n, body, (tf.constant(1), total, kd, logits, grads), parallel_iterations=1,
                shape_invariants=(tf.TensorShape([]), tf.TensorShape([]), tf.TensorShape([]),
                                  logits.shape, [g.shape for g in grads]))
        return total / n, kd / n, grads, logits, labels

    def _subnet_gradients(self, images, one_hot, soft_targets):
        """(loss, KD loss, float32 logits, gradients) of the active subnet on ``images``."""
        variables = self.supernet.trainable_variables
        # Each replica's loss is a mean over its share of the batch and the optimizer sums the
        # replicas' gradients, so dividing here gives the gradient of the global-batch mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = tf.cast(self.supernet(images, training=True), tf.float32)
            total, kd = distillation_loss(one_hot, logits, soft_targets, self.kd_ratio, self.label_smoothing)
            # (compute_gradients may run before compile: no optimizer, no loss scaling.)
            scaled = scale_loss(getattr(self, "optimizer", None), total / replicas)
        grads = tape.gradient(scaled, variables)
        # A variable the graph never uses gets a zero gradient (torch's zero_grad() semantics).
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        return total, kd, logits, grads

    def _compiled_pass(self, resolution: int):
        """The XLA-compiled resize, teacher targets, forward and backward pass at ``resolution``,
        traced with the phase's subnet as constants."""
        if resolution not in self._compiled:
            def forward_backward(images, one_hot):
                with tf.init_scope():
                    self.set_phase_subnet()   # what the trace bakes in, whatever was validated last
                with static_choices():
                    images = tf.image.resize(images, (resolution, resolution))
                    soft = teacher_targets(self.teacher, images) if self.teacher is not None else None
                    return self._subnet_gradients(images, one_hot, soft)

            self._compiled[resolution] = tf.function(forward_backward, jit_compile=True)
        return self._compiled[resolution]

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """What Keras does before ``fit``, without its cross-replica reduce of the first batch.

        Keras 3 reduces that distributed batch eagerly only to read its shapes; under
        ``MultiWorkerMirroredStrategy`` the eager reduce fails ("Attempt to convert a value
        (PerReplica...)", keras-team/keras#20585), so ``fit`` could not start on several
        workers. The first local replica's batch has the same shapes."""
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = tf.nest.map_structure(
                    lambda v: (self._distribute_strategy.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v), first)
                break
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def train_step(self, data):
        images, labels = data[0], data[1]
        loss, kd, grads, logits, labels = self.compute_gradients(images, labels)
        self.optimizer.apply(grads, self.supernet.trainable_variables)
        self.loss_tracker.update_state(loss)
        self.kd_tracker.update_state(kd)
        self.top1.update_state(labels, logits)
        logs = {m.name: m.result() for m in self.metrics}
        if _across_workers(tf.distribute.get_strategy()):
            # Keras averages a multi-worker step's logs with reduce(MEAN, axis=0), which a
            # scalar does not have: one-element vectors average to the same scalar.
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs
