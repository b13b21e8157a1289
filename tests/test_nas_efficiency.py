import os

import numpy as np
import pytest
import yaml

from nas_synthetic import made_up_latency_entries
from ofa_tf.arch.complexity import profile_arch
from ofa_tf.arch.layout import build_layout
from ofa_tf.arch.space import SearchSpace
from reference_data import reference_file, reference_modules
from ofa_tf.nas.efficiency import LatencyPredictor, MACsPredictor
from ofa_tf.nas.latency_table import LatencyTable, load_latency_table, op_keys


@pytest.mark.parametrize("space", [SearchSpace.tiny(), SearchSpace.mobilenet_v3(1.0),
                                   SearchSpace.mobilenet_v3(1.2)], ids=["tiny", "w1.0", "w1.2"])
def test_macs_predictor_equals_profile_arch_exactly(space):
    predictor = MACsPredictor(space, n_classes=1000)
    archs = [space.sample(seed) for seed in range(300)]
    archs += [space.smallest(), space.largest()]
    batch = predictor.encoder.to_batch(archs)
    expected = [profile_arch(a, space, 1000) for a in archs]
    np.testing.assert_array_equal(predictor.predict_macs(batch), [p.macs for p in expected])
    np.testing.assert_array_equal(predictor.predict(archs), [p.mmacs for p in expected])
    assert predictor.get_efficiency(archs[0]) == expected[0].mmacs


def test_cheapest_is_the_smallest_subnet_for_macs():
    space = SearchSpace.mobilenet_v3(1.0)
    arch, cost = MACsPredictor(space).cheapest()
    assert arch == space.smallest()
    assert cost == pytest.approx(profile_arch(space.smallest(), space).mmacs, rel=1e-12)
    arch, cost = MACsPredictor(space).cheapest(resolutions=[224])
    assert arch["r"] == [224] and cost == pytest.approx(121.278672, rel=1e-9)  # README table


def test_op_keys_use_the_reference_key_strings():
    """Hand-written keys of the tiny space at 32 px (stem 8 ch, first stage 16 ch, head 96/128)."""
    space = SearchSpace.tiny()
    layout = build_layout(space, n_classes=10)
    arch = {"ks": [5] * 12, "e": [4] * 12, "d": [1, 1, 1, 1], "r": [32]}
    keys = op_keys(layout, arch)
    assert keys[:3] == [
        "Conv-input:32x32x3-output:16x16x8",
        "expanded_conv-input:16x16x8-output:16x16x8-expand:8-kernel:3-stride:1-idskip:1-se:0-hs:0",
        "expanded_conv-input:16x16x8-output:8x8x16-expand:32-kernel:5-stride:2-idskip:0-se:0-hs:0",
    ]
    assert keys[-4:] == ["Conv_1-input:2x2x40-output:2x2x96", "AvgPool2D-input:2x2x96-output:1x1x96",
                         "Conv_2-input:1x1x96-output:1x1x128", "Logits-input:1x1x128-output:10"]
    assert len(keys) == 1 + 1 + 4 + 4


def test_op_keys_match_the_reference_latency_table_queries():
    """The reference's MBv3LatencyTable asks for exactly our keys on its own supernet's config."""
    networks, lut_module = reference_modules("ofa.imagenet_classification.elastic_nn.networks",
                                             "ofa.nas.efficiency_predictor.latency_lookup_table")
    space = SearchSpace.mobilenet_v3(1.0)
    net = networks.OFAMobileNetV3(width_mult=1.0, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                                  depth_list=[2, 3, 4])
    asked = []

    class Recorder(dict):
        def __getitem__(self, key):
            asked.append(key)
            return {"mean": 1.0}

    table = object.__new__(lut_module.MBv3LatencyTable)  # skip its download
    table.lut = Recorder()
    layout = build_layout(space, 1000)
    for seed in range(8):
        arch = space.sample(seed)
        net.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
        asked.clear()
        table.predict_network_latency_given_config(net.get_active_net_config(), arch["r"][0])
        assert asked == op_keys(layout, arch)


