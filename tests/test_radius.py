"""Minimum-norm attacks (fab, fmn, ddn) and the robustness radius: attacks against torchattacks' FAB,
valid adversarials, rows at every eps joining the worst case, the median interval against scipy,
AttackBench's optimality on a hand-made table, bad inputs, and a spec end to end."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import eagerpy as ep
import foolbox as fb
import numpy as np
import pandas as pd
import pytest
import torch
import torchattacks
from scipy import stats as sps

from robustmix.attacks import make_attack, sweep
from robustmix.attacks.minnorm import _BoxAwareGrad, _L2FMN, broken_at
from robustmix.cli import main
from robustmix.config import from_dict
from robustmix.errors import ConfigError, StoreError
from robustmix.evaluate import attack_chunk
from robustmix.radius import (BEST, GRID, MIN_NORM, example_radii, export_radii, local_optimality, median_table,
                              optimality_table, robust_curve)
from robustmix.report import write_report
from robustmix.schema import WORST_CASE
from robustmix.spec import EvalSpec
from robustmix.stats import median_interval

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_models import fit_on_prototypes  # noqa: E402
from test_attacks import _data, _net  # noqa: E402  the tiny synthetic-data CNN of the attack tests
from test_eval import evaluate, make_spec, read_examples, train_tiny  # noqa: E402  the eval tests' model and spec

pytestmark = pytest.mark.usefixtures("single_thread")

LINF_GRID = [0.0, 2 / 255, 8 / 255, 32 / 255]
L2_GRID = [0.0, 0.25, 0.5, 1.0]
L1_GRID = [0.0, 2.0, 5.0, 10.0]
GRIDS = {"Linf": LINF_GRID, "L2": L2_GRID, "L1": L1_GRID}
BIG = {"Linf": 1.0, "L2": 100.0, "L1": 1e4}  # a ball holding every radius found


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = fit_on_prototypes(_net(), 40, gen)
    x, y = _data(32, gen)
    return model, x, y


def _norm(a: torch.Tensor, b: torch.Tensor, tm: str) -> torch.Tensor:
    """||a - b||, subtracted in float64 as the recorded radius is (float32 images are exact there)."""
    d = (a.double() - b.double()).flatten(1)
    return d.abs().amax(1) if tm == "Linf" else d.abs().sum(1) if tm == "L1" else d.norm(dim=1)


# --- radius -> curve ------------------------------------------------------------

def test_radius_gives_the_curve_with_the_eps_tolerance():
    r32 = float(torch.tensor(8 / 255, dtype=torch.float32))  # 8/255 as a float32 attack reaches it
    assert r32 > 8 / 255
    radius = torch.tensor([0.0, 1 / 255, r32, 0.05, math.inf], dtype=torch.float64)
    # eps 0: only the clean-misclassified example; 8/255: the float32 8/255 counts as within the ball.
    assert broken_at(radius, 0.0).tolist() == [True, False, False, False, False]
    assert broken_at(radius, 8 / 255).tolist() == [True, True, True, False, False]
    assert broken_at(radius, 1e-7).tolist() == [True, False, False, False, False]
    curve = robust_curve(radius.numpy(), [0.0, 1 / 255, 4 / 255, 8 / 255, 0.05, 1.0])
    np.testing.assert_allclose(curve, [0.8, 0.6, 0.6, 0.4, 0.2, 0.2])


@pytest.mark.parametrize("name,tm", [("fab", "Linf"), ("fmn", "Linf"), ("fmn", "L2"), ("ddn", "L2"),
                                     ("fab", "L1"), ("fmn", "L1")])
def test_rows_at_every_eps_follow_from_one_search(setup, name, tm):
    model, x, y = setup
    atk = make_attack(name, {"steps": 20}, tm)
    grid = GRIDS[tm]
    res = sweep(atk, model, x, y, grid, seed=0)
    radius = res[grid[0]].radius
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    assert torch.equal(radius == 0, ~clean)
    assert [r.passes > 0 for r in res.values()] == [False, True, False, False]  # one search, booked once
    for e, r in res.items():
        assert r.radius is radius and torch.equal(r.correct, ~broken_at(radius, e))
        assert float(_norm(r.x_adv, x, tm).max()) <= e * (1 + 1e-6)
        with torch.no_grad():
            assert torch.equal(model(r.x_adv).argmax(1) == y, r.correct)
        assert bool(((r.margin > 0) == r.correct).all())
    # Every adversarial found is misclassified and lies exactly at its recorded radius.
    found = torch.isfinite(radius) & clean
    assert int(found.sum()) >= len(x) // 2
    run = atk.run(model, x, y, BIG[tm], seed=0)
    with torch.no_grad():
        assert bool((model(run.x_adv[found]).argmax(1) != y[found]).all())
    assert torch.equal(_norm(run.x_adv, x, tm)[found], radius[found])
    assert torch.equal(run.x_adv[~found], x[~found]) and torch.equal(run.radius, radius)


@pytest.mark.parametrize("tm,big", [("Linf", 1.0), ("L2", 100.0)])
def test_fab_radius_matches_torchattacks_fab(setup, tm, big):
    """torchattacks' FAB is a separate copy of Croce & Hein's code: with eps beyond every radius it
    returns each example's closest adversarial, which must sit at our radius."""
    model, x, y = setup
    ours = make_attack("fab", {"steps": 10}, tm).run(model, x, y, big, seed=0)
    adv = torchattacks.FAB(model, norm=tm, eps=big, steps=10, n_restarts=1, seed=0, multi_targeted=False,
                           n_classes=10)(x, y)
    with torch.no_grad():
        wrong, clean = model(adv).argmax(1) != y, model(x).argmax(1) == y
    theirs = torch.where(wrong, _norm(adv, x, tm), torch.tensor(math.inf, dtype=torch.float64))
    theirs[~clean] = 0
    assert torch.equal(torch.isinf(ours.radius), torch.isinf(theirs))
    finite = torch.isfinite(theirs)
    torch.testing.assert_close(ours.radius[finite], theirs[finite], rtol=1e-5, atol=1e-7)


