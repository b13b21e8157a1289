import json

import keras
import numpy as np
import pytest

from nas_synthetic import synthetic_accuracy, trained_synthetic_predictor
from ofa_tf.arch.space import SearchSpace
from ofa_tf.nas.accuracy_predictor import AccuracyPredictor, build_accuracy_model, ranking_metrics
from ofa_tf.nas.encoding import MobileNetArchEncoder


@pytest.fixture(scope="module")
def space():
    return SearchSpace.tiny()


@pytest.fixture(scope="module")
def predictor(space):
    return trained_synthetic_predictor(space)


def test_model_has_the_reference_shape():
    model = build_accuracy_model(145, base_acc=0.7)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [tuple(layer.kernel.shape) for layer in dense] == [(145, 400), (400, 400), (400, 400), (400, 1)]
    assert [layer.use_bias for layer in dense] == [True, True, True, False]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "relu", "linear"]
    np.testing.assert_allclose(model.predict(np.zeros((2, 145)), verbose=0), 0.7, rtol=1e-6)


def test_predictor_learns_a_known_structure_and_ranks_held_out_archs(space, predictor):
    m = predictor.metrics
    assert m["n_train"] == 640 and m["n_val"] == 160
    assert m["val_kendall_tau"] > 0.5, m
    unseen = [space.sample(s) for s in range(900_000, 900_300)]
    truth = synthetic_accuracy(space, unseen, noise=0.0)
    scores = ranking_metrics(predictor.predict_acc(unseen), truth)
    assert scores["kendall_tau"] > 0.5, scores
    assert scores["rmse"] < 0.012, scores  # the targets span about 0.3..0.55 (std 0.036)


def test_both_forward_passes_equal_keras(space, predictor):
    """predict_features (numpy, dense features) and predict_batch (compiled, on the set bits, in
    chunks of 256 rows) are the Keras model's forward pass, and predict_batch gives a row the same
    number in any chunk."""
    encoder = MobileNetArchEncoder(space)
    batch = encoder.to_batch([space.sample(s) for s in range(300)])
    features = encoder.encode(batch)
    keras = predictor.model.predict(features, verbose=0)[:, 0]
    np.testing.assert_allclose(predictor.predict_features(features), keras, rtol=1e-5, atol=1e-6)
    compiled = predictor.predict_batch(batch)
    np.testing.assert_allclose(compiled, keras, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(predictor.predict_batch(batch.take(np.arange(255, 300))), compiled[255:])


def test_save_and_load_round_trip(space, predictor, tmp_path):
    path = str(tmp_path / "acc.keras")
    predictor.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acc.keras", "acc.keras.json"]
    meta = json.loads((tmp_path / "acc.keras.json").read_text())
    assert meta["metrics"]["val_kendall_tau"] == predictor.metrics["val_kendall_tau"]
    loaded = AccuracyPredictor.load(path)
    archs = [space.sample(s) for s in range(20)]
    np.testing.assert_array_equal(loaded.predict_acc(archs), predictor.predict_acc(archs))
    assert loaded.space == space
    with pytest.raises(ValueError, match="must end with .keras"):
        predictor.save(str(tmp_path / "acc.h5"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AccuracyPredictor.load(str(tmp_path / "none.keras"))


def test_bad_training_input_is_refused(space):
    archs = [space.sample(s) for s in range(10)]
    with pytest.raises(ValueError, match="10 archs but 9 accuracies"):
        AccuracyPredictor.fit(space, archs, np.zeros(9))
    with pytest.raises(ValueError, match="at least 2 training and 2 validation"):
        AccuracyPredictor.fit(space, archs[:3], np.zeros(3))
    with pytest.raises(ValueError, match="encodes to"):
        AccuracyPredictor(SearchSpace.mobilenet_v3(1.0), build_accuracy_model(10))
