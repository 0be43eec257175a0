"""The zeroth-order estimator: unbiased on a quadratic, q + 1 queries (2q + 1 antithetic), one batched call,
no autograd; orthogonal directions with central differences recover a quadratic's gradient exactly at q = d."""

import pytest
import torch

from innerloop.oracles import ZerothOrderOracle


def quadratic(d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(d, d, generator=g, dtype=torch.float64)
    a = m @ m.T / d + torch.eye(d, dtype=torch.float64)
    b = torch.randn(d, generator=g, dtype=torch.float64)
    theta = {"w": torch.randn(d, generator=g, dtype=torch.float64)}
    f = lambda p: 0.5 * p["w"] @ a @ p["w"] + b @ p["w"]
    return f, theta, a @ theta["w"] + b


@pytest.mark.parametrize("directions,antithetic", [("gaussian", False), ("sphere", False), ("orthogonal", False),
                                                    ("gaussian", True), ("orthogonal", True)])
def test_mean_estimate_converges_to_the_gradient(directions, antithetic):
    """Statistical test: the mean of N independent estimates is within 4 standard errors
    (per coordinate, estimated from the draws) of the true gradient, and within 5% in norm."""
    f, theta, true = quadratic()
    oracle = ZerothOrderOracle(q=20 if directions != "orthogonal" else 6, mu=1e-3, directions=directions,
                               antithetic=antithetic)
    torch.manual_seed(0)
    est = torch.stack([oracle(f, theta)[1]["w"] for _ in range(3000)])
    mean, se = est.mean(0), est.std(0) / est.shape[0] ** 0.5
    assert torch.all((mean - true).abs() <= 4 * se + 1e-9)
    assert float((mean - true).norm() / true.norm()) < 0.05


@pytest.mark.parametrize("antithetic,queries", [(False, 8), (True, 15)])
def test_counts_its_queries_in_one_batched_call(antithetic, queries):
    """q + 1 queries (2q + 1 antithetic): f(theta), then all perturbed losses (+u, and -u) in one vmapped call."""
    f, theta, _ = quadratic()
    calls = []

    def counted(p):
        calls.append(p["w"].shape)
        return f(p)

    oracle = ZerothOrderOracle(q=7, antithetic=antithetic)
    loss, grads, n = oracle(counted, theta)
    assert n == oracle.queries == queries
    assert len(calls) == 2
    assert grads["w"].shape == theta["w"].shape and torch.equal(loss, f(theta))


def test_orthogonal_directions_are_orthogonal_with_gaussian_norm():
    """Directions of norm sqrt(d), pairwise orthogonal: seen through a linear f, whose forward differences
    are exactly u . b, so each direction's component of the estimate reads back u_i . b."""
    d, q = 10, 4
    b = torch.randn(d, dtype=torch.float64)
    f = lambda p: b @ p["w"]
    torch.manual_seed(3)
    _, g, _ = ZerothOrderOracle(q=q, mu=1.0, directions="orthogonal")(f, {"w": torch.zeros(d, dtype=torch.float64)})
    torch.manual_seed(3)
    u = torch.linalg.qr(torch.randn(q, d, dtype=torch.float64).T).Q.T * d ** 0.5
    assert torch.allclose(u @ u.T, d * torch.eye(q, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(g["w"], (u @ b) @ u / q, atol=1e-10)


def test_orthogonal_antithetic_with_q_equal_d_is_the_exact_gradient_of_a_quadratic():
    """Central differences are exact on a quadratic (u . grad f), and d orthogonal directions of norm sqrt(d)
    resolve the identity: (1/d) sum_i u_i u_i^T = I. One estimate, no averaging."""
    f, theta, true = quadratic()
    _, g, queries = ZerothOrderOracle(q=10, mu=0.3, directions="orthogonal", antithetic=True)(f, theta)
    assert queries == 21 and torch.allclose(g["w"], true, rtol=1e-9, atol=1e-10)


def test_orthogonal_with_more_directions_than_parameters_is_a_config_error():
    from innerloop.errors import ConfigError

    f, theta, _ = quadratic()
    with pytest.raises(ConfigError, match="use q <= 10"):
        ZerothOrderOracle(q=11, directions="orthogonal")(f, theta)


def test_no_autograd_at_test_time():
    from innerloop.finetune import finetune_params
    from innerloop.rules import CoordinateLSTM

    f, theta, _ = quadratic()
    seen = []

    def observed(p):
        out = f(p)
        seen.append(out.requires_grad or out.grad_fn is not None or torch.is_grad_enabled())
        return out

    real = torch.func.grad_and_value
    try:
        torch.func.grad_and_value = None  # any gradient computation would fail
        params, report = finetune_params(theta, observed, CoordinateLSTM().double(), steps=4, oracle="zo")
    finally:
        torch.func.grad_and_value = real
    assert seen and not any(seen)
    assert report["queries"] == 4 * 21 + 1


def test_differentiable_during_meta_training():
    f, theta, _ = quadratic()
    w = theta["w"].clone().requires_grad_()
    torch.manual_seed(0)
    _, g, _ = ZerothOrderOracle(q=5)(f, {"w": w})
    (gw,) = torch.autograd.grad(g["w"].sum(), w)
    assert torch.isfinite(gw).all() and gw.abs().sum() > 0


def test_detached_estimate_is_the_same_value_without_a_graph():
    f, theta, _ = quadratic()
    w = theta["w"].clone().requires_grad_()
    torch.manual_seed(0)
    loss, g, q = ZerothOrderOracle(q=5)(f, {"w": w})
    torch.manual_seed(0)
    loss_d, g_d, q_d = ZerothOrderOracle(q=5, detach=True)(f, {"w": w})
    assert q == q_d == 6 and torch.equal(loss.detach(), loss_d) and torch.equal(g["w"].detach(), g_d["w"])
    assert g_d["w"].grad_fn is None and not g_d["w"].requires_grad and loss_d.grad_fn is None
