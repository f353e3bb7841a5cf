"""The L1 threat model: projection, FGSM-L1 and PGD-L1 against independent references, and
[threat.L1] through the driver, the report and the export."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pyautoattack.autopgd_base import APGDAttack
from scipy.optimize import linprog
from torch import nn

from robustmix import data as datasets
from robustmix.attacks import make_attack, sweep
from robustmix.attacks.base import project
from robustmix.attacks.l1 import MIN_TOP_COORDS, l1_norm, linear_max_l1, project_l1, sparse_step, top_count
from robustmix.config import from_dict
from robustmix.errors import ConfigError
from robustmix.evaluate import run_eval
from robustmix.export import export_leaderboard, export_robustbench
from robustmix.report import write_report
from robustmix.schema import THREAT_MODELS, WORST_CASE, threat_model_order
from robustmix.spec import EvalSpec, load_spec

sys.path.insert(0, str(Path(__file__).parent))
from fixtures_models import fit_on_prototypes, prototype_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


def _instance(n, shape, seed):
    """Points with saturated pixels (0 and 1, where the box binds) and perturbations of all sizes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    x[:, ..., :2] = 0.0
    x[:, ..., -1] = 1.0
    v = torch.randn(n, *shape, generator=g) * torch.rand(n, *[1] * len(shape), generator=g) * 2
    return x, v


def _reference_projection(x: np.ndarray, v: np.ndarray, eps: float) -> np.ndarray:
    """Euclidean projection of v onto {|d|_1 <= eps, -x <= d <= 1 - x} by bisection on the KKT
    multiplier: d(lam) = clip(soft_threshold(v, lam), -x, 1 - x), |d(lam)|_1 decreasing in lam."""
    def d(lam):
        return np.clip(np.sign(v) * np.maximum(np.abs(v) - lam, 0), -x, 1 - x)
    if np.abs(d(0.0)).sum() <= eps:
        return d(0.0)
    lo, hi = 0.0, float(np.abs(v).max())
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.abs(d(mid)).sum() > eps else (lo, mid)
    return d(hi)


@pytest.mark.parametrize("eps", [0.3, 1.0, 4.0, 1000.0])
def test_projection_in_ball_in_box_idempotent_and_matches_bisection(eps):
    x, v = _instance(8, (1, 6, 6), seed=int(eps * 10))
    p = project_l1(x + v, x, eps)
    assert float(l1_norm(p, x).max()) <= eps          # exact (float64) distance: never over
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    ref = np.stack([_reference_projection(x[i].flatten().double().numpy(), v[i].flatten().double().numpy(), eps)
                    for i in range(len(x))])
    np.testing.assert_allclose((p - x).flatten(1).double().numpy(), ref, atol=3e-6)
    assert torch.allclose(project_l1(p, x, eps), p, atol=1e-6)
    # base.project leaves rows already inside bit-identical and pulls the others in.
    assert torch.equal(project(p, x, eps, "L1"), p)
    assert float(l1_norm(project(x + v, x, eps, "L1"), x).max()) <= eps


def test_projection_float32_rounding_never_leaves_the_ball():
    # Radii where float32 sums of 784 terms round above eps unless the projection aims inside.
    x, v = _instance(64, (1, 28, 28), seed=7)
    for eps in (0.7, 3.3, 9.9):
        p = project_l1(x + 3 * v, x, eps)
        assert float(l1_norm(p, x).max()) <= eps
        assert float((p - x).flatten(1).abs().sum(1).max()) <= eps  # also as float32 arithmetic sees it


@pytest.mark.parametrize("seed", range(6))
def test_fgsm_l1_maximiser_matches_linprog(seed):
    x, _ = _instance(1, (1, 5, 5), seed)
    g = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(100 + seed))
    g[0, 0, 0, :2] = 0.0  # zero gradients: nothing to gain there
    eps = [0.4, 1.5, 3.0, 8.0, 30.0, 0.05][seed]
    delta = (linear_max_l1(x, g, eps) - x).flatten().double().numpy()
    # LP over delta = p - m, p, m >= 0: max g.(p - m) s.t. sum(p + m) <= eps, p <= 1 - x, m <= x.
    gv, xv = g.flatten().double().numpy(), x.flatten().double().numpy()
    lp = linprog(np.concatenate([-gv, gv]), A_ub=np.ones((1, 2 * gv.size)), b_ub=[eps],
                 bounds=[(0, 1 - xi) for xi in xv] + [(0, xi) for xi in xv], method="highs")
    assert lp.status == 0
    assert float(gv @ delta) == pytest.approx(-lp.fun, rel=1e-5, abs=1e-6)
    assert np.abs(delta).sum() <= eps and (xv + delta).min() >= 0 and (xv + delta).max() <= 1 + 1e-7


