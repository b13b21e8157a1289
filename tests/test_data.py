"""Tests for ofa_tf/data/: the embedded demo set, image folders, the TFDS error paths and
the preprocessing the trainer and the exporter rely on."""

import json
import logging
import sys

import numpy as np
import pytest
import tensorflow as tf

from ofa_tf import data

CLASS_COLOURS = {"cat": (220, 30, 30), "dog": (30, 220, 30), "eel": (30, 30, 220)}


@pytest.fixture(scope="module")
def demo():
    return data.load_dataset("demo")


@pytest.fixture(scope="module")
def small_demo():
    """A few hundred images: enough for pipeline tests, rendered in well under a second."""
    return data.DemoSource(n_train=96, n_val=40)


def _first_batch(ds):
    return [t.numpy() for t in next(iter(ds))]


# ----------------------------------------------------------------------------- DatasetInfo


def test_dataset_info_round_trips_through_json():
    info = data.DatasetInfo("x", ["a", "b"], 10, 4, (0.5, 0.4, 0.3), (0.2, 0.2, 0.25))
    d = json.loads(json.dumps(info.to_dict()))
    assert data.DatasetInfo.from_dict({**d, "added_later": 1}) == info
    assert info.num_classes == 2
    with pytest.raises(ValueError, match="3 values"):
        data.DatasetInfo("x", ["a"], 1, 1, (0.5, 0.5), (1, 1, 1))


# ----------------------------------------------------------------------------- demo


def test_demo_shapes_classes_and_info(demo):
    a = demo.arrays
    assert a.x_train.shape == (6000, 64, 64, 3) and a.x_train.dtype == np.uint8
    assert a.x_val.shape == (1500, 64, 64, 3) and a.x_val.dtype == np.uint8
    assert np.bincount(a.y_val, minlength=10).tolist() == [150] * 10
    assert np.bincount(a.y_train, minlength=10).min() > 500
    assert not a.x_train.flags.writeable  # the cached arrays are shared
    info = demo.info
    assert (info.name, info.n_train, info.n_val) == ("demo", 6000, 1500)
    assert info.class_names == [str(k) for k in range(10)]
    assert all(0.2 < m < 0.6 for m in info.mean) and all(0.1 < s < 0.4 for s in info.std)


def test_demo_train_and_val_come_from_disjoint_source_digits(demo):
    from sklearn.datasets import load_digits

    a = demo.arrays
    target = load_digits().target
    train_digits = set(a.source_train) | set(a.fragment_train)
    val_digits = set(a.source_val) | set(a.fragment_val)
    assert not train_digits & val_digits
    assert len(set(a.source_val)) == 300 and len(set(a.source_train)) == 1797 - 300
    np.testing.assert_array_equal(a.y_train, target[a.source_train])
    np.testing.assert_array_equal(a.y_val, target[a.source_val])
    assert np.bincount(a.source_train).max() <= 5  # several renderings a digit, evenly


def test_demo_generation_is_deterministic():
    render = data.demo._render_demo.__wrapped__  # bypass the per-process cache
    first, again, other = render(60, 30, 5), render(60, 30, 5), render(60, 30, 6)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(first.x_train, other.x_train)


def test_demo_is_hard_for_raw_pixel_baselines_but_learnable(demo):
    """Documents the difficulty: linear models on raw pixels stay far below 90 % (a small CNN
    reaches ~80 %), yet above chance (10 %)."""
    from sklearn.linear_model import RidgeClassifier

    a = demo.arrays
    x_train = a.x_train.reshape(len(a.x_train), -1).astype(np.float32) / 255
    x_val = a.x_val.reshape(len(a.x_val), -1).astype(np.float32) / 255
    centroids = np.stack([x_train[a.y_train == k].mean(0) for k in range(10)])
    dist = (centroids**2).sum(1)[None] - 2 * x_val @ centroids.T
    centroid_acc = float((dist.argmin(1) == a.y_val).mean())

    def grey16(x):  # 16x16 grey, per-image standardized: removes tint and brightness
        g = x.reshape(len(x), 16, 4, 16, 4, 3).mean(axis=(2, 4, 5)).reshape(len(x), -1)
        return (g - g.mean(1, keepdims=True)) / (g.std(1, keepdims=True) + 1e-6)

    ridge = RidgeClassifier(alpha=1000.0).fit(grey16(x_train), a.y_train)
    ridge_acc = float((ridge.predict(grey16(x_val)) == a.y_val).mean())
    print(f"demo val accuracy: nearest centroid (raw RGB) {centroid_acc:.3f}, "
          f"ridge (16x16 grey) {ridge_acc:.3f}, chance 0.100")
    assert centroid_acc < 0.9 and ridge_acc < 0.9
    assert ridge_acc > 0.14


