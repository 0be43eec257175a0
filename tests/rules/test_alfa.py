"""ALFA's update equations, initial values, and the ablation options of Tables 5-7."""

import math

import pytest
import torch

from innerloop.errors import ConfigError
from innerloop.rules import ALFA, SGD, PerStepLayerLR

SHAPES = {"w1": torch.Size([3, 2]), "b1": torch.Size([3]), "w2": torch.Size([1, 3])}


def params_grads(seed=0):
    g = torch.Generator().manual_seed(seed)
    p = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
    d = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
    return p, d


def test_initial_values_follow_the_authors_code():
    r = ALFA(SHAPES, steps=5, form="paper")
    assert r.alpha0.shape == (3, 6) and torch.all(r.alpha0 == 0.01)
    assert torch.allclose(r.beta0, torch.full((3, 6), 5e-6))
    layers = [m for m in r.generator if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in layers] == [(6, 6), (6, 6), (6, 6)]
    r2 = ALFA(SHAPES, steps=5, generator_layers=2, form="paper")
    assert len([m for m in r2.generator if isinstance(m, torch.nn.Linear)]) == 2


def test_random_init_variant_has_per_parameter_decay_and_unit_beta0():
    r = ALFA(SHAPES, steps=2, per_param_decay=True, form="paper")
    assert torch.all(r.beta0 == 1.0)
    assert {k: tuple(v.shape) for k, v in r.beta_pp.items()} == {k: tuple(s) for k, s in SHAPES.items()}
    assert torch.allclose(r.beta_pp["w1"], torch.full((3, 2), 5e-6))


def test_update_equation_code_form():
    r = ALFA(SHAPES, steps=2, form="paper")
    p, d = params_grads()
    new, _, info = r(p, d, {}, 1)
    tau = torch.cat([torch.stack([p[k].mean() for k in SHAPES]), torch.stack([d[k].mean() for k in SHAPES])])
    out = r.generator(tau)
    for i, k in enumerate(SHAPES):
        expect = (1 - out[3 + i] * r.beta0[i, 1]) * p[k] - out[i] * r.alpha0[i, 1] * d[k]
        torch.testing.assert_close(new[k], expect)
    torch.testing.assert_close(info["lr"], out[:3] * r.alpha0[:, 1])
    torch.testing.assert_close(info["wd"], out[3:] * r.beta0[:, 1])


@pytest.mark.parametrize("inputs, d_in", [("both", 6), ("weights", 3), ("gradients", 3)])
def test_generator_input_ablation(inputs, d_in):
    r = ALFA(SHAPES, steps=1, inputs=inputs, form="paper")
    assert r.generator[0].in_features == d_in
    p, d = params_grads()
    p2 = {k: v + 1.0 for k, v in p.items()}
    d2 = {k: v + 1.0 for k, v in d.items()}
    _, _, base = r(p, d, {}, 0)
    _, _, w_changed = r(p2, d, {}, 0)
    _, _, g_changed = r(p, d2, {}, 0)
    assert (not torch.equal(base["lr"], w_changed["lr"])) == (inputs in ("both", "weights"))
    assert (not torch.equal(base["lr"], g_changed["lr"])) == (inputs in ("both", "gradients"))


def test_fixed_mode_reduces_to_learned_per_step_per_layer_rates():
    r = ALFA(SHAPES, steps=3, alpha="fixed", beta="off", form="paper")
    assert r.generator is None
    lslr = PerStepLayerLR(list(SHAPES), 3, 0.01)
    p, d = params_grads()
    a, _, _ = r(p, d, {}, 2)
    b, _, _ = lslr(p, d, {}, 2)
    for k in SHAPES:
        torch.testing.assert_close(a[k], b[k])


def test_off_modes_reduce_to_sgd():
    r = ALFA(SHAPES, steps=3, alpha="off", beta="off", lr=0.05, form="paper")
    p, d = params_grads()
    a, _, _ = r(p, d, {}, 0)
    b, _, _ = SGD(0.05)(p, d, {}, 0)
    for k in SHAPES:
        torch.testing.assert_close(a[k], b[k])


@pytest.mark.parametrize("gran, shape", [("step_layer", (3, 4)), ("step", (4,)), ("layer", (3,))])
def test_granularity_shapes(gran, shape):
    r = ALFA(SHAPES, steps=3, alpha_granularity=gran, beta_granularity=gran, form="paper")
    assert tuple(r.alpha0.shape) == shape and tuple(r.beta0.shape) == shape
    p, d = params_grads()
    _, _, info = r(p, d, {}, 1)
    if gran == "step":  # one generated value shared by all layers
        assert r.generator[-1].out_features == 2
        assert torch.allclose(info["lr"], info["lr"][0].expand(3))


