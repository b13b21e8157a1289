"""SGD as the reference trains (PyTorch semantics), one fused kernel per variable."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable("ofa_tf")
class ReferenceSGD(keras.optimizers.Optimizer):
    """SGD with momentum exactly as ``torch.optim.SGD`` (which OFA trains with).

    The momentum buffer accumulates raw gradients (``buf = m * buf + g``) and the
    learning rate is applied at update time, so a schedule changes the step size
    immediately; L2 weight decay is added to the gradient (coupled), and skipped
    for variables whose layer or weight name contains one of ``no_decay_keywords``
    (OFA: BN parameters and biases). Keras' own SGD scales the buffer by the
    learning rate and decays weights decoupled, which differs under a schedule.

    Each update is a single ``ResourceApplyMomentum`` kernel, which keeps the
    fixed per-step cost of updating all supernet weights small.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=True, l2_decay=0.0,
                 no_decay_keywords=("bn", "bias"), name="reference_sgd", **kwargs):
        if kwargs.get("weight_decay") is not None:
            raise ValueError("ReferenceSGD takes l2_decay (coupled, as PyTorch), not weight_decay")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if l2_decay < 0:
            raise ValueError(f"l2_decay must be >= 0, got {l2_decay!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        self.l2_decay = float(l2_decay)
        self.no_decay_keywords = tuple(no_decay_keywords)

    def decays(self, variable) -> bool:
        """Whether ``variable`` gets L2 decay: its layer and weight names hold no keyword."""
        tail = "/".join(variable.path.split("/")[-2:])
        return not any(k in tail for k in self.no_decay_keywords)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]
        self._decay = [self.decays(v) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        var = variable.value if isinstance(variable, keras.Variable) else variable
        gradient = tf.cast(gradient, var.dtype)
        if self.l2_decay and self._decay[index]:
            gradient = gradient + tf.cast(self.l2_decay, var.dtype) * var
        momentum = self.momentums[index]
        accum = momentum.value if isinstance(momentum, keras.Variable) else momentum
        tf.raw_ops.ResourceApplyMomentum(
            var=var.handle, accum=accum.handle, lr=tf.cast(learning_rate, var.dtype), grad=gradient,
            momentum=tf.cast(self.momentum, var.dtype), use_nesterov=self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "l2_decay": self.l2_decay, "no_decay_keywords": list(self.no_decay_keywords)}
