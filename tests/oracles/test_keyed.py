"""Keyed zeroth-order directions: a task's numbers depend on (salt, task index, step) only, never on how the batch
is chunked, looped, threaded or split; they are standard normal; old run configs keep the stream they used."""

import math

import pytest
import torch

from innerloop.engine import Learner, MetaLearner
from innerloop.inits import LearnedInit
from innerloop.models import MLP, Conv4
from innerloop.oracles import AutogradOracle, ZerothOrderOracle, draws_in_order
from innerloop.oracles.keyed import TaskKey, keyed_normal, mix
from innerloop.rules import SGD


def test_mix_is_deterministic_order_sensitive_and_fits_int64():
    assert mix(1, 2) == mix(1, 2) != mix(2, 1)
    assert mix(0) != mix(1) and mix(1, 0) != mix(1)
    keys = {mix(s, j) for s in range(50) for j in range(200)}
    assert len(keys) == 10_000  # no collisions among 10,000 (salt, task) pairs
    assert all(0 <= k < 2**62 for k in keys)
    assert mix(-1) == mix(2**64 - 1)  # words are taken modulo 2^64


def test_rows_depend_on_the_task_index_only():
    idx = torch.arange(6)
    whole = keyed_normal(idx, 7, 50, torch.float64, torch.device("cpu"))
    assert whole.shape == (6, 50)
    part = keyed_normal(idx[3:5], 7, 50, torch.float64, torch.device("cpu"))
    assert torch.equal(part, whole[3:5])
    assert torch.equal(keyed_normal(torch.tensor(2), 7, 50, torch.float64, torch.device("cpu")), whole[2])
    assert not torch.equal(whole[0], whole[1])
    assert not torch.equal(keyed_normal(idx, 8, 50, torch.float64, torch.device("cpu")), whole)


def test_the_operator_runs_under_vmap_nested_vmap_and_in_chunks():
    idx = torch.arange(6)
    want = keyed_normal(idx, 3, 10, torch.float32, torch.device("cpu"))
    got = torch.vmap(lambda i: TaskKey(i, 3).normal((2, 5), torch.float32, torch.device("cpu")))(idx)
    assert torch.equal(got.reshape(6, 10), want)
    nested = torch.vmap(torch.vmap(lambda i: keyed_normal(i, 3, 10, torch.float32, torch.device("cpu"))))(
        idx.view(2, 3))
    assert torch.equal(nested.reshape(6, 10), want)
    chunked = torch.cat([torch.vmap(lambda i: keyed_normal(i, 3, 10, torch.float32, torch.device("cpu")))(c)
                         for c in idx.split(4)])
    assert torch.equal(chunked, want)


def test_draws_are_standard_normal():
    """Statistical: 200 rows of 5,000 from consecutive task keys: mean, variance, kurtosis and the correlation of
    neighbouring rows within 5 standard errors of N(0, 1)'s."""
    z = keyed_normal(torch.arange(200), 11, 5000, torch.float64, torch.device("cpu"))
    n = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(n)
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2 / n)
    assert abs(float((z**4).mean()) - 3) < 5 * math.sqrt(96 / n)
    corr = float((z[1:] * z[:-1]).mean())
    assert abs(corr) < 5 / math.sqrt(z[1:].numel())


def meta(executor: str, noise: str, workers: int = 1, model=None):
    torch.manual_seed(0)
    model = model or MLP(1, [8], 1, activation="relu").double()
    return MetaLearner(Learner(model, "mse"), LearnedInit(model), SGD(0.05).double(),
                       ZerothOrderOracle(q=3, mu=1e-3, noise=noise), steps=3, executor=executor, workers=workers)


def batch(n=5):
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(n, 6, 1, generator=g, dtype=torch.float64) for _ in range(4))


def backward(m, b, shard=None):
    m.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    losses, _, _ = m.meta_backward_span(b, 0, 0, m.steps, None, shard)
    return losses, [p.grad.clone() for p in m.parameters() if p.grad is not None]


def test_keyed_training_is_the_same_in_a_loop_in_vmap_and_in_shards():
    b = batch()
    lv, gv = backward(meta("vmap", "keyed"), b)
    ll, gl = backward(meta("loop", "keyed"), b)
    assert torch.allclose(lv, ll, rtol=1e-12)
    assert all(torch.allclose(x, y, rtol=1e-10, atol=1e-14) for x, y in zip(gv, gl))
    m = meta("vmap", "keyed")
    parts = [backward(m, b, s) for s in [(0, 2), (2, 2), (2, 5)]]
    assert torch.equal(torch.cat([p[0] for p in parts]), lv)
    for i, g in enumerate(gv):
        assert torch.allclose(sum(p[1][i] for p in parts if p[1]), g, rtol=1e-10, atol=1e-14)


def test_stream_noise_depends_on_the_executor_keyed_does_not():
    """Why the keyed default exists: the global stream hands vmap and the loop different numbers."""
    b = batch()
    lv, _ = backward(meta("vmap", "stream"), b)
    ll, _ = backward(meta("loop", "stream"), b)
    assert not torch.allclose(lv, ll)


def test_keyed_evaluation_is_independent_of_the_chunk_and_the_seed_matters():
    m, b = meta("vmap", "keyed"), batch(6)
    a, _ = m.evaluate(b, chunk=6, seed=1)
    assert torch.allclose(m.evaluate(b, chunk=4, seed=1)[0], a, rtol=1e-12)
    assert torch.equal(m.evaluate(b, chunk=3, seed=1, shard=(3, 6))[0], a[3:])
    assert not torch.allclose(m.evaluate(b, chunk=6, seed=2)[0], a)


def test_keyed_directions_in_task_threads_are_the_sequential_loops_bit_for_bit():
    from tests.engine.test_normalisation import episode_batch

    b = episode_batch(tasks=4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def conv(workers):
            torch.manual_seed(0)
            model = Conv4(1, 3, filters=4, image_size=16).double()
            return MetaLearner(Learner(model, "cross_entropy"), LearnedInit(model).double(), SGD(0.3).double(),
                               ZerothOrderOracle(q=2, mu=1e-3), steps=2, executor="loop", workers=workers)

        l1, g1 = backward(conv(1), b)
        l2, g2 = backward(conv(2), b)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(l1, l2) and all(torch.equal(x, y) for x, y in zip(g1, g2))


def test_which_oracles_draw_in_order():
    assert not draws_in_order(AutogradOracle())
    assert not draws_in_order(ZerothOrderOracle())
    assert draws_in_order(ZerothOrderOracle(noise="stream"))
    assert draws_in_order(lambda loss_fn, params, key=None: None)  # unknown oracles: assumed to use the stream
    with pytest.raises(Exception, match="oracle.noise"):
        ZerothOrderOracle(noise="philox")


def test_a_run_saved_before_the_option_keeps_the_stream(tmp_path):
    from innerloop import config as C
    from innerloop.train import _read_config

    cfg = C.load("sinusoid/lft", ['oracle.kind="zo"'])
    text = C.to_toml(cfg)
    assert 'noise = "keyed"' in text
    (tmp_path / "config.toml").write_text(text.replace('noise = "keyed"\n', ""))
    assert _read_config(tmp_path).oracle.noise == "stream"
    (tmp_path / "config.toml").write_text(text)
    assert _read_config(tmp_path).oracle.noise == "keyed"
