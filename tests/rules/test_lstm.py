"""The coordinate-wise LSTM fine-tuner: meta-gradients, any-shape parameters, incongruous batches."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import LearnedInit, RandomInit
from innerloop.models import MLP
from innerloop.objectives import TrajectoryLoss
from innerloop.oracles import AutogradOracle, ZerothOrderOracle
from innerloop.oracles.keyed import TaskKey, draw_salt, mix
from innerloop.rules import CoordinateLSTM
from innerloop.rules.lstm import log_and_sign
from tests.gradcheck import directional_checks


class TinyCNN(nn.Module):
    def __init__(self, classes=2):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, classes)

    def forward(self, x):
        return self.fc(F.max_pool2d(torch.tanh(self.conv(x)), 2).flatten(1))


def lstm(**kw):
    torch.manual_seed(5)
    r = CoordinateLSTM(hidden=4, layers=2, **kw).double()
    with torch.no_grad():
        for p in r.parameters():
            p.mul_(3.0)  # a rule that does something visible in 3 steps
    return r


def mlp_meta(order, objective="lft", executor="loop", preprocess="log_sign", oracle=None, **rule):
    torch.manual_seed(0)
    model = MLP(1, [6], 1, activation="tanh").double()
    obj = TrajectoryLoss("uniform", "query" if objective == "lft" else "union")
    return MetaLearner(Learner(model, "mse"), RandomInit(model).double(), lstm(preprocess=preprocess, **rule),
                       oracle or AutogradOracle(order), obj, steps=3, executor=executor)


#: the stabilised output forms of issue 23 (each checked like the papers' additive form)
STABLE = {"rate": {"output": "rate", "scale": 0.5}, "bounded": {"max_update": 0.3},
          "descent": {"descent": True}, "bounded_descent": {"max_update": 0.3, "descent": True},
          "adam": {"output": "adam", "scale": 0.05, "adam_range": 4.0}}


def keyed(meta) -> bool:
    return getattr(meta.oracle, "keyed", False)


def loss_at(meta, batch):
    torch.manual_seed(11)  # the same per-task random inits (and zeroth-order directions) for every evaluation
    salt = draw_salt() if keyed(meta) else None  # meta_backward draws the batch's salt first
    fam, tasks = next(iter(meta.groups(batch).items()))
    n = tasks[0].shape[0]
    per_task, _ = meta.task_starts(fam, n)
    w = meta.objective.step_weights(meta.steps, 0)
    tot = 0
    for i in range(n):
        p = {k: v[i] for k, v in per_task.items()}
        x_in, y_in, x_m, y_m = meta.objective.split(*(t[i] for t in tasks))
        key = None if salt is None else TaskKey(torch.tensor(i), salt)
        tot = tot + meta.loop.meta_loss(p, None, {}, x_in, y_in, x_m, y_m, w, key=key)[0]
    return tot / n


def grads(meta, batch):
    meta.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    meta.meta_backward(batch)
    return [p.grad.clone() for p in meta.parameters()]


def test_log_and_sign_matches_l2l():
    g = torch.tensor([1e-12, -1e-3, 0.5, -20.0], dtype=torch.float64)
    out = log_and_sign(g, 5.0)
    assert out.shape == (4, 2)
    torch.testing.assert_close(out[:, 0], torch.clamp(torch.log(g.abs() + torch.finfo(torch.float64).eps) / 5, min=-1))
    torch.testing.assert_close(out[:, 1], torch.clamp(g * torch.exp(torch.tensor(5.0, dtype=torch.float64)), -1, 1))


@pytest.mark.parametrize("objective", ["lft", "l2o"])
@pytest.mark.parametrize("preprocess", ["log_sign", "none"])
def test_meta_gradient_matches_finite_differences(sine_batch, objective, preprocess):
    meta = mlp_meta("second", objective, preprocess=preprocess)
    g = grads(meta, sine_batch)
    for an, fd in directional_checks(list(meta.parameters()), lambda: loss_at(meta, sine_batch), g, directions=2, seed=3):
        assert an == pytest.approx(fd, rel=1e-5, abs=1e-8)


def hand_unroll(meta, batch, gradient):
    """The 3-task, 3-step LFT meta-gradient written out with torch.autograd; ``gradient(meta, theta, xs, ys, g)``
    is the rule's input, ``g`` a generator holding task i's step-j directions (the same seeded per-task inits and
    directions as :func:`grads`: keyed by ``mix(mix(salt, j), i)``, or the global stream in call order)."""
    rule = meta.rule
    torch.manual_seed(11)
    salt = draw_salt() if keyed(meta) else None
    per_task = meta.inits["default"].sample(3)
    total = 0
    for i in range(3):
        xs, ys, xq, yq = (t[i] for t in batch)
        theta = {k: v[i].clone().requires_grad_() for k, v in per_task.items()}
        state = rule.init_state(theta)
        for j in range(3):
            g = None if salt is None else torch.Generator().manual_seed(mix(mix(salt, j), i))
            theta, state, _ = rule(theta, gradient(meta, theta, xs, ys, g), state, j)
            total = total + F.mse_loss(meta.learner.forward(theta, xq), yq)
    return torch.autograd.grad(total / 3, list(meta.parameters()))


def test_detached_inputs_match_a_hand_written_unroll(sine_batch):
    """Without second derivatives (L2L's default) the gradient input is a constant."""
    def detached(meta, theta, xs, ys, g):
        g = torch.autograd.grad(F.mse_loss(meta.learner.forward(theta, xs), ys), list(theta.values()))
        return {k: t.detach() for k, t in zip(theta, g)}

    meta = mlp_meta("first", "lft")
    for a, b in zip(grads(meta, sine_batch), hand_unroll(meta, sine_batch, detached)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("objective", ["lft", "l2o"])
@pytest.mark.parametrize("noise", ["keyed", "stream"])
def test_zeroth_order_meta_gradient_matches_finite_differences(sine_batch, objective, noise):
    """The ZO estimate kept in the meta-graph (LFT Statement 1): exact derivative of the seeded meta-loss."""
    meta = mlp_meta("first", objective, preprocess="none", oracle=ZerothOrderOracle(q=4, mu=1e-3, noise=noise))
    g = grads(meta, sine_batch)
    for an, fd in directional_checks(list(meta.parameters()), lambda: loss_at(meta, sine_batch), g, directions=2, seed=3):
        assert an == pytest.approx(fd, rel=1e-5, abs=1e-8)


def written_out_estimate(q, mu, detach=False, directions="gaussian", antithetic=False):
    """The zeroth-order estimate for :func:`hand_unroll`, from the generator's q x d Gaussian draw: orthonormalised
    (QR) and scaled to norm sqrt(d) if ``orthogonal``; (1/q) sum_i (f(theta + mu u_i) - f(theta)) / mu u_i, or with
    central differences (f(theta + mu u_i) - f(theta - mu u_i)) / (2 mu) if ``antithetic``."""
    def estimate(meta, theta, xs, ys, g):
        names, sizes = list(theta), [t.numel() for t in theta.values()]
        unflat = lambda vec: {k: v.view_as(theta[k]) for k, v in zip(names, vec.split(sizes))}
        f = lambda vec: F.mse_loss(meta.learner.forward(unflat(vec), xs), ys)
        flat = torch.cat([t.reshape(-1) for t in theta.values()])
        u = torch.randn(q * flat.numel(), dtype=flat.dtype, generator=g).view(q, -1)
        if directions == "orthogonal":
            u = torch.linalg.qr(u.T).Q.T * flat.numel() ** 0.5
        if antithetic:
            est = sum((f(flat + mu * u[r]) - f(flat - mu * u[r])) / (2 * mu) * u[r] for r in range(q)) / q
        else:
            est = sum((f(flat + mu * u[r]) - f(flat)) / mu * u[r] for r in range(q)) / q
        return unflat(est.detach() if detach else est)

    return estimate


@pytest.mark.parametrize("noise", ["keyed", "stream"])
@pytest.mark.parametrize("detach", [True, False])
def test_zeroth_order_meta_gradient_matches_a_hand_written_unroll(sine_batch, detach, noise):
    """Same seeded directions, the estimate written out: (1/q) sum_i (f(theta + mu u_i) - f(theta)) / mu u_i."""
    q, mu = 4, 1e-3
    estimate = written_out_estimate(q, mu, detach=detach)
    meta = mlp_meta("first", "lft", oracle=ZerothOrderOracle(q=q, mu=mu, detach=detach, noise=noise))
    for a, b in zip(grads(meta, sine_batch), hand_unroll(meta, sine_batch, estimate)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


#: the structured estimators of issue 23: orthogonal directions and/or central (antithetic) differences
STRUCTURED = [("orthogonal", False), ("gaussian", True), ("orthogonal", True)]


@pytest.mark.parametrize("directions,antithetic", STRUCTURED)
def test_structured_zeroth_order_meta_gradient_matches_finite_differences(sine_batch, directions, antithetic):
    meta = mlp_meta("first", "lft", preprocess="none",
                    oracle=ZerothOrderOracle(q=4, mu=1e-3, directions=directions, antithetic=antithetic))
    g = grads(meta, sine_batch)
    for an, fd in directional_checks(list(meta.parameters()), lambda: loss_at(meta, sine_batch), g, directions=2, seed=3):
        assert an == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("directions,antithetic", STRUCTURED)
def test_structured_zeroth_order_meta_gradient_matches_a_hand_written_unroll(sine_batch, directions, antithetic):
    """The keyed directions written out: orthonormalised (QR) and scaled to norm sqrt(d), and/or
    (1/q) sum_i (f(theta + mu u_i) - f(theta - mu u_i)) / (2 mu) u_i."""
    q, mu = 4, 1e-3
    estimate = written_out_estimate(q, mu, directions=directions, antithetic=antithetic)
    meta = mlp_meta("first", "lft", oracle=ZerothOrderOracle(q=q, mu=mu, directions=directions, antithetic=antithetic))
    for a, b in zip(grads(meta, sine_batch), hand_unroll(meta, sine_batch, estimate)):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("directions,antithetic", STRUCTURED)
def test_structured_zeroth_order_vmap_and_loop_agree(sine_batch, directions, antithetic):
    def make(executor):
        return mlp_meta("first", "lft", executor=executor,
                        oracle=ZerothOrderOracle(q=4, mu=1e-3, directions=directions, antithetic=antithetic))

    for x, y in zip(grads(make("loop"), sine_batch), grads(make("vmap"), sine_batch)):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_detaching_the_zeroth_order_estimate_changes_the_meta_gradient(sine_batch):
    """Guards against a silently detached (or silently kept) estimate."""
    kept = torch.cat([g.flatten() for g in grads(mlp_meta("first", oracle=ZerothOrderOracle(q=4, mu=1e-3)), sine_batch)])
    cut = torch.cat([g.flatten() for g in grads(mlp_meta("first", oracle=ZerothOrderOracle(q=4, mu=1e-3, detach=True)),
                                                sine_batch)])
    assert float((kept - cut).norm() / kept.norm()) > 1e-3


def test_vmap_and_loop_agree(sine_batch):
    a = grads(mlp_meta("second", executor="loop"), sine_batch)
    b = grads(mlp_meta("second", executor="vmap"), sine_batch)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def image_batch(n=2, size=8, classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, 1, size, size, generator=g, dtype=torch.float64), torch.randint(0, classes, (n, 4), generator=g),
            torch.randn(n, 6, 1, size, size, generator=g, dtype=torch.float64), torch.randint(0, classes, (n, 6), generator=g))


def test_one_fine_tuner_steps_an_mlp_and_a_cnn_in_one_meta_batch(sine_batch):
    torch.manual_seed(0)
    mlp, cnn = MLP(1, [6], 1, activation="tanh").double(), TinyCNN().double()
    rule = lstm()
    families = {"sine-mlp": Learner(mlp, "mse"), "image-cnn": Learner(cnn, "cross_entropy")}
    inits = {"sine-mlp": RandomInit(mlp).double(), "image-cnn": RandomInit(cnn).double()}
    meta = MetaLearner(families, inits, rule, AutogradOracle("second"), TrajectoryLoss(), steps=3)
    assert meta.modes == {"sine-mlp": "vmap", "image-cnn": "loop"}
    batch = {"sine-mlp": sine_batch, "image-cnn": image_batch()}
    torch.manual_seed(1)
    meta.zero_grad()
    losses, _ = meta.meta_backward(batch)
    assert losses.shape == (5,)
    both = [p.grad.clone() for p in rule.parameters()]
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in both)
    # the mixed meta-gradient is the task-weighted mean of the per-family ones (same random inits)
    parts = []
    for fam in ("sine-mlp", "image-cnn"):
        single = MetaLearner({fam: families[fam]}, {fam: inits[fam]}, rule, AutogradOracle("second"), TrajectoryLoss(), steps=3)
        torch.manual_seed(1)
        if fam == "image-cnn":
            inits["sine-mlp"].sample(3)  # consume the draws the mixed batch made first
        single.zero_grad()
        single.meta_backward({fam: batch[fam]})
        parts.append([p.grad.clone() for p in rule.parameters()])
    for g, a, b in zip(both, *parts):
        torch.testing.assert_close(g, (3 * a + 2 * b) / 5, rtol=1e-9, atol=1e-12)
    values, _ = meta.evaluate(batch, steps=2)
    assert values.shape == (5,)


def test_maml_refuses_incongruous_batches():
    mlp, cnn = MLP(1, [6], 1), TinyCNN()
    with pytest.raises(ConfigError, match="MAML does not apply"):
        MetaLearner({"a": Learner(mlp, "mse"), "b": Learner(cnn, "cross_entropy")},
                    {"a": LearnedInit(mlp), "b": LearnedInit(cnn)}, CoordinateLSTM(), steps=2)


def test_any_shape_same_meta_parameters():
    rule = CoordinateLSTM()
    n_meta = sum(p.numel() for p in rule.parameters())
    for shapes in ({"w": (3,)}, {"a": (5, 7), "b": (2, 3, 4, 4)}):
        params = {k: torch.randn(s) for k, s in shapes.items()}
        state = rule.init_state(params)
        new, state, _ = rule(params, {k: torch.randn(s) for k, s in shapes.items()}, state, 0)
        assert {k: v.shape for k, v in new.items()} == {k: torch.Size(s) for k, s in shapes.items()}
        assert state["h"].shape == (2, sum(torch.Size(s).numel() for s in shapes.values()), 20)
    assert sum(p.numel() for p in rule.parameters()) == n_meta


@pytest.mark.parametrize("form", sorted(STABLE))
def test_stable_forms_meta_gradient_matches_finite_differences(sine_batch, form):
    """Second order (the exact derivative); first order, which drops d(grad)/d(meta), is the hand unroll below."""
    meta = mlp_meta("second", "lft", **STABLE[form])
    g = grads(meta, sine_batch)
    assert any(float(t.abs().max()) > 0 for t in g)
    for an, fd in directional_checks(list(meta.parameters()), lambda: loss_at(meta, sine_batch), g, directions=2, seed=3):
        assert an == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("form", sorted(STABLE))
def test_stable_forms_match_a_hand_written_unroll(sine_batch, form):
    """First order, the stabilised update written out by hand (not through the rule's own helpers)."""
    def detached(meta, theta, xs, ys, g):
        g = torch.autograd.grad(F.mse_loss(meta.learner.forward(theta, xs), ys), list(theta.values()))
        return {k: t.detach() for k, t in zip(theta, g)}

    meta = mlp_meta("first", "lft", **STABLE[form])
    meta_hand = mlp_meta("first", "lft", **STABLE[form])
    rule = meta_hand.rule

    def by_hand(theta, grads, state, j):
        flat_g = torch.cat([grads[k].reshape(-1) for k in theta])
        x = log_and_sign(flat_g, rule.k)
        moments = {}
        if rule.output == "adam":  # Kingma & Ba's Algorithm 1, eps inside the root
            m = 0.9 * state["m"] + 0.1 * flat_g
            v = 0.999 * state["v"] + 0.001 * flat_g**2
            step = (m / (1 - 0.9 ** (j + 1))) / torch.sqrt(v / (1 - 0.999 ** (j + 1)) + 1e-16)
            x = torch.cat([x, step[:, None]], dim=1)
            moments = {"m": m, "v": v}
        hs, cs = [], []
        for layer in range(rule.layers):
            gates = x @ rule.ih[layer].weight.T + rule.ih[layer].bias + state["h"][layer] @ rule.hh[layer].weight.T
            i, f, gg, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * state["c"][layer] + torch.sigmoid(i) * torch.tanh(gg)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
            x = h
        out = (x @ rule.head.weight.T + rule.head.bias).squeeze(-1)
        new, off = {}, 0
        for k, p in theta.items():
            n = p.numel()
            g, o = flat_g[off:off + n], out[off:off + n]
            if rule.output == "adam":
                d = -rule.log_rate.exp() * rule.adam_range ** torch.tanh(o) * step[off:off + n]
            else:
                d = -rule.scale * torch.sigmoid(o) * g if rule.output == "rate" else rule.scale * o
            if rule.descent:
                dot = (d * g).sum()
                d = d - (dot if dot > 0 else 0.0) / (g * g).sum() * g
            if rule.max_update:
                cap = rule.max_update * g.norm()
                d = d / torch.sqrt(1 + (d.norm() / cap) ** 2)
            new[k] = p + d.view_as(p)
            off += n
        return new, {"h": torch.stack(hs), "c": torch.stack(cs), **moments}, {}

    meta_hand.rule.forward = by_hand  # the unroll below calls the instance's forward
    a = grads(meta, sine_batch)
    b = hand_unroll(meta_hand, sine_batch, detached)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("form", sorted(STABLE))
def test_stable_forms_vmap_and_loop_agree(sine_batch, form):
    a = grads(mlp_meta("second", executor="loop", **STABLE[form]), sine_batch)
    b = grads(mlp_meta("second", executor="vmap", **STABLE[form]), sine_batch)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_stable_forms_keep_their_promises():
    """rate and descent never step uphill; bounded never exceeds rho * ||g||; none moves without a gradient."""
    torch.manual_seed(3)
    params = {"w": torch.randn(5, 4, dtype=torch.float64), "b": torch.randn(4, dtype=torch.float64)}
    grads = {"w": torch.randn(5, 4, dtype=torch.float64), "b": torch.randn(4, dtype=torch.float64)}
    zero = {k: torch.zeros_like(v) for k, v in grads.items()}
    for form, kw in STABLE.items():
        rule = lstm(**kw).requires_grad_(False)
        state = rule.init_state(params)
        new, _, _ = rule(params, grads, state, 0)
        for k in params:
            d = new[k] - params[k]
            if kw.get("descent") or kw.get("output") == "rate":
                assert float((d * grads[k]).sum()) <= 1e-12, (form, k)
            if kw.get("max_update"):
                assert float(d.norm()) < kw["max_update"] * float(grads[k].norm()), (form, k)
        if kw.get("max_update") or kw.get("output") == "rate":
            still, _, _ = rule(params, zero, state, 0)
            for k in params:
                torch.testing.assert_close(still[k], params[k], rtol=0, atol=0)


def test_untrained_adam_form_is_adam_and_its_steps_are_bounded():
    """head_init_scale = 0: the rule's first steps equal Adam's at rate ``scale``; trained (random head), no
    coordinate moves further than adam_range * rate * |Adam's step|, and each moves the way Adam's step points."""
    from innerloop.rules import Adam

    torch.manual_seed(4)
    params = {"w": torch.randn(5, 4, dtype=torch.float64), "b": torch.randn(4, dtype=torch.float64)}
    untrained = CoordinateLSTM(hidden=4, layers=1, output="adam", scale=0.01, head_init_scale=0.0).double()
    adam = Adam(float(untrained.log_rate.exp()), eps=0.0)  # log(0.01), rounded to float32 at construction
    p_rule, s_rule = params, untrained.init_state(params)
    p_adam, s_adam = params, adam.init_state(params)
    for j in range(4):
        grads = {k: torch.randn_like(v) for k, v in params.items()}
        p_rule, s_rule, _ = untrained(p_rule, grads, s_rule, j)
        p_adam, s_adam, _ = adam(p_adam, grads, s_adam, j)
        for k in params:
            torch.testing.assert_close(p_rule[k], p_adam[k], rtol=1e-12, atol=1e-12)
    trained = lstm(output="adam", scale=0.01, adam_range=3.0).requires_grad_(False)
    with torch.no_grad():
        trained.log_rate.fill_(-4.0)
    rate = float(trained.log_rate.exp())
    grads = {k: torch.randn_like(v) for k, v in params.items()}
    new, _, _ = trained(params, grads, trained.init_state(params), 0)
    for k in params:
        d, step = new[k] - params[k], grads[k].sign()  # Adam's first step is sign(g)
        assert bool((d * step <= 0).all()) and bool((d.abs() <= 3.0 * rate * (1 + 1e-12)).all())
        assert bool((d.abs() >= rate / 3.0 * (1 - 1e-12)).all())
        assert float((d.abs() / rate - 1).abs().min()) > 0.1  # the trained head does change Adam's rate


def test_unknown_output_form_is_a_config_error():
    with pytest.raises(ConfigError, match="rule.output"):
        CoordinateLSTM(output="multiplicative")
    with pytest.raises(ConfigError, match="rule.max_update"):
        CoordinateLSTM(max_update=-1.0)
    with pytest.raises(ConfigError, match="rule.adam_range"):
        CoordinateLSTM(output="adam", adam_range=0.5)


@pytest.mark.parametrize("order", ["first", "second"])
def test_log_objective_meta_gradient(sine_batch, order):
    """objective log = True: the meta-loss is sum_t log L_t (checked by hand), its meta-gradient matches finite
    differences (second order) and equals sum_t grad(L_t) / L_t taken from the plain objective's terms."""
    meta = mlp_meta(order, "lft", output="adam", scale=0.05)
    meta.objective = TrajectoryLoss("uniform", "query", log=True)
    for loop in meta.loops.values():
        loop.log_meta = True
    plain = mlp_meta(order, "lft", output="adam", scale=0.05)
    fam, tasks = next(iter(meta.groups(sine_batch).items()))
    torch.manual_seed(11)
    per_task, _ = meta.task_starts(fam, tasks[0].shape[0])
    p = {k: v[0] for k, v in per_task.items()}
    xs, ys, xq, yq = (t[0] for t in tasks)
    terms = []
    for t in range(1, 4):  # L_t from the plain objective with one-hot step weights
        w = [0.0] * 3
        w[t - 1] = 1.0
        terms.append(plain.loop.meta_loss(p, None, {}, xs, ys, xq, yq, w)[0])
    logged = meta.loop.meta_loss(p, None, {}, xs, ys, xq, yq, [1.0] * 3)[0]
    torch.testing.assert_close(logged, sum(torch.log(t) for t in terms), rtol=1e-12, atol=1e-12)
    ga = torch.autograd.grad(logged, list(meta.rule.parameters()))
    gb = torch.autograd.grad(sum(t / t.detach() for t in terms), list(plain.rule.parameters()))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)
    if order == "second":
        g = grads(meta, sine_batch)
        for an, fd in directional_checks(list(meta.parameters()), lambda: loss_at(meta, sine_batch), g, directions=2,
                                         seed=3):
            assert an == pytest.approx(fd, rel=1e-5, abs=1e-8)