def _table_for(space, n_classes, resolutions, drop=()):
    entries = made_up_latency_entries(space, n_classes, resolutions)
    for key in drop:
        del entries[key]
    return entries


def test_latency_predictor_sums_table_entries(tmp_path):
    space = SearchSpace.tiny()
    layout = build_layout(space, 10)
    path = tmp_path / "phone.yaml"
    path.write_text(yaml.safe_dump(_table_for(space, 10, [40, 56])))
    table = load_latency_table(str(path))
    predictor = LatencyPredictor(table, space, n_classes=10)
    assert predictor.supported_resolutions() == (40, 56)
    archs = [space.sample(seed) for seed in range(40)]
    archs = [dict(a, r=[40 if i % 2 else 56]) for i, a in enumerate(archs)]
    expected = [sum(table.mean(key) for key in op_keys(layout, a)) for a in archs]
    np.testing.assert_allclose(predictor.predict(archs), expected, rtol=1e-12)
    assert table.predict_latency(layout, archs[0]) == pytest.approx(expected[0], rel=1e-12)
    arch, cost = predictor.cheapest()
    assert cost == pytest.approx(table.predict_latency(layout, arch), rel=1e-12)
    costs = predictor.predict([dict(space.sample(s), r=[r]) for s in range(300) for r in (40, 56)])
    assert cost <= costs.min()


def test_a_missing_key_is_named(tmp_path):
    space = SearchSpace.tiny()
    layout = build_layout(space, 10)
    arch = {"ks": [7] * 12, "e": [6] * 12, "d": [3] * 4, "r": [40]}
    missing = op_keys(layout, arch)[5]
    entries = _table_for(space, 10, [40], drop=[missing])
    predictor = LatencyPredictor(LatencyTable(entries, "phone.yaml"), space, 10)
    with pytest.raises(ValueError, match="no entry for op '" + missing.replace("-", r"\-") + "'"):
        predictor.predict([arch])
    with pytest.raises(ValueError, match="no entry for op 'Conv-input:32x32x3"):
        predictor.predict([dict(arch, r=[32])])
    assert predictor.supported_resolutions() == ()
    assert predictor.missing_key(40) is not None


def test_table_files_and_directories_load_and_bad_ones_are_refused(tmp_path):
    space = SearchSpace.tiny()
    tables = tmp_path / "tables"
    tables.mkdir()
    for r in (32, 48):
        (tables / f"{r}_lookup_table.yaml").write_text(yaml.safe_dump(_table_for(space, 10, [r])))
    by_resolution = load_latency_table(str(tables))
    assert by_resolution.resolutions == (32, 48)
    assert LatencyPredictor(by_resolution, space, 10).supported_resolutions() == (32, 48)
    copy = tmp_path / "copy"
    by_resolution.save(str(copy))                       # the directory form round-trips, file for file
    assert sorted(os.listdir(copy)) == ["32_lookup_table.yaml", "48_lookup_table.yaml"]
    assert load_latency_table(str(copy)).tables == by_resolution.tables
    single = tmp_path / "single.yaml"                   # one file serves every resolution it covers
    single.write_text(yaml.safe_dump(_table_for(space, 10, [32, 48])))
    table = load_latency_table(str(single))
    assert table.resolutions is None and LatencyPredictor(table, space, 10).supported_resolutions() == (32, 48)
    table.save(str(tmp_path / "saved.yaml"))
    assert load_latency_table(str(tmp_path / "saved.yaml")).tables == table.tables
    with pytest.raises(ValueError, match="is a file; a table with one table per resolution is saved as a directory"):
        by_resolution.save(str(single))
    bad = tmp_path / "bad.yaml"
    bad.write_text("Conv-input:32x32x3-output:16x16x8: {count: 3}\n")
    with pytest.raises(ValueError, match="numeric 'mean'"):
        load_latency_table(str(bad))
    bad.write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_latency_table(str(bad))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_latency_table(str(tmp_path / "none.yaml"))
    with pytest.raises(ValueError, match="no \\*_lookup_table.yaml"):
        load_latency_table(str(tmp_path))  # a directory without tables
    (tables / "phone_lookup_table.yaml").write_text(single.read_text())
    with pytest.raises(ValueError, match="phone_lookup_table.yaml is not named <resolution>_lookup_table.yaml"):
        load_latency_table(str(tables))


