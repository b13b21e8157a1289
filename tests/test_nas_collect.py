import json

import numpy as np
import pytest
import tensorflow as tf

from cli_harness import run_cli
from conftest import images
from ofa_tf.arch.space import SearchSpace
from ofa_tf.data import DemoSource
from ofa_tf.evaluation import SubnetValidator
from ofa_tf.nas.accuracy_dataset import AccuracyDataset, sample_distinct_archs
from ofa_tf.nas.encoding import MobileNetArchEncoder
from ofa_tf.nas.subnet_measurement import collect, eval_batches


def test_distinct_archs_are_a_stable_prefix():
    space = SearchSpace.tiny()
    first, more = sample_distinct_archs(space, 30, seed=3), sample_distinct_archs(space, 60, seed=3)
    assert more[:30] == first
    encoder = MobileNetArchEncoder(space)
    assert len({encoder.arch2feature(a).tobytes() for a in more}) == 60
    with pytest.raises(ValueError, match="exceeds"):
        sample_distinct_archs(SearchSpace.tiny(), 10**15, seed=0)


def test_dataset_survives_a_write_cut_short(tmp_path):
    space = SearchSpace.tiny()
    path = str(tmp_path / "acc.jsonl")
    dataset = AccuracyDataset(path)
    archs = sample_distinct_archs(space, 3, seed=0)
    for i, arch in enumerate(archs[:2]):
        dataset.append({"arch": arch, "top1": 50.0 + i, "split": "val_even"})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"arch": {"ks": [3, 5')                 # the process died mid-line
    reopened = AccuracyDataset(path)
    assert len(reopened) == 2 and archs[1] in reopened and archs[2] not in reopened
    reopened.append({"arch": archs[2], "top1": 60.0, "split": "val_even"})
    lines = open(path, encoding="utf-8").read().splitlines()
    assert [json.loads(line)["top1"] for line in lines] == [50.0, 51.0, 60.0]
    with open(path, "a", encoding="utf-8") as f:
        f.write("not json\n")
    with pytest.raises(ValueError, match=r"acc.jsonl:4 is not a subnet record"):
        AccuracyDataset(path)


class _Killed(Exception):
    pass


def test_collection_resumes_after_a_kill_and_loses_only_the_subnet_in_flight(tiny_net, tmp_path):
    space = tiny_net.space
    batches = lambda size: [(tf.constant(images(16, size, 1)),  # noqa: E731
                             tf.constant(np.arange(16, dtype=np.int32) % 10))]
    validator = SubnetValidator(tiny_net, calibration_data=batches, eval_data=batches, n_calibration_images=16)
    archs = sample_distinct_archs(space, 5, seed=1)
    path = str(tmp_path / "acc.jsonl")
    evaluate, calls = validator.evaluate, []

    def dies_on_the_third(arch):
        calls.append(arch)
        if len(calls) == 3:
            raise _Killed()
        return evaluate(arch)

    validator.evaluate = dies_on_the_third
    with pytest.raises(_Killed):
        collect(validator, AccuracyDataset(path), archs, "val_even")
    assert len(AccuracyDataset(path)) == 2
    validator.evaluate = lambda arch: (calls.append(arch), evaluate(arch))[1]
    calls.clear()
    assert collect(validator, AccuracyDataset(path), archs, "val_even") == 3
    assert calls == archs[2:]
    records = list(AccuracyDataset(path))
    assert [r["arch"] for r in records] == archs
    assert all(0.0 <= r["top1"] <= 100.0 and r["n_images"] == 16 and r["split"] == "val_even" for r in records)
    with pytest.raises(ValueError, match="measured on \\['val_even'\\], not 'val'"):
        collect(validator, AccuracyDataset(path), archs, "val")


def test_validation_halves_split_the_validation_set():
    source = DemoSource(n_train=20, n_val=21)
    labels = {split: np.concatenate([y.numpy() for _, y in eval_batches(source, split, 8, 32)])
              for split in ("val", "val_even", "val_odd")}
    assert len(labels["val_even"]) == 11 and len(labels["val_odd"]) == 10
    np.testing.assert_array_equal(labels["val_even"], labels["val"][0::2])
    np.testing.assert_array_equal(labels["val_odd"], labels["val"][1::2])
    assert sum(len(y) for _, y in eval_batches(source, "val_odd", 4, 32, limit=5)) == 5


def test_cli_reports_a_missing_supernet_in_one_line(tmp_path):
    result = run_cli("ofa_tf.nas.collect", f"--workdir={tmp_path}", "--n=3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no trained supernet at ")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nas").exists()
