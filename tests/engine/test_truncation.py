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
