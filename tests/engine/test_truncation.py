"""Truncated backpropagation: spans, carried state, one update per span in training."""

import torch

from innerloop import config
from innerloop.build import build


def test_spans_and_carry_continue_the_same_trajectory():
    cfg = config.load("sinusoid/lft", ["inner.steps=4", "train.truncation=2", "model.hidden=[5]", "rule.hidden=3",
                                        "train.dtype=\"float64\""])
    tasks, meta = build(cfg)
    assert meta.spans() == [(0, 2), (2, 4)]
    batch = tasks.train_batch(3, 0, 0, dtype=torch.float64)
    torch.manual_seed(0)
    l1, _, carry = meta.meta_backward_span(batch, 0, 0, 2, None)
    l2, _, carry2 = meta.meta_backward_span(batch, 0, 2, 4, carry)
    assert not any(v.requires_grad for v in carry["default"]["params"].values())
    # the same losses as one untruncated unroll of 4 steps (values, not gradients)
    cfg_full = config.load("sinusoid/lft", ["inner.steps=4", "model.hidden=[5]", "rule.hidden=3", "train.dtype=\"float64\""])
    _, full = build(cfg_full)
    full.load_state_dict(meta.state_dict())
    torch.manual_seed(0)
    total, _ = full.meta_backward(batch)
    torch.testing.assert_close(l1 + l2, total)


def test_training_with_truncation_runs(tmp_path):
    from innerloop.train import train

    cfg = config.load("sinusoid/lft", ["inner.steps=4", "train.truncation=2", "model.hidden=[5]", "rule.hidden=3",
                                        "train.iterations=3", "train.meta_batch=2", "eval.tasks=5"])
    assert train(cfg, tmp_path, progress=False)["iterations"] == 3


def test_evaluation_fine_tunes_on_the_support_set_only():
    """L2O merges the splits for its meta-objective, but at test time the fine-tuning must see only
    the support set: the score equals adapting on the support set by hand, then scoring the query."""
    cfg = config.load("sinusoid/l2o", ["inner.steps=3", "model.hidden=[5]", "rule.hidden=3", "train.dtype=\"float64\""])
    tasks, meta = build(cfg)
    xs, ys, xq, yq = tasks.eval_set(4, 0, 50, dtype=torch.float64)
    got, _ = meta.evaluate((xs, ys, xq, yq), steps=3, seed=5)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(5)
        full = meta.init.sample(4)
        want = []
        for i in range(4):
            p = {k: v[i] for k, v in full.items()}
            p, _, _, _ = meta.loop.run(p, meta.rule.init_state(p), {}, xs[i], ys[i], 0, 3)
            want.append(meta.learner.metric(p, xq[i], yq[i]))
    torch.testing.assert_close(got, torch.stack(want))


HORIZON = ["inner.steps=2", "train.truncation=2", "train.horizon=6", "model.hidden=[5]", "rule.hidden=3",
           "train.meta_batch=2", "eval.tasks=5", "train.dtype=\"float64\"", "train.checkpoint_every=2"]


def test_horizon_draws_each_iterations_unroll_length_from_its_seed():
    from innerloop.train import unroll_length

    cfg = config.load("sinusoid/lft", HORIZON)
    lengths = [unroll_length(cfg, it) for it in range(400)]
    assert set(lengths) == set(range(2, 7))  # inner.steps .. horizon, each drawn
    assert lengths == [unroll_length(cfg, it) for it in range(400)]  # a resumed run draws the same
    assert unroll_length(config.load("sinusoid/lft", ["inner.steps=3"]), 5) == 3  # off: inner.steps
    _, meta = build(cfg)
    assert meta.spans(5) == [(0, 2), (2, 4), (4, 5)]


def test_training_past_the_horizon_is_resumable_and_exact(tmp_path):
    """Each meta-iteration unrolls its drawn length in truncated spans; a run stopped and resumed matches one
    that never stopped."""
    from innerloop.train import train

    full, part = tmp_path / "full", tmp_path / "part"
    train(config.load("sinusoid/lft", HORIZON + ["train.iterations=6"]), full, progress=False)
    train(config.load("sinusoid/lft", HORIZON + ["train.iterations=4"]), part, progress=False)
    train(config.load("sinusoid/lft", HORIZON + ["train.iterations=6"]), part, resume=True, progress=False)
    a = torch.load(full / "checkpoint.pt", weights_only=True)["meta"]
    b = torch.load(part / "checkpoint.pt", weights_only=True)["meta"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_horizon_shorter_than_the_inner_steps_is_a_config_error():
    import pytest

    from innerloop.errors import ConfigError

    with pytest.raises(ConfigError, match="train.horizon"):
        config.load("sinusoid/lft", ["inner.steps=5", "train.horizon=3"])