def test_l2_fmn_projects_onto_the_ball_where_foolbox_does_not():
    x0 = torch.zeros(2, 1, 4, 4)
    x = x0 + torch.arange(1.0, 3.0).view(2, 1, 1, 1)  # L2 norms 4 and 8
    eps = ep.astensor(torch.tensor([1.0, 16.0]))
    ours = _L2FMN().project(ep.astensor(x), ep.astensor(x0), eps).raw
    torch.testing.assert_close(_norm(ours, x0, "L2"), torch.tensor([1.0, 8.0], dtype=torch.float64))
    if fb.__version__ == "3.3.4":  # the defect _L2FMN corrects: every x passes unchanged
        theirs = fb.attacks.L2FMNAttack().project(ep.astensor(x), ep.astensor(x0), eps).raw
        assert torch.equal(theirs, x)


def test_micro_batches_carry_the_radius(setup):
    model, x, y = setup
    atk = make_attack("fmn", {"steps": 10}, "Linf")
    res, clean = attack_chunk(atk, model, x, y, LINF_GRID, seed=0, nested=True, micro=8)
    radius = res[LINF_GRID[1]].radius
    assert radius.shape == (len(x),) and torch.equal(radius == 0, ~clean)
    for e in LINF_GRID:
        assert torch.equal(res[e].correct, ~broken_at(radius, e))


# --- statistics -----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 6, 7, 10, 31, 300])
def test_median_interval_matches_scipy(n):
    x = np.random.default_rng(n).exponential(size=n)
    med, lo, hi = median_interval(x)
    ci = sps.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    assert med == pytest.approx(np.median(x))
    np.testing.assert_equal([lo, hi], [ci.low, ci.high])  # nan where n < 6, as scipy's


def test_median_interval_textbook_and_infinite_radii():
    # n = 10: [x_(2), x_(9)], coverage 1 - 2 * 11/1024 = 97.9% (Conover, Practical Nonparametric Statistics).
    assert median_interval(np.arange(1.0, 11.0)) == (5.5, 2.0, 9.0)
    assert 1 - 2 * sps.binom.cdf(1, 10, 0.5) == pytest.approx(0.978515625)
    # Examples no attack broke sort last: a median of inf when most survive.
    assert median_interval([1.0, 2.0, math.inf, math.inf, math.inf, math.inf, math.inf])[0] == math.inf
    assert median_interval([1, 2, 3, 4, 5, 6, math.inf, math.nan]) == (4.0, 1.0, math.inf)


def _table(rows) -> pd.DataFrame:
    out = []
    for attack, kind, radii in rows:
        out += [("m", "Linf", attack, kind, i, r) for i, r in enumerate(radii)]
    return pd.DataFrame(out, columns=["model", "threat_model", "attack", "kind", "index", "radius"])


