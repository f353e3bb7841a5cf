"""Randomised models: robust/not decided by a majority over forward passes; EOT warnings."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn as nn
from scipy import stats as sps

from robustmix.config import from_dict
from robustmix.diagnostics import WITHOUT_EOT, majority_correct
from robustmix.evaluate import run_eval
from robustmix.errors import ConfigError
from robustmix.spec import EvalSpec

pytestmark = pytest.mark.usefixtures("single_thread")


class Coin(nn.Module):
    """Each pass, each example: ``base``'s logits with probability p, else their negation
    (so the prediction is right with probability p where base is right)."""

    def __init__(self, base: nn.Module, p: float):
        super().__init__()
        self.base, self.p = base, p

    def forward(self, x):
        out = self.base(x)
        keep = torch.rand(len(x), 1, device=x.device) < self.p
        return torch.where(keep, out, -out)


class First(nn.Module):
    """Deterministic: always predicts class 0."""

    def forward(self, x):
        out = torch.zeros(len(x), 10, device=x.device)
        out[:, 0] = 1.0
        return out + 0 * x.flatten(1)[:, :1]


@pytest.mark.parametrize("p", [0.7, 0.4])
def test_majority_vote_decides_by_majority(p):
    torch.manual_seed(0)
    n, k = 4000, 10
    x, y = torch.rand(n, 1, 28, 28), torch.zeros(n, dtype=torch.long)
    robust, counts = majority_correct(Coin(First(), p), x, y, k, batch=1000)
    assert torch.equal(robust, counts * 2 > k)              # a strict majority decides
    assert counts.float().mean().item() == pytest.approx(k * p, abs=0.1)
    # P(Bin(10, p) >= 6): 0.850 at p = 0.7 (one pass: 0.7), 0.166 at p = 0.4 (one pass: 0.4).
    assert robust.float().mean().item() == pytest.approx(sps.binom.sf(5, k, p), abs=0.025)


def test_deterministic_model_is_not_affected():
    x = torch.rand(50, 1, 28, 28)
    y = torch.arange(50) % 10
    robust, counts = majority_correct(First(), x, y, 10, batch=16)
    assert torch.equal(robust, y == 0) and set(counts.tolist()) == {0, 10}


def test_votes_must_be_positive():
    with pytest.raises(ConfigError, match="randomized_votes"):
        from_dict(EvalSpec, {"name": "t", "models": ["m"], "threat": {"Linf": {"eps": [0]}},
                             "attacks": [{"name": "fgsm"}], "randomized_votes": 0})


def test_eval_votes_on_randomised_model_and_warns(real_fmnist, tmp_path):
    spec = from_dict(EvalSpec, {"name": "t", "data": {"n": 32, "batch_size": 32, "root": str(real_fmnist)},
                                "models": ["coin", "det"], "threat": {"Linf": {"eps": [0, "8/255"]}},
                                "randomized_votes": 7,
                                "attacks": [{"name": "fgsm"},
                                            # eps 0 only: no attack runs (clean pass), but the spec
                                            # asks for standard AutoAttack on a randomised model.
                                            {"name": "autoattack", "eps": [0]}]})
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    lines = []
    run_eval(spec, tmp_path / "r", models={"coin": Coin(base, 0.6), "det": base}, device="cpu", progress=False,
             log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    ex = pd.concat([pd.read_parquet(f) for f in (tmp_path / "r" / "examples").glob("*.parquet")])
    coin, det = ex[ex["model"] == "coin"], ex[ex["model"] == "det"]
    assert (coin["vote_passes"] == 7).all() and coin["votes"].between(0, 7).all()
    assert (coin["correct"] <= (coin["votes"] * 2 > 7)).all()  # nested: never robust without a majority
    clean = coin[coin["eps"] == 0]
    assert (clean["correct"] == (clean["votes"] * 2 > 7)).all()
    assert det["votes"].isna().all()                           # a deterministic model gets no votes
    assert any("WARNING: coin" in line and "rand" in line for line in lines)
    assert not any("WARNING: det" in line for line in lines)
    diag = pd.read_csv(tmp_path / "r" / "diagnostics.csv")
    assert set(diag.loc[diag["flag"] == WITHOUT_EOT, "model"]) == {"coin"}


def test_corruption_units_vote_on_a_randomised_model(real_fmnist, tmp_path):
    """Common corruptions judge a randomised model as attacks do: by a strict majority of votes."""
    spec = from_dict(EvalSpec, {"name": "t", "data": {"n": 24, "batch_size": 24, "root": str(real_fmnist)},
                                "models": ["coin", "det"], "randomized_votes": 5, "attacks": [],
                                "threat": {"corruptions": {"types": ["gaussian_noise"], "severities": [1, 3]}}})
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    models = {"coin": Coin(base, 0.6), "det": base}
    summaries = [run_eval(spec, tmp_path / name, models=models, device="cpu", progress=False, log=lambda *a, **k: None)
                 for name in ("r", "again")]
    ex = pd.concat([pd.read_parquet(f) for f in (tmp_path / "r" / "examples").glob("*.parquet")])
    coin, det = ex[ex["model"] == "coin"], ex[ex["model"] == "det"]
    assert (coin["vote_passes"] == 5).all() and coin["votes"].between(0, 5).all()
    assert (coin["correct"] == (coin["votes"] * 2 > 5)).all()
    assert coin["votes"].between(1, 4).any()  # the passes really differ, so the majority decides
    assert det["votes"].isna().all()
    # Passes: 5 per image at each severity, plus 5 per clean image booked at the first severity.
    passes = coin.drop_duplicates(["unit", "eps"]).set_index("eps")["passes"]
    assert passes[1.0] == 2 * 5 * 24 and passes[3.0] == 5 * 24
    # Seeded: a second run gives the same decisions.
    cols = ["model", "attack", "eps", "n_robust"]
    assert summaries[0][cols].reset_index(drop=True).equals(summaries[1][cols].reset_index(drop=True))
