"""The accuracy predictor: the reference's MLP on one-hot arch features, in Keras.

3 hidden layers of 400 ReLU units, a linear output without bias, plus a constant base accuracy
(the training set's mean), as ``ofa/nas/accuracy_predictor/acc_predictor.py``. Accuracies are
fractions (top-1 / 100), as the reference trains it. The model is a plain Keras model (the base
accuracy is a ``Rescaling`` offset), saved as ``.keras`` with a JSON sidecar naming its space and
held-out metrics and the feature encoding it reads (``onehot``, ours; ``ofa_tutorial`` for the
reference tutorial's pretrained predictor, imported by ``ofa_tf.interop.import_predictor``);
no pickle. Arch predictions (:meth:`AccuracyPredictor.predict_batch`, the search's) run the
compiled forward pass of `ofa_tf.nas.evolution_kernel` on the features' set bits, far cheaper
than ``model.predict`` for a population (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import keras
import numpy as np
from scipy import stats

from ofa_tf.arch.space import SearchSpace
from ofa_tf.atomic_files import atomic_save, atomic_write_text
from ofa_tf.nas.encoding import ArchBatch, arch_encoder
from ofa_tf.nas.evolution_kernel import predict_bits

HIDDEN_SIZE, N_LAYERS = 400, 3
# L2 on the kernels: with hundreds of measured subnets (not the reference's 16K) the MLP otherwise
# memorizes them; on the demo's 300 subnets it cut held-out RMSE from 2.4 to 1.7 points and raised
# Kendall tau from 0.65 to 0.76 (mean of 3 splits).
KERNEL_L2 = 1e-4
def build_accuracy_model(n_dim: int, base_acc: float = 0.0, hidden_size: int = HIDDEN_SIZE,
                         n_layers: int = N_LAYERS, seed: int | None = None,
                         kernel_l2: float = KERNEL_L2) -> keras.Model:
    """The reference's MLP: ``n_layers`` x Dense(hidden, relu) -> Dense(1, no bias) + base_acc."""
    init = lambda i: keras.initializers.GlorotUniform(None if seed is None else seed + i)  # noqa: E731
    l2 = keras.regularizers.L2(kernel_l2) if kernel_l2 else None
    inputs = keras.Input((n_dim,), name="arch_features")
    x = inputs
    for i in range(n_layers):
        x = keras.layers.Dense(hidden_size, activation="relu", kernel_initializer=init(i),
                               kernel_regularizer=l2, name=f"hidden_{i}")(x)
    # Zero output weights: training starts from the base accuracy instead of a random function
    # of the arch, which small accuracy datasets (hundreds of subnets) cannot fully undo.
    x = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", kernel_regularizer=l2,
                           name="output")(x)
    x = keras.layers.Rescaling(1.0, offset=float(base_acc), name="base_accuracy")(x)
    return keras.Model(inputs, x, name="accuracy_predictor")


def ranking_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict:
    """RMSE (same units as the inputs) and Kendall's tau of predicted vs measured accuracy."""
    predicted, measured = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    tau = stats.kendalltau(predicted, measured).statistic if len(measured) > 1 else float("nan")
    return {"rmse": float(np.sqrt(np.mean((predicted - measured) ** 2))), "kendall_tau": float(tau),
            "n": int(len(measured))}


