import json

import numpy as np
import pytest

from ofa_tf.arch.layout import build_layout
from ofa_tf.arch.space import SearchSpace, StageSpec, arch_from_json
from ofa_tf.arch.value import arch_to_json


@pytest.fixture(scope="module")
def space():
    return SearchSpace.mobilenet_v3(1.0)


def test_reference_space_shape_and_count(space):
    assert space.n_stages == 5 and space.max_depth == 4 and space.n_blocks == 20
    assert space.resolutions == tuple(range(128, 225, 4)) and len(space.resolutions) == 25
    assert space.count() == (81 + 9 ** 3 + 9 ** 4) ** 5
    assert 2.0e19 < space.count() < 2.2e19  # the paper's "2 x 10^19"
    assert space.count(include_resolution=True) == 25 * space.count()
    assert SearchSpace.mobilenet_v3(1.2).resolutions[0] == 160


def test_sampling_is_seeded_and_valid(space):
    a, b, c = space.sample(7), space.sample(7), space.sample(8)
    assert a == b and a != c
    assert space.validate(a, require_resolution=True) == a
    rng = np.random.default_rng(0)
    seen = {tuple(space.sample(rng)["ks"]) for _ in range(50)}
    assert len(seen) == 50
    assert set(space.sample(1)["e"]) <= set(space.expand_ratio_list)


def test_json_round_trip(space):
    arch = space.sample(3)
    assert arch_from_json(arch_to_json(arch), space) == arch
    assert SearchSpace.from_json(space.to_json()) == space
    tiny = SearchSpace.tiny()
    assert SearchSpace.from_json(tiny.to_json()) == tiny
    assert json.loads(arch_to_json(arch))["r"] == arch["r"]


def test_validate_normalizes_resolution_and_numbers(space):
    arch = space.sample(0)
    arch["r"] = 160
    arch["e"] = [float(e) for e in arch["e"]]
    out = space.validate(arch)
    assert out["r"] == [160]
    assert all(isinstance(e, int) for e in out["e"])


@pytest.mark.parametrize("mutate, field", [
    (lambda a: a["ks"].pop(), "'ks'"),                       # wrong length
    (lambda a: a["d"].append(2), "'d'"),                      # wrong length
    (lambda a: a["e"].__setitem__(4, 5), "'e'"),              # value outside the space
    (lambda a: a["ks"].__setitem__(0, 4), "'ks'"),            # value outside the space
    (lambda a: a.__setitem__("r", [100]), "'r'"),             # resolution outside the space
    (lambda a: a.__setitem__("ks", "7"), "'ks'"),             # wrong type
    (lambda a: a["d"].__setitem__(0, "2"), "'d'"),            # wrong element type
    (lambda a: a["e"].__setitem__(0, True), "'e'"),           # bool is not a number here
    (lambda a: a.__setitem__("k", [3]), "'k'"),               # unknown key
    (lambda a: a.pop("d"), "'d'"),                            # missing key
])
def test_bad_arch_names_the_field(space, mutate, field):
    arch = space.sample(0)
    mutate(arch)
    with pytest.raises(ValueError) as err:
        space.validate(arch)
    assert field in str(err.value)


def test_bad_arch_json_and_non_dict(space):
    with pytest.raises(ValueError, match="not valid JSON"):
        arch_from_json("{ks: 1", space)
    with pytest.raises(ValueError, match="must be a dict"):
        space.validate([1, 2, 3])


def test_bad_space_definitions():
    with pytest.raises(ValueError, match="ks_list"):
        SearchSpace(ks_list=(3, 4))
    with pytest.raises(ValueError, match="depth_list"):
        SearchSpace(depth_list=(0, 2))
    with pytest.raises(ValueError, match="act"):
        StageSpec(24, 2, "gelu", False)
    with pytest.raises(ValueError, match="unknown search space preset"):
        SearchSpace.preset("mbv4")
    with pytest.raises(ValueError, match="unknown field"):
        SearchSpace.from_dict({"ks": [3]})


def test_expand_and_active_slots(space):
    wide = space.expand(ks=5, e=[3] * 20, d=None)
    assert wide["ks"] == [5] * 20 and wide["d"] == [None] * 5
    with pytest.raises(ValueError, match="ks has 3 values"):
        space.expand(ks=[3, 5, 7])
    arch = space.uniform(3, 3, 2)
    assert space.active_slots(arch) == [0, 1, 4, 5, 8, 9, 12, 13, 16, 17]


def test_arch_value_is_validated_once_immutable_and_carries_its_resolution():
    tiny = SearchSpace.tiny()
    arch = tiny.arch({"ks": [3] * 12, "e": [3] * 12, "d": [1, 2, 3, 1]})
    assert arch.resolution == tiny.default_resolution == 64      # one rule: the largest
    assert tiny.arch(tiny.smallest()).resolution == 32            # else arch["r"]
    assert tiny.arch(arch) is arch                                # no second validation
    assert tiny.arch(arch, image_size=40).resolution == 40 and arch.resolution == 64
    assert arch.active_slots == (0, 3, 4, 6, 7, 8, 9) == tuple(tiny.active_slots(arch))
    layout = build_layout(tiny, n_classes=10)
    assert layout.active_blocks(arch) == layout.active_blocks(arch, 64) != layout.active_blocks(arch, 32)
    with pytest.raises(AttributeError, match="immutable"):
        arch.d = (3, 3, 3, 3)
    with pytest.raises(ValueError, match="resolution 36 is not in the space's resolutions"):
        tiny.arch(arch, image_size=36)
    with pytest.raises(ValueError, match=r"arch\['e'\]\[0\]"):
        tiny.arch({**tiny.smallest(), "e": [5] * 12})
    # It reads like the reference's arch dict, and round-trips through JSON.
    assert arch == {**tiny.validate(arch), "r": [64]} and dict(**arch)["r"] == [64]
    assert arch_from_json(arch.to_json(), tiny) == arch.to_dict()
    # The digest names what the network computes (export file names): pinned values, and
    # the choices of skipped slots do not change it.
    assert tiny.arch(tiny.largest()).digest == "b6fd5e3546"
    assert tiny.arch(tiny.smallest()).digest == "3279f69eaf"
    skipped = arch.to_dict()
    skipped["ks"][1] = 7
    assert tiny.arch(skipped).digest == arch.digest and tiny.arch(skipped) != arch