def test_sparse_step_moves_top_coordinates_only():
    x, _ = _instance(2, (1, 10, 10), seed=3)
    g = torch.randn(2, 1, 10, 10, generator=torch.Generator().manual_seed(4))
    out = sparse_step(x.clone(), g, x, eps=100.0, alpha=0.4, top_q=0.01)  # eps large: no projection
    moved = (out != x).flatten(1).sum(1)
    assert top_count(100, 0.01) == MIN_TOP_COORDS and bool((moved <= MIN_TOP_COORDS).all())
    assert torch.allclose(l1_norm(out, x), torch.full((2,), 0.4, dtype=torch.float64), atol=1e-6)
    # every moved coordinate moved along its gradient's sign
    d = (out - x).flatten(1)
    assert bool((d * g.flatten(1) >= 0).all())


# --- attacks on a small MLP, against pyautoattack's APGD-L1 ----------------------------------

@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    gen = torch.Generator().manual_seed(1)
    model = fit_on_prototypes(model, 60, gen)
    x, y = prototype_data(64, gen)
    return model, x, y


def _acc(model, x_adv, y) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def test_pgd_l1_is_within_0_1_of_apgd_l1(mlp):
    """Our PGD-L1 (20 steps, default step and top-1% sparsity) against pyautoattack's APGD-L1
    (50 iterations) at eps where the MLP goes from mostly robust to mostly broken."""
    model, x, y = mlp
    gaps = []
    for eps in (12.0, 16.0, 24.0):
        apgd = APGDAttack(model, norm="L1", eps=eps, n_iter=50, n_restarts=1, seed=0, device="cpu")
        ref = _acc(model, apgd.perturb(x, y), y)
        ours = make_attack("pgd", {"steps": 20}, "L1").run(model, x, y, eps, seed=0)
        assert float(l1_norm(ours.x_adv, x).max()) <= eps
        gaps.append(float(ours.correct.float().mean()) - ref)
    assert max(abs(g) for g in gaps) <= 0.1, gaps
    # not vacuous: the attack breaks most examples at the largest eps
    assert float(ours.correct.float().mean()) < 0.3


def test_fgsm_l1_is_the_linear_maximiser_and_restarts_only_add(mlp):
    model, x, y = mlp
    x, y = x[:16], y[:16]
    r = make_attack("fgsm", {}, "L1").run(model, x, y, 16.0, seed=0)
    xa = x.clone().requires_grad_(True)
    g = torch.autograd.grad(nn.functional.cross_entropy(model(xa), y, reduction="sum"), xa)[0]
    assert torch.allclose(r.x_adv, linear_max_l1(x, g, 16.0)) and r.passes == 16
    one = make_attack("pgd", {"steps": 10}, "L1").run(model, x, y, 16.0, seed=0)
    two = make_attack("pgd", {"steps": 10, "restarts": 3}, "L1").run(model, x, y, 16.0, seed=0)
    assert bool((~one.correct <= ~two.correct).all())


def test_autoattack_and_square_under_l1_stay_in_the_ball(mlp):
    model, x, y = mlp
    x, y = x[:6], y[:6]
    res = sweep(make_attack("autoattack", {"version": "custom", "attacks": ["apgd-ce"]}, "L1"),
                model, x, y, [0.0, 40.0], seed=0)  # an eps that breaks all at once: APGD's restarts stop early
    assert res[40.0].correct.sum() < res[0.0].correct.sum()
    sq = make_attack("square", {"n_queries": 100}, "L1").run(model, x, y, 24.0, seed=0)
    for r, eps in ((res[40.0], 40.0), (sq, 24.0)):
        assert float(l1_norm(r.x_adv, x).max()) <= eps and 0 <= float(r.x_adv.min()) <= float(r.x_adv.max()) <= 1