class AccuracyPredictor:
    """A trained accuracy model for one search space, reading the features of ``encoding``."""

    def __init__(self, space: SearchSpace, model: keras.Model, metrics: Mapping | None = None,
                 encoding: str | None = None):
        self.space, self.model = space, model
        self.arch_encoder = arch_encoder(space, encoding)   # None: the space family's own
        if model.input_shape[-1] != self.arch_encoder.n_dim:
            raise ValueError(f"accuracy model takes {model.input_shape[-1]} features; this space "
                             f"encodes to {self.arch_encoder.n_dim} ({self.arch_encoder.name} features)")
        self.metrics = dict(metrics or {})
        self.refresh_weights()

    def refresh_weights(self) -> None:
        """Copy the Keras weights into numpy arrays for the numpy and compiled forward passes."""
        dense = [layer for layer in self.model.layers if isinstance(layer, keras.layers.Dense)]
        self._hidden = [(np.asarray(layer.kernel, np.float32), np.asarray(layer.bias, np.float32))
                        for layer in dense[:-1]]
        self._output = np.asarray(dense[-1].kernel, np.float32)
        self.base_acc = float(self.model.get_layer("base_accuracy").offset)
        if not self._hidden:
            raise ValueError("accuracy model has no hidden layer; the predictor takes 1 or more")
        sizes = {kernel.shape[1] for kernel, _ in self._hidden} | {kernel.shape[0] for kernel, _ in self._hidden[1:]}
        if len(sizes) != 1 or self._output.shape[1] != 1:
            raise ValueError(f"accuracy model has hidden layers of sizes {sorted(sizes)} and {self._output.shape[1]} "
                             "outputs; the predictor takes hidden layers of one size and one output")
        (w1, b1), rest = self._hidden[0], self._hidden[1:]
        size = w1.shape[1]
        # (first kernel, first bias, the other hidden kernels and biases stacked, output, base)
        self.mlp_weights = (np.ascontiguousarray(w1), b1,
                            np.array([kernel for kernel, _ in rest], np.float32).reshape(len(rest), size, size),
                            np.array([bias for _, bias in rest], np.float32).reshape(len(rest), size),
                            np.ascontiguousarray(self._output[:, 0]), np.float32(self.base_acc))

    # ------------------------------------------------------------ prediction
    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Predicted accuracy (fraction) of each feature row: the model's forward pass in numpy."""
        x = np.asarray(features, np.float32)
        for kernel, bias in self._hidden:
            x = np.maximum(x @ kernel + bias, 0.0)
        return (x @ self._output)[:, 0] + np.float32(self.base_acc)

    def predict_batch(self, batch: ArchBatch) -> np.ndarray:
        """Predicted accuracy (fraction) of each arch, as the search scores it: the compiled
        forward pass on the arch's feature bits (`ofa_tf.nas.evolution_kernel.predict_bits`)."""
        bits = np.ascontiguousarray(self.arch_encoder.feature_terms.values(batch.genes).T)
        return predict_bits(bits, *self.mlp_weights)

    def predict_acc(self, archs: Sequence[Mapping]) -> np.ndarray:
        """Predicted accuracy (fraction) of arch dicts (the reference's method name)."""
        return self.predict_batch(self.arch_encoder.to_batch(archs))

    # ------------------------------------------------------------ training
    @classmethod
    def fit(cls, space: SearchSpace, archs: Sequence[Mapping], accuracies: Sequence[float], *,
            val_fraction: float = 0.2, epochs: int = 300, batch_size: int = 64,
            learning_rate: float = 1e-3, patience: int = 40, seed: int = 0,
            hidden_size: int = HIDDEN_SIZE, n_layers: int = N_LAYERS,
            verbose: int = 0) -> "AccuracyPredictor":
        """Train on a random ``1 - val_fraction`` of the (arch, accuracy) pairs; early stopping on
        the rest, whose RMSE and Kendall tau end up in ``.metrics`` (``val_*``)."""
        encoder = arch_encoder(space)
        features = encoder.encode(encoder.to_batch(archs))
        y = np.asarray(accuracies, np.float32)
        if len(y) != len(features):
            raise ValueError(f"{len(features)} archs but {len(y)} accuracies")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        order = np.random.default_rng(seed).permutation(len(y))
        n_val = int(round(len(y) * val_fraction))
        if n_val < 2 or len(y) - n_val < 2:
            raise ValueError(f"need at least 2 training and 2 validation pairs, got {len(y)} pairs "
                             f"with val_fraction {val_fraction}")
        val, train = order[:n_val], order[n_val:]
        keras.utils.set_random_seed(seed)
        model = build_accuracy_model(encoder.n_dim, float(y[train].mean()), hidden_size, n_layers, seed)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
        stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
        model.fit(features[train], y[train], validation_data=(features[val], y[val]), epochs=epochs,
                  batch_size=batch_size, shuffle=True, callbacks=[stop], verbose=verbose)
        predictor = cls(space, model)
        metrics = {"n_train": int(len(train)), "n_val": int(n_val), "seed": seed}
        for name, rows in (("train", train), ("val", val)):
            scores = ranking_metrics(predictor.predict_features(features[rows]), y[rows])
            metrics.update({f"{name}_rmse": scores["rmse"], f"{name}_kendall_tau": scores["kendall_tau"]})
        predictor.metrics = metrics
        return predictor

    # ------------------------------------------------------------ files
    @property
    def encoding(self) -> str:
        return self.arch_encoder.name

    def save(self, path: str) -> None:
        """``path`` (``.keras``) plus ``path`` + ``.json`` (space, encoding, metrics), both atomically."""
        if not path.endswith(".keras"):
            raise ValueError(f"accuracy predictor path must end with .keras, got {path!r}")
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        atomic_save(path, self.model.save, suffix=".keras")
        atomic_write_text(path + ".json", json.dumps(
            {"space": self.space.to_dict(), "encoding": self.encoding, "n_dim": self.arch_encoder.n_dim,
             "metrics": self.metrics},
            indent=2))

    @classmethod
    def load(cls, path: str) -> "AccuracyPredictor":
        for name in (path, path + ".json"):
            if not os.path.exists(name):
                raise FileNotFoundError(f"accuracy predictor file {name} does not exist "
                                        "(train one with python -m ofa_tf.nas.collect --train)")
        with open(path + ".json", encoding="utf-8") as f:
            meta = json.load(f)
        model = keras.saving.load_model(path, compile=False)
        # Predictors saved before encodings had names read their family's own features.
        return cls(SearchSpace.from_dict(meta["space"]), model, meta.get("metrics"), meta.get("encoding"))