def test_each_resolution_is_predicted_from_its_own_table(tmp_path):
    """At 56 and 64 px the tiny space's last stage runs on the same 4x4 feature map, so both
    tables hold its 9 later-block keys and the 4 head keys; here with different values, as in
    the reference's Note10 tables."""
    space = SearchSpace.tiny()
    layout = build_layout(space, 10)
    written = {}
    for r, scale in ((56, 1.0), (64, 2.0)):
        written[r] = _table_for(space, 10, [r])
        for entry in written[r].values():
            entry["mean"] *= scale
        (tmp_path / f"{r}_lookup_table.yaml").write_text(yaml.safe_dump(written[r]))
    shared = sorted(set(written[56]) & set(written[64]))
    assert len(shared) == 13 and all(written[56][k]["mean"] != written[64][k]["mean"] for k in shared)
    table = load_latency_table(str(tmp_path))
    predictor = LatencyPredictor(table, space, 10)
    assert predictor.supported_resolutions() == (56, 64)
    archs = [dict(space.sample(seed), r=[56 if seed % 2 else 64]) for seed in range(40)]
    expected = [sum(written[a["r"][0]][key]["mean"] for key in op_keys(layout, a)) for a in archs]
    np.testing.assert_allclose(predictor.predict(archs), expected, rtol=1e-12)
    assert [table.predict_latency(layout, a) for a in archs] == pytest.approx(expected, rel=1e-12)
    merged = LatencyPredictor(LatencyTable({**written[56], **written[64]}), space, 10)   # the old merge
    assert np.abs(merged.predict(archs) - expected).max() > 0.1
    arch, cost = predictor.cheapest()
    assert cost == pytest.approx(table.predict_latency(layout, arch), rel=1e-12)
    with pytest.raises(ValueError, match=r"has no table for 48 px \(it has tables for 56, 64 px\)"):
        predictor.predict([dict(archs[0], r=[48])])
    with pytest.raises(ValueError, match="no entry for op 'Conv-input:64x64x3-output:32x32x8' at 56 px"):
        table.mean("Conv-input:64x64x3-output:32x32x8", 56)


def test_note10_tables_match_the_reference_latency_estimator():
    """The reference tutorial's LatencyEstimator on its own extracted w1.2 subnets, one table per
    resolution, against our predictor on the same archs."""
    note10 = reference_file("ofa", "note10")
    networks, tutorial = reference_modules("ofa.imagenet_classification.elastic_nn.networks",
                                           "ofa.tutorial.latency_table")
    space = SearchSpace.mobilenet_v3(1.2)
    predictor = LatencyPredictor(load_latency_table(note10), space, 1000)
    assert predictor.supported_resolutions() == (160, 176, 192, 208, 224)
    estimators = {}
    for r in predictor.supported_resolutions():
        estimator = object.__new__(tutorial.LatencyEstimator)   # its constructor downloads
        with open(os.path.join(note10, f"{r}_lookup_table.yaml")) as f:
            estimator.lut = yaml.safe_load(f)
        estimators[r] = estimator
    net = networks.OFAMobileNetV3(width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6],
                                  depth_list=[2, 3, 4])
    rng = np.random.default_rng(0)
    archs = [dict(space.sample(rng), r=[int(r)]) for r in rng.choice(predictor.supported_resolutions(), 50)]
    theirs = []
    for arch in archs:
        net.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
        subnet = net.get_active_subnet(preserve_weight=False)
        theirs.append(estimators[arch["r"][0]].predict_network_latency(subnet, arch["r"][0]))
    np.testing.assert_allclose(predictor.predict(archs), theirs, rtol=1e-9, atol=0)