def test_train_pipeline_is_deterministic_given_the_seed(small_demo):
    def batch(seed, **kw):
        return _first_batch(small_demo.train(batch_size=8, image_size=48, seed=seed, **kw))

    x, y = batch(0)
    assert x.shape == (8, 48, 48, 3) and x.dtype == np.float32
    assert y.shape == (8,) and y.dtype == np.int32
    x2, y2 = batch(0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = batch(1)
    assert not np.array_equal(x, x3)
    # A resumed stream (skip = examples already used) continues exactly where it stopped.
    second = _first_batch(small_demo.train(8, 48, seed=0).skip(1))
    for resumed, expected in zip(batch(0, skip=8), second):
        np.testing.assert_array_equal(resumed, expected)


def test_train_epoch_is_a_permutation_and_val_covers_each_image_once(small_demo):
    labels = np.concatenate([y.numpy() for _, y in small_demo.train(
        batch_size=32, image_size=32, seed=3, repeat=False)])
    assert sorted(labels) == sorted(small_demo.arrays.y_train)
    val_labels = np.concatenate([y.numpy() for _, y in small_demo.val(batch_size=16,
                                                                       image_size=32)])
    np.testing.assert_array_equal(val_labels, small_demo.arrays.y_val)  # fixed order


# ----------------------------------------------------------------------------- preprocessing


def test_train_preprocessing_shapes_and_ranges():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (50, 70, 3)), tf.uint8)
    out = data.preprocess_for_train(image, 32, tf.constant([1, 2], tf.int64),
                                    mean=(0, 0, 0), std=(1, 1, 1)).numpy()
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    mean, std = np.array(data.IMAGENET_MEAN), np.array(data.IMAGENET_STD)
    out = data.preprocess_for_train(image, 40, tf.constant([3, 4], tf.int64)).numpy()
    assert out.shape == (40, 40, 3)
    assert np.all(out >= -mean / std - 1e-5) and np.all(out <= (1 - mean) / std + 1e-5)


def test_train_flip_is_a_parameter():
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (24, 24, 3)), tf.uint8)

    def run(seed, flip):  # scale (1, 1): the crop is the whole image, so only the flip varies
        return data.preprocess_for_train(image, 24, tf.constant([seed, 0], tf.int64),
                                         mean=(0, 0, 0), std=(1, 1, 1), scale=(1.0, 1.0),
                                         ratio=(1.0, 1.0), flip=flip).numpy()

    plain = image.numpy() / 255.0
    for seed in range(6):
        np.testing.assert_allclose(run(seed, False), plain, atol=1e-6)
    flipped = [np.allclose(run(seed, True), plain[:, ::-1], atol=1e-6) for seed in range(16)]
    assert any(flipped) and not all(flipped)


def test_eval_centre_crop_is_exact_when_no_resize_is_needed():
    # Shorter side 64 = ceil(56 / 0.875): no resize, the crop is rows 4:60, cols 20:76.
    rows, cols = np.meshgrid(np.arange(64), np.arange(96), indexing="ij")
    image = np.stack([rows * 3, cols * 2, (rows + cols) % 256], -1).astype(np.uint8)
    assert data.eval_resize_size(56) == 64 and data.eval_resize_size(224) == 256
    out = data.preprocess_for_eval(tf.constant(image), 56, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(out.numpy() * 255, image[4:60, 20:76], atol=1e-3)


def test_eval_resizes_the_shorter_side_then_crops_the_centre():
    # Portrait 192x128 → 96x64, crop rows 20:76, cols 4:60 ↔ original rows 40:152, cols 8:120.
    image = np.zeros((192, 128, 3), np.uint8)
    image[40:152, 8:120] = 255
    out = data.preprocess_for_eval(tf.constant(image), 56, mean=(0, 0, 0), std=(1, 1, 1))
    out = out.numpy()
    assert out.shape == (56, 56, 3)
    np.testing.assert_allclose(out[1:-1, 1:-1], 1.0, atol=1e-5)  # the rim blends with black
    np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-5)  # centred


# ----------------------------------------------------------------------------- image folders