@pytest.mark.parametrize("name,params,tm,fix", [
    ("autoattack", {"version": "plus"}, "L1", "version='standard'"),
    ("torchattacks.PGD", {}, "L1", "not L1"),
    ("torchattacks.APGD", {}, "L1", "not L1"),
    ("torchattacks.FAB", {}, "L1", "not L1"),
    ("torchattacks.EADL1", {}, "Linf", "[threat.L1]"),
    ("pgd", {"l1_top_q": 0.05}, "L2", 'threat_models = ["L1"]'),
    ("pgd", {"l1_top_q": 0.0}, "L1", "(0, 1]"),
])
def test_bad_l1_configs_give_one_line_errors(name, params, tm, fix):
    with pytest.raises(ConfigError) as err:
        make_attack(name, params, tm)
    assert "\n" not in str(err.value) and fix in str(err.value)


def test_unbounded_torchattacks_run_under_l1(mlp):
    model, x, y = mlp
    r = make_attack("torchattacks.EADL1", {"max_iterations": 30, "binary_search_steps": 3, "initial_const": 1.0},
                    "L1").run(model, x[:8], y[:8], 16.0, seed=0)
    assert float(l1_norm(r.x_adv, x[:8]).max()) <= 16.0 and not bool(r.correct.all())


def test_threat_model_order_and_eps_are_plain_numbers():
    assert THREAT_MODELS == ("Linf", "L2", "L1")
    assert sorted(["L1", "zz", "L2", "Linf"], key=threat_model_order) == ["Linf", "L2", "L1", "zz"]
    spec = from_dict(EvalSpec, {"name": "t", "models": ["m"], "threat": {"L1": {"eps": [0, 1, "2.5", 10]}},
                                "attacks": [{"name": "pgd"}]})
    assert spec.eps_grid == {"L1": [0.0, 1.0, 2.5, 10.0]}


def test_example_spec_parses():
    spec = load_spec("evals/fashion-mnist-l1.toml")
    assert list(spec.eps_grid) == ["L1"] and max(spec.eps_grid["L1"]) > 1
    assert [a.name for a in spec.attack_list] == ["fgsm", "pgd", "autoattack"]


# --- [threat.L1] end to end: driver, store, report, export ------------------------------------

def test_l1_spec_end_to_end(real_fmnist, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),
                          nn.Linear(4 * 7 * 7, 10))
    ds = datasets.load_dataset("fashion-mnist", "train", root=real_fmnist)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):
        xb, yb = datasets.batch(ds, torch.randint(0, len(ds), (64,), generator=gen))
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    spec = from_dict(EvalSpec, {
        "name": "l1", "models": ["tiny"], "data": {"n": 32, "batch_size": 32, "root": str(real_fmnist)},
        "threat": {"L1": {"eps": [0, 2, 8]}, "Linf": {"eps": [0, "8/255"]}},
        "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 10},
                    {"name": "torchattacks.EADL1", "threat_models": ["L1"], "max_iterations": 20,
                     "binary_search_steps": 2, "initial_const": 1.0, "n": 16}]})
    summary = run_eval(spec, tmp_path / "r", models={"tiny": model}, device="cpu", progress=False,
                       log=lambda *a, **k: None)
    l1 = summary[summary["threat_model"] == "L1"]
    assert set(l1["attack"]) == {"fgsm", "pgd", "torchattacks.EADL1", WORST_CASE}
    assert set(l1["eps_label"]) == {"0", "2", "8"}
    wc = l1[l1["attack"] == WORST_CASE].set_index("eps")["robust_acc"]
    assert wc[8.0] < wc[2.0] < wc[0.0]  # a working L1 attack on an undefended model
    ex = pd.concat([pd.read_parquet(f) for f in (tmp_path / "r" / "examples").glob("*.parquet")])
    assert set(ex["threat_model"]) == {"L1", "Linf"}
    index = write_report(tmp_path / "r", tmp_path / "report")
    text = index.read_text()
    assert "L1" in text and text.index("Linf") < text.rindex("L1")
    board = export_leaderboard(tmp_path / "r", tmp_path / "lb.csv", threat_model="L1", eps=8)
    assert board.loc[0, "threat_model"] == "L1" and board.loc[0, "eps_label"] == "8"
    assert board.loc[0, "robust_acc"] == pytest.approx(wc[8.0])
    [path] = export_robustbench(tmp_path / "r", tmp_path / "rb", threat_model="L1", eps="8")
    assert '"eps": "8"' in path.read_text()
