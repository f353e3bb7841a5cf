"""Attack engine: agreement with torchattacks/pyautoattack, invariants, validation."""

import sys
from pathlib import Path

import pytest
import torch
import torchattacks
from torch import nn

from robustmix.attacks import Attack, AttackResult, AutoAttack, list_attacks, make_attack, sweep
from robustmix.errors import ConfigError
from robustmix.schema import THREAT_MODELS

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_models import fit_on_prototypes, prototype_data  # noqa: E402

N = 32  # a power of two: mean- and sum-reduced losses then give bit-identical gradient signs


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 14 * 14, 10))


_data = prototype_data  # the name test_radius imports


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = fit_on_prototypes(_net(), 40, gen)
    x, y = _data(N, gen)
    assert (model(x).argmax(1) == y).float().mean() > 0.7
    return model, x, y


def _broken_by(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) != y


# The cheapest parameters of every registered attack: a new attack needs an entry (checked below),
# and then runs through every invariant of test_registry_x_threat_models, as every model of the
# model registry runs through test_models.py.
CHEAP = {"fgsm": {}, "pgd": {"steps": 3}, "autoattack": {"version": "custom", "attacks": ["apgd-ce"]},
         "square": {"n_queries": 20}, "transfer": {"source": "other", "source_params": {"steps": 3}},
         "fab": {"steps": 3}, "fmn": {"steps": 3}, "ddn": {"steps": 3}}
# Attacks defined in some threat models only: in the others, building one is a one-line error.
ONLY = {"ddn": ("L2",)}
REGISTERED = list_attacks()


def test_cheap_table_covers_the_attack_registry():
    assert set(CHEAP) == set(REGISTERED), "a new attack needs an entry in CHEAP"
    assert {"fgsm", "pgd", "autoattack", "square", "transfer"} <= set(REGISTERED)


@pytest.mark.parametrize("tm", THREAT_MODELS)
@pytest.mark.parametrize("name", REGISTERED)
def test_registry_x_threat_models(setup, name, tm):
    """Every registered attack in every threat model: bounds, scoring, determinism, RNG and modes."""
    if tm not in ONLY.get(name, THREAT_MODELS):
        with pytest.raises(ConfigError, match=f"{name} .* only, not {tm}; add threat_models") as err:
            make_attack(name, dict(CHEAP[name]), tm)
        assert "\n" not in str(err.value)
        return
    model, x, y = setup
    x, y = x[:4], y[:4]
    params = dict(CHEAP[name])
    if name == "transfer":
        torch.manual_seed(5)
        params["source_model"] = _net().eval()
    atk = make_attack(name, params, tm)
    # L1: an eps that breaks most examples, so AutoAttack's APGD-L1 restarts stop early (test time).
    eps = {"Linf": 0.1, "L2": 1.0, "L1": 10.0}[tm]
    model.train()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    r = atk.run(model, x, y, eps, seed=3)
    assert model.training and torch.equal(torch.get_rng_state(), before)  # caller's state is untouched
    model.eval()
    d = (r.x_adv - x).flatten(1)
    norms = d.abs().amax(1) if tm == "Linf" else d.abs().sum(1) if tm == "L1" else d.norm(dim=1)
    assert float(norms.max()) <= eps + 1e-6 and 0 <= float(r.x_adv.min()) and float(r.x_adv.max()) <= 1
    with torch.no_grad():
        logits = model(r.x_adv)
        clean = model(x).argmax(1) == y
    assert torch.equal(r.correct, logits.argmax(1) == y) and bool(((r.margin > 0) == r.correct).all())
    assert not bool((r.correct & ~clean).any())
    # Deterministic from the seed, also inside a sweep (nesting attacks only the still-robust examples).
    res = sweep(atk, model, x, y, [0.0, eps], seed=3, nested=False)
    assert torch.equal(res[eps].x_adv, r.x_adv) and res[eps].passes == r.passes
    assert torch.equal(res[0.0].correct, clean)