def test_optimality_on_a_hand_made_table():
    # Best per example: [0, 1, 2, 4]; eps_max 4; clean accuracy 3/4, so A_max = 3 and A_best = 7/4.
    radii = _table([("a", MIN_NORM, [0, 1, 2.5, 4]), ("b", MIN_NORM, [0, 2, 2, math.inf]),
                    ("none", GRID, [0, math.inf, math.inf, math.inf])])
    table = optimality_table(radii).set_index(["model", "attack"])["optimality"]
    # a: A = 7.5/4 -> 1 - (1.875 - 1.75) / (3 - 1.75) = 0.9; b: A = 2 -> 0.8; none: A = A_max -> 0.
    assert table[("m", "a")] == pytest.approx(0.9) and table[("m", "b")] == pytest.approx(0.8)
    assert table[("m", "none")] == pytest.approx(0.0)
    assert table[("(mean over models)", "a")] == pytest.approx(0.9)
    # The exact area equals a fine numerical integral of the step curve 1[radius > eps], up to eps_max.
    eps = np.linspace(0, 4, 400_001)
    curve = (np.array([0, 2, 2, np.inf])[:, None] > eps).mean(0)
    assert local_optimality([0, 2, 2, math.inf], [0, 1, 2, 4])[1] == pytest.approx(np.trapezoid(curve, eps), abs=1e-4)
    # Nothing finite to rank against: nan, not a made-up number.
    assert math.isnan(local_optimality([math.inf], [math.inf])[0])


def test_example_radii_and_medians_from_rows():
    rows = pd.DataFrame({
        "model": "m", "threat_model": "Linf", "eps": [0.0, 0.1, 0.2] * 3 + [0.0, 0.1, 0.2] * 3,
        "attack": ["pgd"] * 9 + ["fmn"] * 9, "index": [0, 0, 0, 1, 1, 1, 2, 2, 2] * 2,
        "correct": [False, False, False, True, True, False, True, True, True,
                    False, False, False, True, False, False, True, True, True],
        "clean_correct": [False, False, False, True, True, True, True, True, True] * 2,
        "radius": [math.nan] * 9 + [0.0] * 3 + [0.05] * 3 + [math.inf] * 3})
    radii = example_radii(rows).set_index(["attack", "index"])
    assert radii.loc[("pgd", 0), "radius"] == 0 and radii.loc[("pgd", 1), "radius"] == 0.2
    assert radii.loc[("pgd", 2), "radius"] == math.inf and radii.loc[("fmn", 1), "radius"] == 0.05
    assert set(radii["kind"]) == {GRID, MIN_NORM}
    med = median_table(example_radii(rows)).set_index("attack")
    assert list(med.index) == ["fmn", BEST]  # grid attacks bound the radius only as finely as the grid
    assert med.loc[BEST, "median"] == 0.05 and med.loc["fmn", "unbroken"] == 1
    # Corruption rows (eps = severity) in the same store give no radius and no per-example best.
    corrupted = rows.iloc[:9].assign(threat_model="corruptions", attack="fog", eps=[1.0, 3.0, 5.0] * 3)
    both = example_radii(pd.concat([rows, corrupted], ignore_index=True))
    assert set(both["threat_model"]) == {"Linf"} and len(both) == len(example_radii(rows))


# --- bad inputs -----------------------------------------------------------------

@pytest.mark.parametrize("name,params,tm,match", [
    ("ddn", {}, "Linf", "ddn is a minimum-norm attack in L2 only"),
    ("fmn", {"eps": 0.1}, "Linf", "unknown fmn argument 'eps'"),
    ("fab", {"steps": 0}, "L2", "fab argument 'steps' must be a positive number"),
    ("fmn", {"gamma": "big"}, "L2", "fmn argument 'gamma' must be float"),
])
def test_bad_inputs_are_one_line_errors(name, params, tm, match):
    with pytest.raises(ConfigError, match=match) as info:
        make_attack(name, params, tm)
    assert "\n" not in str(info.value)


def test_ddn_in_a_linf_spec_is_refused_until_restricted(tmp_path):
    table = {"name": "t", "models": ["m"], "threat": {"Linf": {"eps": [0, "8/255"]}, "L2": {"eps": [0, 0.5]}}}
    with pytest.raises(ConfigError, match=r"threat_models = \['L2'\]"):
        from_dict(EvalSpec, {**table, "attacks": [{"name": "ddn"}]})
    spec = from_dict(EvalSpec, {**table, "attacks": [{"name": "ddn", "threat_models": ["L2"]}]})
    assert spec.attack_threats(spec.attack_list[0]) == ["L2"]
    with pytest.raises(StoreError, match="does not exist"):
        export_radii(tmp_path / "nothing", tmp_path / "r.csv")


# --- end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(real_fmnist):
    return train_tiny(real_fmnist)


