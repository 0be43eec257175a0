"""Meta-Dataset's episode sampler: the formulas, statistics over 10,000 episodes, fixed settings, errors (issue 25)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from innerloop.data.metadataset.sampler import (EpisodeConfig, EpisodeSampler, num_query, sample_num_ways,
                                                sample_shots, sample_support_size)
from innerloop.data.metadataset.spec import flat_spec_json, parse_spec
from innerloop.errors import ConfigError
from tests.data.metadataset.fixtures import TOY_DAG_GROUPS, toy_bilevel_spec, toy_dag_spec, toy_flat_spec

EPISODES = 10_000


def _check_episode(spec, ep, max_num_query=10, max_size=500):
    """The per-episode invariants of the variable-way variable-shot rules."""
    images = spec.images(ep.classes)
    assert len(set(ep.classes.tolist())) == ep.ways  # distinct classes
    assert ep.query == min(max_num_query, int(images.min()) // 2)
    remaining = images - ep.query
    shots = ep.shots
    assert shots.min() >= 1 and np.all(shots <= remaining)
    assert ep.ways <= ep.support_size <= min(max_size, int(np.minimum(100, remaining).sum()))
    for s, q, n in zip(ep.support_indices, ep.query_indices, images):
        both = np.concatenate([s, q])
        assert len(q) == ep.query and len(np.unique(both)) == len(both) and both.min() >= 0 and both.max() < n


# -- the formulas, step by step (same-seed generators replay the draws) -----------------------------------------

def test_formula_functions_match_section_1_4():
    assert num_query(np.array([40, 7, 100]), 10) == 3
    assert num_query(np.array([400, 300]), 10) == 10
    assert num_query(np.array([40, 12]), 10, shots=5) == 7
    rng, replay = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(200):
        remaining = np.array([3, 30, 150, 500, 1])
        size = sample_support_size(rng, remaining, 100, 500)
        u = replay.random()  # ceil(beta * m) with beta ~ U(0, 1] is drawn as floor(u * m) + 1 with u ~ U[0, 1)
        assert size == min(500, sum(math.floor(u * min(100, r)) + 1 for r in remaining))
        images = remaining + 10
        shots = sample_shots(rng, images, remaining, size, math.log(0.5), math.log(2.0))
        w = images * np.exp(replay.uniform(math.log(0.5), math.log(2.0), size=5))
        expected = np.minimum(np.floor(w / w.sum() * (size - 5)).astype(int) + 1, remaining)
        assert shots.tolist() == expected.tolist()
    ways = Counter(sample_num_ways(rng, 7, 5, 50) for _ in range(3000))
    assert set(ways) == {5, 6, 7} and min(ways.values()) > 850


def test_support_size_distribution():
    rng = np.random.default_rng(0)
    # equal classes of 30 remaining images: size = ways * ceil(30 * beta), uniform over ways * {1..30}
    sizes = np.array([sample_support_size(rng, np.full(5, 30), 100, 500) for _ in range(EPISODES)])
    assert np.all(sizes % 5 == 0)
    counts = np.bincount(sizes // 5, minlength=31)[1:]
    assert counts.min() > 0.75 * EPISODES / 30 and counts.max() < 1.25 * EPISODES / 30
    # 10 classes of 200 remaining: contributions capped at 100 each; size capped at 500, P(500) = 51/100
    sizes = np.array([sample_support_size(rng, np.full(10, 200), 100, 500) for _ in range(EPISODES)])
    assert sizes.max() == 500 and sizes.min() >= 10 and abs(np.mean(sizes == 500) - 0.51) < 0.02


def test_shots_follow_class_sizes_within_the_log_weight_range():
    rng = np.random.default_rng(1)
    images = np.array([10, 20, 40, 80, 160]) * 10
    shots = np.array([sample_shots(rng, images, images, 300, math.log(0.5), math.log(2.0))
                      for _ in range(2000)])
    assert np.all(shots >= 1) and np.all(shots.sum(axis=1) <= 300) and np.all(shots.sum(axis=1) >= 300 - 5 + 1)
    mean = shots.mean(axis=0)
    assert np.all(np.diff(mean) > 0)  # larger classes get more shots
    ratio = shots[:, 4] / shots[:, 0]  # weights differ by class size x at most 4
    assert ratio.max() <= 16 * 4 + 1 and ratio.min() >= 16 / 4 - 1


# -- statistics over 10,000 episodes ----------------------------------------------------------------------------

def test_flat_rule_statistics():
    spec = toy_flat_spec()
    sampler = EpisodeSampler(spec, "train", seed=0)
    train = set(spec.classes("train").tolist())
    ways, per_class = Counter(), Counter()
    for _ in range(EPISODES):
        ep = sampler.sample()
        _check_episode(spec, ep)
        assert set(ep.classes.tolist()) <= train and ep.group is None
        ways[ep.ways] += 1
        per_class.update(ep.classes.tolist())
    assert set(ways) == set(range(5, 51))  # uniform in [5, min(50, 60)]
    expected = EPISODES / 46
    assert min(ways.values()) > 0.7 * expected and max(ways.values()) < 1.3 * expected
    mean_ways = sum(k * v for k, v in ways.items()) / EPISODES
    assert abs(mean_ways - 27.5) < 0.5
    expected = sum(per_class.values()) / 60  # classes uniformly without replacement
    assert min(per_class.values()) > 0.9 * expected and max(per_class.values()) < 1.1 * expected


def test_bilevel_rule_statistics():
    spec = toy_bilevel_spec()
    sampler = EpisodeSampler(spec, "train", seed=1)
    chosen, ways_by_group = Counter(), {}
    for _ in range(EPISODES):
        ep = sampler.sample()
        _check_episode(spec, ep)
        members = spec.superclass_classes[ep.group]
        assert set(ep.classes.tolist()) <= set(members.tolist())  # one alphabet per episode
        assert 5 <= ep.ways <= min(50, len(members))  # ways bounded by the alphabet size
        chosen[ep.group] += 1
        ways_by_group.setdefault(ep.group, Counter())[ep.ways] += 1
    assert 0 not in chosen  # 3 characters < min_ways: never drawn
    assert set(chosen) == {1, 2, 3, 4} and min(chosen.values()) > 0.9 * EPISODES / 4
    assert set(ways_by_group[1]) == {5} and set(ways_by_group[2]) == {5, 6, 7, 8}
    assert set(ways_by_group[3]) == set(range(5, 21)) and set(ways_by_group[4]) == set(range(5, 51))
    counts = ways_by_group[2]
    assert min(counts.values()) > 0.8 * chosen[2] / 4


def test_dag_rule_statistics():
    spec = toy_dag_spec()
    sampler = EpisodeSampler(spec, "train", seed=2)
    span = spec.spanning_leaves("train")
    leaf_class = spec.leaf_class["TRAIN"]
    leaves_of = {node: {leaf_class[w] for w in span[node]} for node in TOY_DAG_GROUPS}
    chosen = Counter()
    for _ in range(EPISODES):
        ep = sampler.sample()
        _check_episode(spec, ep)
        classes = set(ep.classes.tolist())
        assert ep.group in TOY_DAG_GROUPS and classes <= leaves_of[ep.group]  # leaves of one eligible node
        assert ep.ways == min(50, TOY_DAG_GROUPS[ep.group])  # all its leaves, subsampled to 50
        chosen[ep.group] += 1
    assert min(chosen.values()) > 0.9 * EPISODES / 3  # eligible node uniformly (root: 400 > 392 leaves; tiny: 3)


def test_seeded_samplers_repeat_and_differ():
    spec = toy_flat_spec()
    a, b, c = (EpisodeSampler(spec, "train", seed=s) for s in (5, 5, 6))
    for _ in range(20):
        ea, eb, ec = a.sample(), b.sample(), c.sample()
        assert ea.classes.tolist() == eb.classes.tolist()
        assert all(np.array_equal(x, y) for x, y in zip(ea.support_indices, eb.support_indices))
    assert ea.classes.tolist() != ec.classes.tolist()
    g = np.random.default_rng(0)
    assert EpisodeSampler(spec, "train", seed=g).rng is g


# -- fixed settings and impossible requests ---------------------------------------------------------------------

def test_fixed_way_shot_query_skips_classes_that_are_too_small():
    spec = parse_spec(flat_spec_json("f", (8, 0, 0), [16, 15, 40, 16, 100, 3, 20, 16]))
    sampler = EpisodeSampler(spec, "train", seed=0, ways=5, shots=1, query=15)
    seen = set()
    for _ in range(300):
        ep = sampler.sample()
        assert ep.ways == 5 and ep.shots.tolist() == [1] * 5 and ep.query == 15
        assert ep.support_size == 5 and ep.query_size == 75
        seen |= set(ep.classes.tolist())
    assert seen == {0, 2, 3, 4, 6, 7}  # 15 and 3 images cannot give 1 + 15


def test_fixed_ways_ignores_the_hierarchy_and_fixed_shots_derive_query():
    spec = toy_bilevel_spec()
    sampler = EpisodeSampler(spec, "train", seed=0, ways=3, shots=5)
    groups = set()
    for _ in range(200):
        ep = sampler.sample()
        assert ep.ways == 3 and ep.query == min(10, 20 - 5) and ep.group is None
        groups.add(frozenset(int(np.searchsorted(np.cumsum([3, 5, 8, 20, 70, 6]), c, side="right"))
                             for c in ep.classes))
    assert any(len(g) > 1 for g in groups)  # classes from several alphabets
    ep = EpisodeSampler(spec, "train", seed=0, use_hierarchy=False).sample()
    assert ep.group is None
    ep = EpisodeSampler(toy_flat_spec(), "train", seed=0, ways=7).sample()  # fixed ways, variable shots
    assert ep.ways == 7 and ep.shots.min() >= 1


@pytest.mark.parametrize("spec_fn,split,options,match", [
    (toy_flat_spec, "train", dict(ways=61), "cannot supply a 61-way episode: only 60 of its 60 classes"),
    (toy_flat_spec, "train", dict(ways=5, shots=400, query=10), "cannot supply a 5-way episode"),
    (toy_flat_spec, "valid", {}, "cannot supply an episode of min_ways=5: only 3 of its 3 classes"),
    (toy_flat_spec, "test", {}, "only 0 of its 0 classes"),
    (toy_bilevel_spec, "valid", dict(min_ways=7), "no superclass has min_ways=7"),
    (toy_dag_spec, "valid", dict(min_ways=7), "no DAG node spans between min_ways=7 and 392"),
    (toy_dag_spec, "train", dict(max_spanning_leaves=4), "no DAG node spans"),
    (toy_flat_spec, "train", dict(ways=0), "ways must be a positive integer"),
    (toy_flat_spec, "train", dict(min_ways=9, max_ways_upper_bound=8), "min_ways=9 exceeds"),
    (toy_flat_spec, "train", dict(max_support_set_size=20), "max_support_set_size=20 is below the 50 ways"),
    (toy_flat_spec, "train", dict(shot=1), "unknown episode option 'shot'"),
    (toy_flat_spec, "dev", {}, "unknown split 'dev'"),
])
def test_impossible_requests_are_one_line_config_errors(spec_fn, split, options, match):
    with pytest.raises(ConfigError) as err:
        EpisodeSampler(spec_fn(), split, seed=0, **options)
    assert match in str(err.value) and "\n" not in str(err.value)


def test_config_object_and_overrides():
    config = EpisodeConfig(ways=5, shots=2, query=3)
    spec = toy_flat_spec()
    ep = EpisodeSampler(spec, "train", config, seed=0).sample()
    assert (ep.ways, ep.shots.tolist(), ep.query) == (5, [2] * 5, 3)
    ep = EpisodeSampler(spec, "train", config, seed=0, shots=4).sample()
    assert ep.shots.tolist() == [4] * 5
