"""The Adam inner rule against ``torch.optim.Adam`` on the same losses, step for step."""

import torch

from innerloop.rules import Adam


def test_adam_rule_matches_torch_optim_adam():
    torch.manual_seed(0)
    a, x = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    loss_of = lambda w, b: ((x @ w + b).tanh() - 0.3).pow(2).sum()
    w0, b0 = torch.randn(5, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)

    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    opt = torch.optim.Adam([w, b], lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    for _ in range(25):
        opt.zero_grad()
        loss_of(w, b).backward()
        opt.step()

    rule = Adam(0.05, (0.8, 0.99), 1e-6)
    params = {"w": w0.clone(), "b": b0.clone()}
    state = rule.init_state(params)
    for j in range(25):
        ps = {k: v.detach().requires_grad_() for k, v in params.items()}
        gw, gb = torch.autograd.grad(loss_of(ps["w"], ps["b"]), [ps["w"], ps["b"]])
        params, state, _ = rule(params, {"w": gw, "b": gb}, state, j)
    torch.testing.assert_close(params["w"], w.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(params["b"], b.detach(), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(params["w"], w0)  # it moved