def test_fgsm_matches_torchattacks(setup):
    model, x, y = setup
    ours = make_attack("fgsm", {}, "Linf").run(model, x, y, 0.03, seed=0)
    ref = torchattacks.FGSM(model, eps=0.03)(x, y)
    assert torch.equal(ours.correct, ~_broken_by(model, ref, y))
    assert torch.allclose(ours.x_adv, ref, atol=1e-6)


def test_pgd_linf_matches_torchattacks_and_early_stop_is_superset(setup):
    model, x, y = setup
    params = {"steps": 10, "step_size": 0.005, "random_start": False}
    full = make_attack("pgd", {**params, "early_stop": False}, "Linf").run(model, x, y, 0.02, seed=0)
    ref = torchattacks.PGD(model, eps=0.02, alpha=0.005, steps=10, random_start=False)(x, y)
    ref_broken = _broken_by(model, ref, y)
    assert torch.equal(~full.correct, ref_broken)
    assert torch.allclose(full.x_adv, ref, atol=1e-6)
    assert 0 < int(ref_broken.sum()) < N  # the comparison is not vacuous

    fast = make_attack("pgd", params, "Linf").run(model, x, y, 0.02, seed=0)
    assert bool((~fast.correct)[ref_broken].all())
    assert fast.passes < full.passes == 10 * N


def test_pgd_l2_matches_torchattacks(setup):
    model, x, y = setup
    params = {"steps": 10, "step_size": 0.2, "random_start": False, "early_stop": False}
    ours = make_attack("pgd", params, "L2").run(model, x, y, 1.0, seed=0)
    ref = torchattacks.PGDL2(model, eps=1.0, alpha=0.2, steps=10, random_start=False)(x, y)
    assert torch.equal(~ours.correct, _broken_by(model, ref, y))
    assert torch.allclose(ours.x_adv, ref, atol=1e-5)


def test_bf16_search_keeps_fp32_verdicts(setup):
    """precision='bf16' changes where the search goes, never what counts as robust: verdicts
    and margins are the fp32 model's on the adversarial examples found."""
    model, x, y = setup
    params = {"steps": 10, "random_start": False}
    fp32 = make_attack("pgd", params, "Linf").run(model, x, y, 0.02, seed=0)
    bf16 = make_attack("pgd", params, "Linf", "bf16").run(model, x, y, 0.02, seed=0)
    assert not torch.equal(bf16.x_adv, fp32.x_adv)  # the search did run in bf16
    with torch.no_grad():
        logits = model(bf16.x_adv)
    assert torch.equal(bf16.correct, logits.argmax(1) == y)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    assert torch.equal(bf16.margin, logits.gather(1, y[:, None]).squeeze(1) - others)
    assert bool((bf16.x_adv - x).abs().max() <= 0.02 + 1e-6)


@pytest.mark.usefixtures("single_thread")
def test_autoattack_custom_matches_pyautoattack(setup):
    from pyautoattack import AutoAttack

    model, x, y = setup
    eps = 0.02
    ours = make_attack("autoattack", {"version": "custom", "attacks": ["apgd-ce"]}, "Linf").run(
        model, x, y, eps, seed=3)
    aa = AutoAttack(model, attacks=["apgd-ce"], version="custom", eps=eps, seed=3, device="cpu")
    aa.verbose = False
    ref, _ = aa.run_standard_evaluation(x, y)
    ref_broken = _broken_by(model, ref, y)
    assert torch.equal(~ours.correct, ref_broken)
    clean = ~_broken_by(model, x, y)
    assert 0 < int((ref_broken & clean).sum()) < int(clean.sum())  # APGD broke some, not all
    assert ours.passes > 0