def test_per_layer_adaptive_is_generated_once_and_reused():
    r = ALFA(SHAPES, steps=3, alpha_granularity="layer", beta_granularity="layer", form="paper")
    p, d = params_grads(0)
    p1, d1 = params_grads(1)
    _, state, info0 = r(p, d, {}, 0)
    _, _, info1 = r(p1, d1, state, 1)  # a different learning state, same hyperparameters
    torch.testing.assert_close(info0["lr"], info1["lr"])
    torch.testing.assert_close(info0["wd"], info1["wd"])


def test_steps_beyond_training_reuse_the_last_trained_step():
    r = ALFA(SHAPES, steps=2, alpha="fixed", beta="off", form="paper")
    with torch.no_grad():
        r.alpha0.copy_(torch.arange(9.0).view(3, 3))
    p, d = params_grads()
    _, _, i1 = r(p, d, {}, 1)
    _, _, i7 = r(p, d, {}, 7)
    torch.testing.assert_close(i1["lr"], i7["lr"])


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="at least 1 inner step"):
        ALFA(SHAPES, steps=0, form="paper")
    with pytest.raises(ConfigError, match="rule.inputs"):
        ALFA(SHAPES, steps=1, inputs="loss", form="paper")
    with pytest.raises(ConfigError, match="generator_layers"):
        ALFA(SHAPES, steps=1, generator_layers=4, form="paper")


def test_robust_form_starts_as_the_learned_rate_baseline():
    """rule.form = robust: zero last generator layer, so step 0 is exactly LSLR with decay beta0."""
    r = ALFA(SHAPES, steps=3, form="robust")
    lslr = PerStepLayerLR(list(SHAPES), 3, 0.01)
    p, d = params_grads()
    for j in range(3):
        new, _, info = r(p, d, {}, j)
        ref, _, _ = lslr(p, d, {}, j)
        torch.testing.assert_close(info["lr"], torch.full((3,), 0.01))
        torch.testing.assert_close(info["wd"], torch.full((3,), 5e-6))
        for k in SHAPES:
            torch.testing.assert_close(new[k], ref[k] - 5e-6 * p[k])


@pytest.mark.parametrize("bound", [10.0, 2.0])
def test_robust_form_bounds_rates_and_keeps_decay_in_unit_interval(bound):
    r = ALFA(SHAPES, steps=2, form="robust", bound=bound)
    with torch.no_grad():
        last = r.generator[-1]
        last.bias.copy_(torch.tensor([1e3, -1e3, 0.0, 1e3, -1e3, 0.0]))
        r.log_beta0.fill_(math.log(0.5))
    _, _, info = r(*params_grads(), {}, 0)
    torch.testing.assert_close(info["lr"], torch.tensor([0.01 * bound, 0.01 / bound, 0.01]))
    torch.testing.assert_close(info["wd"], torch.tensor([min(0.5 * bound, 1.0), 0.5 / bound, 0.5]))  # at most 1
    with torch.no_grad():
        r.log_beta0.fill_(-50.0)  # any meta-learned value: decay stays positive
    assert torch.all(r(*params_grads(), {}, 0)[2]["wd"] > 0)


def test_robust_form_options_are_checked():
    with pytest.raises(ConfigError, match="rule.form"):
        ALFA(SHAPES, steps=1, form="sturdy")
    with pytest.raises(ConfigError, match="rule.bound"):
        ALFA(SHAPES, steps=1, form="robust", bound=1.0)
    with pytest.raises(ConfigError, match="rule.beta = 'off'"):
        ALFA(SHAPES, steps=1, form="robust", weight_decay=0.0)


def test_state_schedule_has_one_post_multiplier_per_layer_and_any_step_count():
    r = ALFA(SHAPES, steps=2, form="robust", schedule="state")
    assert r.log_alpha0.shape == (3,) and r.log_beta0.shape == (3,) and r.steps is None
    with torch.no_grad():
        r.log_alpha0.copy_(torch.tensor([0.1, 0.2, 0.3]).log())
    p, d = params_grads()
    for step in (0, 1, 7):  # past the 2 steps it was built with: same post-multipliers, no clamping to step 1
        torch.testing.assert_close(r(p, d, {}, step)[2]["lr"], torch.tensor([0.1, 0.2, 0.3]))
    assert ALFA(SHAPES, steps=2, schedule="state", alpha_granularity="step", form="paper").alpha0.shape == (1,)
    with pytest.raises(ConfigError, match="rule.schedule"):
        ALFA(SHAPES, steps=1, schedule="forever", form="paper")
