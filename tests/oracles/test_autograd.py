"""The two backends of the exact-gradient oracle (``torch.func`` and ``torch.autograd``) agree, in every mode the
engine calls them in, and ``auto`` picks ``torch.autograd`` only outside ``torch.func`` transforms."""

import pytest
import torch

from innerloop.oracles import AutogradOracle
from innerloop.transforms import inside_transform


def loss_fn(x):
    def f(p):
        return (torch.tanh(x @ p["w"]) * p["b"]).pow(2).sum()
    return f


def params(requires_grad=True):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, generator=g, dtype=torch.float64)
    b = torch.randn(2, generator=g, dtype=torch.float64)
    phi = torch.tensor(0.7, dtype=torch.float64, requires_grad=requires_grad)
    return phi, {"w": w * phi, "b": b * phi}  # a function of a "meta-parameter" phi, like theta_j


@pytest.mark.parametrize("order", ["second", "first"])
def test_backends_give_the_same_gradient_and_meta_gradient(order):
    x = torch.randn(4, 3, dtype=torch.float64)
    out = {}
    for backend in ("func", "autograd"):
        phi, p = params()
        loss, g, queries = AutogradOracle(order, backend)(loss_fn(x), p)
        assert queries == 1
        meta = (g["w"].sum() + g["b"].pow(2).sum())
        dphi = torch.autograd.grad(meta, phi, allow_unused=True)[0] if meta.requires_grad else None
        out[backend] = (loss.detach(), {k: v.detach() for k, v in g.items()}, dphi)
    (l1, g1, d1), (l2, g2, d2) = out["func"], out["autograd"]
    torch.testing.assert_close(l1, l2, rtol=1e-12, atol=0)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-12, atol=1e-14)
    if order == "second":
        torch.testing.assert_close(d1, d2, rtol=1e-12, atol=1e-14)  # second order: d g / d phi flows
    else:
        assert d1 is None and d2 is None  # first order: the gradient is a constant for the meta-gradient


def test_autograd_backend_without_grad_mode_builds_no_graph():
    """Evaluation runs under no_grad: gradients still come back, nothing is kept for a meta-backward."""
    x = torch.randn(4, 3, dtype=torch.float64)
    phi, p = params()
    with torch.no_grad():
        loss, g, _ = AutogradOracle("second", "autograd")(loss_fn(x), {k: v.detach() for k, v in p.items()})
        ref, _ = torch.func.grad_and_value(loss_fn(x))({k: v.detach() for k, v in p.items()})
    assert not loss.requires_grad and not any(v.requires_grad for v in g.values())
    for k in g:
        torch.testing.assert_close(g[k], ref[k], rtol=1e-12, atol=1e-14)


def test_unused_parameters_get_zero_gradients_like_torch_func():
    p = {"w": torch.randn(2, requires_grad=True), "unused": torch.randn(3, requires_grad=True)}
    _, g, _ = AutogradOracle("second", "autograd")(lambda q: q["w"].pow(2).sum(), p)
    assert torch.equal(g["unused"], torch.zeros(3))


def test_auto_uses_autograd_outside_transforms_and_func_inside(monkeypatch):
    calls = []
    real = torch.func.grad_and_value

    def spy(*a, **k):
        calls.append("func")
        return real(*a, **k)

    monkeypatch.setattr(torch.func, "grad_and_value", spy)
    x = torch.randn(5, 4, 3)
    oracle = AutogradOracle("second")
    p = {"w": torch.randn(3, 2, requires_grad=True), "b": torch.randn(2, requires_grad=True)}
    oracle(loss_fn(x[0]), p)
    assert calls == []  # the plain loop: torch.autograd.grad, no torch.func transform
    torch.vmap(lambda xi: oracle(loss_fn(xi), p)[0])(x)
    assert calls == ["func"]  # under vmap: torch.func


def test_inside_transform():
    assert not inside_transform()
    seen = []
    torch.vmap(lambda t: (seen.append(inside_transform()), t)[1])(torch.ones(2))
    torch.func.grad(lambda t: (seen.append(inside_transform()), t.sum())[1])(torch.ones(2))
    assert seen == [True, True]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        AutogradOracle("second", "jax")