@pytest.mark.slow
@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("version,n", [("standard", 8), ("rand", 4), ("plus", 4)])
def test_autoattack_versions_match_pyautoattack(setup, version, n):
    """Each packaged version through robustmix breaks exactly what pyautoattack's own run breaks
    on the same points and seed, at an eps where some examples survive."""
    from pyautoattack import AutoAttack

    model, x, y = setup
    x, y, eps = x[:n], y[:n], 0.02
    ours = make_attack("autoattack", {"version": version}, "Linf").run(model, x, y, eps, seed=3)
    aa = AutoAttack(model, version=version, eps=eps, seed=3, device="cpu")
    aa.verbose = False
    ref, _ = aa.run_standard_evaluation(x, y)
    ref_broken = _broken_by(model, ref, y)
    assert torch.equal(~ours.correct, ref_broken)
    clean = ~_broken_by(model, x, y)
    assert 0 < int((ref_broken & clean).sum()) < int(clean.sum())


FAB_GRID = [0.02, 0.04, 0.08]


@pytest.mark.parametrize("fab,tm,grid", [("fab-t", "Linf", FAB_GRID), ("fab", "Linf", FAB_GRID),
                                         ("fab-t", "L2", [0.25, 0.5, 1.0])])
def test_fab_search_reused_across_eps_gives_the_same_sweep(setup, monkeypatch, fab, tm, grid):
    """FAB's search from the clean point is memoised across a nested sweep's eps; the sweep
    must equal one that repeats the search at every eps. 'fab' (untargeted, 5 restarts) also
    runs random-start restarts, which depend on eps and must not be memoised."""
    model, x, y = setup
    if fab == "fab":  # 5 restarts: fewer examples keep the test short
        x, y = x[:12], y[:12]
    atk = make_attack("autoattack", {"version": "custom", "attacks": [fab], "n_target_classes": 3}, tm)
    reused = sweep(atk, model, x, y, grid, seed=2)
    monkeypatch.setattr(AutoAttack, "across_eps", Attack.across_eps)  # no memo: search again per eps
    repeated = sweep(atk, model, x, y, grid, seed=2)
    for e in grid:
        assert torch.equal(reused[e].correct, repeated[e].correct)
        # Equal up to rounding: a batched kernel may round one example differently with
        # other batch-mates, and the search ran with different ones at the earlier eps. FAB's
        # iterative L2 steps can carry such a rounding into a slightly different end point
        # (seen: 2 of 32 examples, 1.2e-3, with one CPU thread), so a few may differ; a wrong
        # memo would move many examples and flip robust flags (checked exactly above).
        per_example = (reused[e].x_adv - repeated[e].x_adv).flatten(1).abs().amax(1)
        assert (per_example > 1e-6).float().mean() <= 0.1, per_example
    # Not vacuous: examples FAB left robust at the first eps are broken at a larger one from the
    # memoised search, and the memo saved passes.
    assert bool((reused[grid[0]].correct & ~reused[grid[-1]].correct).any())
    assert sum(r.passes for r in reused.values()) < sum(r.passes for r in repeated.values())


def test_fab_t_reused_search_matches_pyautoattack_at_that_eps(setup):
    """The looked-up FAB-T result at the second eps is what pyautoattack itself finds there."""
    from pyautoattack import AutoAttack as ReferenceAutoAttack

    model, x, y = setup
    params = {"version": "custom", "attacks": ["fab-t"], "n_target_classes": 3}
    res = sweep(make_attack("autoattack", params, "Linf"), model, x, y, FAB_GRID[:2], seed=2)
    still = res[FAB_GRID[0]].correct
    aa = ReferenceAutoAttack(model, attacks=["fab-t"], version="custom", eps=FAB_GRID[1], seed=2, device="cpu")
    aa.fab.n_target_classes, aa.verbose = 3, False
    ref, _ = aa.run_standard_evaluation(x[still], y[still])
    assert torch.equal(res[FAB_GRID[1]].correct[still], ~_broken_by(model, ref, y[still]))
    assert bool(_broken_by(model, ref, y[still]).any())