def test_fmn_spec_end_to_end(real_fmnist, tiny, tmp_path, capsys):
    """fmn next to pgd through run_eval: rows at every eps, joined into the worst case per example;
    then the report's radius section and the --radii export."""
    spec = make_spec(real_fmnist, ["tiny"], [{"name": "pgd", "steps": 5}, {"name": "fmn", "steps": 20}],
                     n=48, batch_size=24)
    summary = evaluate(spec, tmp_path / "res", {"tiny": tiny})
    ex = read_examples(tmp_path / "res")
    fmn, pgd = ex[ex["attack"] == "fmn"], ex[ex["attack"] == "pgd"]
    assert sorted(fmn["eps"].unique()) == sorted(pgd["eps"].unique()) and len(fmn) == len(pgd) == 4 * 48
    assert pgd["radius"].isna().all() and fmn["radius"].notna().all()
    assert (fmn["correct"] == (fmn["radius"] > fmn["eps"])).all()  # away from the tolerance band
    per_eps = fmn.groupby("eps")["passes"].sum()  # the search is booked once per unit, at the first eps > 0
    assert per_eps.iloc[0] == 0 and per_eps.iloc[1] > 0 and (per_eps.iloc[2:] == 0).all()
    both = ex.pivot_table(index=["eps", "index"], columns="attack", values="correct", aggfunc="first")
    expect = both.all(axis=1).groupby("eps").mean()
    wc = summary[summary["attack"] == WORST_CASE].set_index("eps")
    np.testing.assert_allclose(wc["robust_acc"].loc[expect.index], expect.to_numpy())
    assert (wc["attacks"] == "fmn+pgd").all()

    index = write_report(tmp_path / "res", tmp_path / "report")
    page = index.read_text()
    assert 'id="radius"' in page and "per-example best" in page and "optimality" in page
    assert main(["export", str(tmp_path / "res"), "--radii", str(tmp_path / "radii.csv")]) == 0
    radii = pd.read_csv(tmp_path / "radii.csv")
    assert set(radii["attack"]) == {"fmn", "pgd"} and len(radii) == 2 * 48
    assert "per-example best" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "res"), "--radii", str(tmp_path)]) != 0  # a directory: refused


@pytest.mark.parametrize("name", ["fab", "fmn"])
def test_l1_min_norm_curve_is_no_weaker_than_apgd_l1(setup, name):
    """Under L1 the curve from one minimum-norm search against pyautoattack's APGD-CE (L1), an
    independent fixed-eps attack at each eps: within 0.05 of it or below (seen: 0.03-0.09 below)."""
    model, x, y = setup
    grid = L1_GRID
    mn = sweep(make_attack(name, {"steps": 50}, "L1"), model, x, y, grid, seed=0)
    apgd = sweep(make_attack("autoattack", {"version": "custom", "attacks": ["apgd-ce"]}, "L1"), model, x, y, grid,
                 seed=0)
    for e in grid[1:]:
        assert float(mn[e].correct.float().mean()) <= float(apgd[e].correct.float().mean()) + 0.05, e
    assert float(mn[grid[-1]].correct.float().mean()) < float(mn[grid[1]].correct.float().mean())


def test_box_aware_gradient_drops_only_what_the_box_would_clip():
    x = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.5, 0.5], requires_grad=True)
    g = torch.tensor([-1.0, 2.0, 3.0, -4.0, -5.0, 6.0])
    _BoxAwareGrad.apply(x).backward(g)
    assert x.grad.tolist() == [0.0, 2.0, 0.0, -4.0, -5.0, 6.0]


def _saturated(n, gen):
    """Images with half their pixels at exactly 0 or 1 (as in Fashion-MNIST), the rest noise."""
    protos = (torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    y = torch.randint(0, 10, (n,), generator=gen)
    keep = torch.rand(n, 1, 28, 28, generator=gen) < 0.5
    return torch.where(keep, protos[y], torch.rand(n, 1, 28, 28, generator=gen)), y


@pytest.mark.parametrize("tm", ["L2", "L1"])
def test_fmn_breaks_saturated_images_only_box_aware(tm):
    """FMN as published stalls where half the pixels sit on the box (seen: L2 32 of 32 and L1 7 of 32
    unbroken); with the gradient restricted to pixels that can move it breaks every one."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        xb, yb = _saturated(64, gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    x, y = _saturated(32, gen)
    grid = GRIDS[tm]
    plain = sweep(make_attack("fmn", {"steps": 50, "box_aware": False}, tm), model, x, y, grid, seed=0)
    aware = sweep(make_attack("fmn", {"steps": 50}, tm), model, x, y, grid, seed=0)
    assert int(torch.isinf(aware[grid[0]].radius).sum()) == 0
    assert int(torch.isinf(plain[grid[0]].radius).sum()) >= 5
    found = torch.isfinite(plain[grid[0]].radius)  # where both found one, at most 1.5x apart
    assert bool((aware[grid[0]].radius[found] <= 1.5 * plain[grid[0]].radius[found]).all())