def _write(path, image, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_png if fmt == "png" else tf.io.encode_jpeg
    path.write_bytes(encode(tf.constant(image, tf.uint8)).numpy())


def _make_folder(root, classes=tuple(CLASS_COLOURS), n_train=3, n_val=2):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for name in classes:
            for i in range(n):
                shape = (20 + 4 * i, 28 + 2 * i, 3)
                image = np.clip(rng.normal(CLASS_COLOURS[name], 10, shape), 0, 255)
                fmt = "png" if i % 2 else "jpg"
                _write(root / split / name / f"{i}.{fmt}", image, fmt)
    return root


@pytest.fixture()
def folder(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    good_jpeg = (root / "train" / "cat" / "0.jpg").read_bytes()
    (root / "train" / "cat" / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (root / "train" / "dog" / "x.jpg").write_text("this is not an image\n")
    eel_jpeg = (root / "train" / "eel" / "0.jpg").read_bytes()
    (root / "train" / "eel" / "trailing.jpeg").write_bytes(eel_jpeg + b"\0" * 64 + b"extra")
    (root / "train" / "eel" / "notes.txt").write_text("ignored: not an image extension")
    # Start and end markers intact, the inside not: only decoding it can tell.
    (root / "train" / "dog" / "inside.jpg").write_bytes(good_jpeg[:4] + b"\0" * 60 + good_jpeg[64:])
    return root


def test_folder_classes_and_counts(folder):
    ds = data.load_dataset("folder", data_dir=folder)
    assert ds.info.class_names == ["cat", "dog", "eel"]
    assert (ds.info.n_train, ds.info.n_val) == (9 + 4, 6)  # listed, corrupt ones included
    assert ds.info.mean == data.IMAGENET_MEAN and ds.info.name == "folder:imgs"


def test_folder_skips_corrupt_images_with_a_warning_naming_them(folder, caplog):
    ds = data.load_dataset("folder", data_dir=folder, mean=(0, 0, 0), std=(1, 1, 1))
    with caplog.at_level(logging.WARNING):
        batches = list(data.make_eval_dataset(ds, "train", batch_size=4, image_size=16))
    images = np.concatenate([x.numpy() for x, _ in batches])
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert len(labels) == 10  # 9 good + trailing.jpeg; truncated.jpg, x.jpg and inside.jpg are skipped
    colours = np.array(list(CLASS_COLOURS.values())) / 255.0
    np.testing.assert_array_equal(
        np.abs(images.mean(axis=(1, 2))[:, None] - colours[None]).sum(-1).argmin(1), labels)
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(folder / "train" / "cat" / "truncated.jpg") in text
    assert str(folder / "train" / "dog" / "x.jpg") in text
    assert str(folder / "train" / "dog" / "inside.jpg") in text
    assert "trailing.jpeg" not in text
    # The repeated training stream runs through the bad files epoch after epoch.
    for x, y in ds.train(batch_size=4, image_size=16, seed=0).take(8):
        assert x.shape == (4, 16, 16, 3) and np.isfinite(x.numpy()).all()


def test_folder_val_classes_must_match_train(tmp_path):
    root = _make_folder(tmp_path, n_train=1, n_val=1)
    (root / "val" / "dog").rename(root / "val" / "dingo")
    with pytest.raises(ValueError, match=r"missing in val: \['dog'\]; not in train: \['dingo'\]"):
        data.load_dataset("folder", data_dir=root)


def test_folder_missing_and_empty_directories_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_dataset("folder", data_dir=tmp_path / "nowhere")
    root = _make_folder(tmp_path / "a", n_train=1, n_val=1)
    for path in (root / "val" / "cat").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=str(root / "val" / "cat")):
        data.load_dataset("folder", data_dir=root)
    (root / "val").rename(root / "validation")
    with pytest.raises(FileNotFoundError, match=str(root / "val")):
        data.load_dataset("folder", data_dir=root)
    (tmp_path / "b" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class subdirectories"):
        data.load_dataset("folder", data_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="needs data_dir"):
        data.load_dataset("folder")


def test_unknown_spec_is_one_clear_error():
    for spec in ("imagenet", "tfds:", "Demo"):
        with pytest.raises(ValueError, match=f"unknown dataset '{spec}'"):
            data.load_dataset(spec)


# ----------------------------------------------------------------------------- TFDS


def test_tfds_without_the_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(ImportError, match=r"ofa-tf\[tfds\]"):
        data.load_dataset("tfds:mnist", data_dir=tmp_path)


def test_tfds_never_downloads_an_unprepared_dataset(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")

    def no_download(*args, **kwargs):
        raise AssertionError("must not download without download=True")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_download)
    with pytest.raises(FileNotFoundError, match=r"not prepared in .*tfds build mnist"):
        data.load_dataset("tfds:mnist", data_dir=tmp_path)