ATTACKS = [
    ("fgsm", {}, "Linf", 0.05), ("fgsm", {}, "L2", 1.0),
    ("pgd", {}, "Linf", 0.05), ("pgd", {"restarts": 2, "loss": "dlr"}, "L2", 1.0),
    ("square", {"n_queries": 50}, "Linf", 0.05), ("square", {"n_queries": 50}, "L2", 1.0),
    ("autoattack", {"version": "custom", "attacks": ["apgd-ce"]}, "L2", 1.0),
    ("torchattacks.PGD", {"steps": 5}, "Linf", 0.05), ("torchattacks.PGD", {"steps": 5}, "L2", 0.5),
    ("torchattacks.CW", {"steps": 10, "lr": 0.1}, "L2", 0.5),
    ("torchattacks.APGD", {"steps": 5}, "Linf", 0.05),
]


@pytest.mark.parametrize("name,params,tm,eps", ATTACKS, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_bounds_and_clean_accuracy(setup, name, params, tm, eps):
    model, x, y = setup
    atk = make_attack(name, params, tm)
    clean = atk.run(model, x, y, 0.0, seed=0)
    assert torch.equal(clean.correct, model(x).argmax(1) == y) and torch.equal(clean.x_adv, x)
    r = atk.run(model, x, y, eps, seed=0)
    assert isinstance(r, AttackResult) and r.x_adv.shape == x.shape
    d = (r.x_adv - x).flatten(1)
    norms = d.abs().amax(1) if tm == "Linf" else d.abs().sum(1) if tm == "L1" else d.norm(dim=1)
    assert float(norms.max()) <= eps + 1e-6
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
    assert not bool((r.correct & ~clean.correct).any())  # clean-wrong examples stay wrong
    with torch.no_grad():
        logits = model(r.x_adv)
    assert torch.equal(r.correct, logits.argmax(1) == y)
    assert bool(((r.margin > 0) == r.correct).all())


def test_transfer_bounds(setup):
    model, x, y = setup
    torch.manual_seed(5)
    source = _net().eval()
    atk = make_attack("transfer", {"source": "other", "source_model": source}, "Linf")
    r = atk.run(model, x, y, 0.1, seed=0)
    assert float((r.x_adv - x).abs().max()) <= 0.1 + 1e-6
    clean = model(x).argmax(1) == y
    assert r.passes == 10 * int(clean.sum())  # crafted on the source for clean-correct examples only
    assert not bool((r.correct & ~clean).any())


def test_nested_sweep_monotone_and_carries_examples(setup):
    model, x, y = setup
    grid = [0.05, 0.0, 0.01, 0.02, 0.1]
    res = sweep(make_attack("pgd", {}, "Linf"), model, x, y, grid, seed=0)
    eps = list(res)
    assert eps == sorted(grid)
    assert torch.equal(res[0.0].correct, model(x).argmax(1) == y)
    accs = [float(res[e].correct.float().mean()) for e in eps]
    assert all(a >= b for a, b in zip(accs, accs[1:])) and accs[-1] < accs[0]
    for lo, hi in zip(eps[1:], eps[2:]):
        was_broken = ~res[lo].correct & res[0.0].correct
        assert torch.equal(res[hi].x_adv[was_broken], res[lo].x_adv[was_broken])
        assert res[hi].passes <= N * 10
    assert res[0.0].passes == 0
    clean_wrong = ~res[0.0].correct
    assert all(torch.equal(res[e].x_adv[clean_wrong], x[clean_wrong]) for e in eps)  # never attacked

    flat = sweep(make_attack("pgd", {}, "Linf"), model, x, y, [0.0, 0.02], seed=0, nested=False)
    assert flat[0.02].passes == make_attack("pgd", {}, "Linf").run(model, x, y, 0.02, seed=0).passes


def test_mode_and_requires_grad_restored(setup):
    model, x, y = setup
    model.train()
    model[0].eval()  # mixed modes must come back per module, not as one model.train()
    model.zero_grad(set_to_none=True)
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    try:
        make_attack("pgd", {"steps": 2}, "Linf").run(model, x, y, 0.05, seed=0)
        assert seen and not any(seen)  # eval mode during the attack
        assert [m.training for m in model.modules()] == [True, False, True, True, True, True]
        assert all(p.requires_grad for p in model.parameters())
        assert all(p.grad is None for p in model.parameters())  # no weight gradients computed
    finally:
        hook.remove()
        model.eval()


@pytest.mark.parametrize("name,params", [
    ("pgd", {"restarts": 2}), ("square", {"n_queries": 20}),
    ("autoattack", {"version": "custom", "attacks": ["apgd-ce", "square"], "n_queries": 20}),
])
def test_global_rng_untouched_and_deterministic(setup, name, params):
    model, x, y = setup
    atk = make_attack(name, params, "Linf")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = atk.run(model, x[:8], y[:8], 0.05, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # a different global state must not matter
    b = atk.run(model, x[:8], y[:8], 0.05, seed=7)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.margin, b.margin) and a.passes == b.passes


class _Quantised(nn.Module):
    """Gradient masking: rounding has zero gradient almost everywhere."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 255) / 255)


def test_gradient_masking_defeats_pgd_not_square(setup):
    model, x, y = setup
    masked = _Quantised(model)
    clean = masked(x).argmax(1) == y
    pgd = make_attack("pgd", {"random_start": False}, "Linf").run(masked, x, y, 0.2, seed=0)
    assert torch.equal(pgd.correct, clean) and torch.equal(pgd.x_adv, x)
    sq = make_attack("square", {"n_queries": 300}, "Linf").run(masked, x, y, 0.2, seed=0)
    assert int(sq.correct.sum()) < int(clean.sum())


@pytest.mark.parametrize("call", [
    lambda: make_attack("nope", {}, "Linf"),
    lambda: make_attack("torchattacks.Nope", {}, "Linf"),
    lambda: make_attack("pgd", {"stepz": 3}, "Linf"),
    lambda: make_attack("pgd", {"steps": "10"}, "Linf"),
    lambda: make_attack("pgd", {"steps": 2.5}, "Linf"),
    lambda: make_attack("pgd", {"random_start": 1}, "Linf"),
    lambda: make_attack("pgd", {"loss": "hinge"}, "Linf"),
    lambda: make_attack("torchattacks.PGD", {"stepz": 3}, "Linf"),
    lambda: make_attack("torchattacks.PGD", {"eps": 0.1}, "Linf"),
    lambda: make_attack("torchattacks.PGD", {"steps": "3"}, "Linf"),
    lambda: make_attack("autoattack", {"version": "mega"}, "Linf"),
    lambda: make_attack("autoattack", {"version": "custom"}, "Linf"),
    lambda: make_attack("autoattack", {"version": "custom", "attacks": ["pgd"]}, "Linf"),
    lambda: make_attack("transfer", {}, "Linf"),
    lambda: make_attack("pgd", {}, "L0"),
    lambda: make_attack("pgd", {}, "linf"),
], ids=lambda f: None)
def test_bad_config_raises(call):
    with pytest.raises(ConfigError) as err:
        call()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("eps,tm", [(-0.1, "Linf"), ("0.1", "Linf"), (None, "Linf"), (float("nan"), "L2"),
                                    (float("inf"), "L2"), (1.5, "Linf"), (True, "Linf")])
def test_bad_eps_raises(setup, eps, tm):
    model, x, y = setup
    with pytest.raises(ConfigError) as err:
        make_attack("pgd", {}, tm).run(model, x, y, eps, seed=0)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        sweep(make_attack("pgd", {}, tm), model, x, y, [0.0, eps], seed=0)


def test_l2_eps_above_one_is_fine(setup):
    model, x, y = setup
    r = make_attack("pgd", {"steps": 2}, "L2").run(model, x, y, 1.5, seed=0)
    assert float((r.x_adv - x).flatten(1).norm(dim=1).max()) <= 1.5 + 1e-6
