"""Verdicts on the paper's claims from hand-built result tables."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from robustmix.paper import verdicts as V
from robustmix.paper.analysis import bank_for, bank_label, spectrum_table

pytestmark = pytest.mark.usefixtures("single_thread")

C = "fashion-mnist-controls"
E8 = 8 / 255


def row(model, attack, eps, acc, n=500, sigma=math.nan):
    k = round(acc * n)
    return dict(model=model, variant=model.split("/")[-1].split("-")[0], sigma=sigma, arch="a", dataset="d",
                train_seed=0, threat_model="Linf", attack=attack, eps=eps, eps_label="", n=n,
                n_robust=k, robust_acc=k / n, ci_low=math.nan, ci_high=math.nan, clean_acc=math.nan)


def store(spec, sigma=None):
    """spec: {model: (clean, {attack: robust acc at 8/255})}; sigma: {model: its variant's sigma}."""
    rows = []
    for m, (clean, rob) in spec.items():
        s = (sigma or {}).get(m, math.nan)
        rows.append(row(m, "fgsm", 0.0, clean, sigma=s))
        rows.append(row(m, "pgd", 0.0, clean, sigma=s))
        for att, acc in rob.items():
            rows.append(row(m, att, E8, acc, n=200 if att == "square" else 500, sigma=s))
    return pd.DataFrame(rows)


def flags(*pairs):
    return pd.DataFrame([dict(model=m, flag=f, detail="") for m, f in pairs], columns=["model", "flag", "detail"])


def test_split_name():
    assert V.split_name("r/smooth-sigma0.5-s2") == ("r", "smooth-sigma0.5", 2)
    assert V.split_name("r/chans") == ("r", "chans", None)


@pytest.mark.parametrize("full,chans,expect", [(0.90, 0.89, V.HOLDS), (0.90, 0.80, V.FAILS),
                                               (0.90, 0.865, V.NOT_SHOWN)])
def test_claim1(full, chans, expect):
    s = store({f"{C}/full-s0": (full, {}), f"{C}/chans-s0": (chans, {})})
    v = V.claim1(s, C)
    assert v.verdict == expect, v.evidence
    assert v.numbers["full"]["n"] == 500 and v.numbers["chans"]["ci_low"] < chans < v.numbers["chans"]["ci_high"]


def test_claim1_pools_seeds_and_missing_is_not_shown():
    s = store({f"{C}/full-s0": (0.9, {}), f"{C}/full-s1": (0.9, {}), f"{C}/chans-s0": (0.89, {})})
    v = V.claim1(s, C)
    assert v.numbers["full"]["n"] == 1000
    assert V.claim1(s, "other-recipe").verdict == V.NOT_SHOWN


@pytest.mark.parametrize("space,expect", [(0.6, V.HOLDS), (0.95, V.FAILS), (0.88, V.NOT_SHOWN)])
def test_claim2(space, expect):
    s = store({f"{C}/space-s0": (space, {}), f"{C}/chans-s0": (0.89, {})})
    assert V.claim2(s, C).verdict == expect


def _robust(chans_pgd, full_pgd=0.2, square=None, transfer=None):
    c = {"fgsm": chans_pgd + 0.1, "pgd": chans_pgd}
    f = {"fgsm": full_pgd + 0.1, "pgd": full_pgd}
    if square:
        c["square"], f["square"] = square
    if transfer:
        c["transfer"], f["transfer"] = transfer
    return store({f"{C}/full-s0": (0.9, f), f"{C}/chans-s0": (0.89, c)})


def test_claim3_holds_fails_overlap():
    assert V.claim3(_robust(0.4), None, C).verdict == V.HOLDS
    v = V.claim3(_robust(0.05), None, C)
    assert v.verdict == V.FAILS
    assert V.claim3(_robust(0.22), None, C).verdict == V.NOT_SHOWN
    # The decision uses the worst white-box attack (pgd), not fgsm.
    assert v.numbers["chans"]["attack"] == "pgd"


def test_claim3_contradicted_by_black_box():
    v = V.claim3(_robust(0.4, square=(0.1, 0.5)), None, C)
    assert v.verdict == V.FAILS and "square" in v.evidence
    # A black-box attack that agrees does not change the verdict.
    assert V.claim3(_robust(0.4, transfer=(0.6, 0.3)), None, C).verdict == V.HOLDS


def test_claim3_flag_masks():
    v = V.claim3(_robust(0.4), flags((f"{C}/chans-s0", "fgsm-beats-pgd")), C)
    assert v.verdict == V.NOT_SHOWN and "gradient masking" in v.evidence
    # A flag on another recipe's model does not mask this one.
    assert V.claim3(_robust(0.4), flags(("other/chans-s0", "zero-gradients")), C).verdict == V.HOLDS


S = "fashion-mnist-smoothing"


def _smooth(accs):
    # The sigma column, not the model name, says each model's sigma: names here say nothing of it.
    return store({f"{S}/smooth-{i}-s0": (0.88, {"pgd": a}) for i, a in enumerate(accs.values())},
                 sigma={f"{S}/smooth-{i}-s0": s for i, s in enumerate(accs)})


def test_claim3b():
    assert V.claim3b(_smooth({0: 0.2, 0.5: 0.25, 1: 0.3, 2: 0.45}), None, S).verdict == V.HOLDS
    assert V.claim3b(_smooth({0: 0.45, 0.5: 0.3, 1: 0.2, 2: 0.1}), None, S).verdict == V.FAILS
    assert V.claim3b(_smooth({0: 0.2, 2: 0.22}), None, S).verdict == V.NOT_SHOWN
    v = V.claim3b(_smooth({0: 0.2, 2: 0.45}), flags((f"{S}/smooth-1-s0", "non-monotonic")), S)
    assert v.verdict == V.NOT_SHOWN
    assert V.claim3b(_smooth({1: 0.3}), None, S).verdict == V.NOT_SHOWN


def _spectrum(kinds):
    banks = {}
    for text in kinds:
        kind, _, p = text.partition(":")
        params = {k: float(v) for k, v in (x.split("=") for x in p.split(",") if x)}
        banks[bank_label(kind, params)] = bank_for(kind, 16, 5, 0, **params)
    return spectrum_table(banks)


def test_claim4_uses_spectrum_and_accuracy():
    spec = _spectrum(["random", "shared", "correlated:rho=0.9"])
    cov = spec.loc[spec.groupby("bank")["n_filters"].idxmax()].set_index("bank")["coverage"]
    assert cov["random"] > cov["shared"]  # a single filter covers less than 16 independent ones
    good = store({f"{C}/chans-s0": (0.89, {}), f"{C}/shared-s0": (0.80, {}),
                  f"{C}/correlated-rho0.9-s0": (0.82, {}), f"{C}/full-s0": (0.95, {})})
    v = V.claim4(spec, good, C)
    # 16 independent random filters cover more of the spectrum than one shared filter or 16
    # filters correlated at rho = 0.9, and the accuracies favour the random bank: both parts hold.
    assert v.numbers["parts"] == {"spectrum": V.HOLDS, "accuracy": V.HOLDS}
    assert v.verdict == V.HOLDS
    # Hand-made coverage: a control at least as good -> does not hold.
    fake = pd.DataFrame({"bank": ["random", "random", "shared", "shared"], "n_filters": [1, 2, 1, 2],
                         "coverage": [0.3, 0.6, 0.5, 0.7]})
    assert V.claim4(fake, good, C).verdict == V.FAILS
    tie = fake.assign(coverage=[0.3, 0.9, 0.5, 0.7])  # same mean coverage: not shown
    assert V.claim4(tie, good, C).numbers["parts"]["spectrum"] == V.NOT_SHOWN
    fake2 = fake.assign(coverage=[0.4, 0.9, 0.5, 0.7])
    assert V.claim4(fake2, good, C).verdict == V.HOLDS
    # Deterministic filters are not spectrum controls by default: a flat delta does not decide it.
    delta = pd.concat([fake2, pd.DataFrame({"bank": ["delta"] * 2, "n_filters": [1, 2], "coverage": [1.0, 1.0]})])
    assert V.claim4(delta, good, C).numbers["parts"]["spectrum"] == V.HOLDS
    overlap = store({f"{C}/chans-s0": (0.89, {}), f"{C}/box-s0": (0.88, {})})
    assert V.claim4(fake2, overlap, C).verdict == V.NOT_SHOWN
    above = store({f"{C}/chans-s0": (0.80, {}), f"{C}/box-s0": (0.90, {})})
    assert V.claim4(fake2, above, C).verdict == V.FAILS


def _widths(gaps, full=0.9):
    return store({m: v for w, g in gaps.items() for m, v in
                  ((f"fashion-mnist-width-w{w}/full-s0", (full, {})),
                   (f"fashion-mnist-width-w{w}/chans-s0", (full - g, {})))})


def test_claim5():
    v = V.claim5(_widths({16: 0.10, 32: 0.05, 64: 0.01}))
    assert v.verdict == V.HOLDS and set(v.numbers["gaps"]) == {16, 32, 64}
    assert V.claim5(_widths({16: 0.01, 64: 0.10})).verdict == V.FAILS
    assert V.claim5(_widths({16: 0.03, 64: 0.02})).verdict == V.NOT_SHOWN
    assert V.claim5(_widths({16: 0.03})).verdict == V.NOT_SHOWN


def _unshuffle(chans, full=30.0, identity=12.0, mean=15.0):
    return pd.DataFrame([dict(variant=v, seed=0, test_mse=0.0, test_psnr=p, identity_psnr=identity,
                              mean_psnr=mean) for v, p in (("full", full), ("chans", chans), ("space", 16.0))])


def test_claim6():
    assert V.claim6(_unshuffle(28.5)).verdict == V.HOLDS
    assert V.claim6(_unshuffle(20.0)).verdict == V.FAILS       # 10 dB below full
    assert V.claim6(_unshuffle(14.0, full=15.5)).verdict == V.FAILS  # below the mean-image baseline
    assert V.claim6(_unshuffle(15.5, full=16.0)).verdict == V.NOT_SHOWN  # within the margin
    assert V.claim6(None).verdict == V.NOT_SHOWN


def test_fixture_store_end_to_end(tmp_path):
    """Through results.load_results on a fixture store (worst-case rows derived)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures_results import write_store

    from robustmix.results import load_results

    models = [dict(name=f"{C}/full-s0", variant="full", arch="a", robustness=0.01, clean=0.9),
              dict(name=f"{C}/chans-s0", variant="chans", arch="a", robustness=0.08, clean=0.895)]
    write_store(tmp_path / "r", models, threat_models={"Linf": [0.0, 4 / 255, E8]}, n=500,
                flags=[(f"{C}/chans-s0", "fgsm-beats-pgd", "")])
    res = load_results(tmp_path / "r")
    out = V.all_verdicts(res.summary, res.diagnostics)
    by = {v.claim: v for v in out}
    assert [v.claim for v in out] == ["1", "2", "3", "3b", "4", "5", "6"]
    assert by["1"].verdict == V.HOLDS
    assert by["3"].verdict == V.NOT_SHOWN and "masking" in by["3"].evidence
    assert by["3"].numbers["chans"]["acc"] > by["3"].numbers["full"]["acc"]
    assert all(v.verdict in (V.HOLDS, V.FAILS, V.NOT_SHOWN) for v in out)


def test_write_index_escapes_and_is_self_contained(tmp_path):
    from robustmix.paper.reproduce import write_index

    vs = [V.Verdict("1", "s <b>", V.HOLDS, "<script>alert(1)</script>", {"x": "<i>"}),
          V.Verdict("3", "t", V.NOT_SHOWN, "e", {})]
    index = write_index(vs, tmp_path / "paper", links={"eval": "eval/index.html"})
    page = index.read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert 'class="v holds"' in page and 'class="v not-shown"' in page
    assert [p.name for p in (tmp_path / "paper").iterdir()] == ["index.html"]  # temp dir cleaned up


def test_recipes_and_spec_for_reproduce(tmp_path):
    from pathlib import Path

    from robustmix.paper.reproduce import CPU_WIDTHS, classify_recipes, paper_spec

    root = Path(__file__).parent.parent
    rs = classify_recipes(root, quick=True)
    names = [r.name for r in rs]
    assert names[:2] == ["fashion-mnist-controls", "fashion-mnist-smoothing"]
    assert [r.model.args["dim"] for r in rs[2:]] == list(CPU_WIDTHS)
    assert all(r.epochs == 1 and r.data.train_subset == 300 for r in rs)
    from robustmix.errors import ConfigError

    with pytest.raises(ConfigError, match="models"):  # nothing trained: every pattern dropped
        paper_spec(root, tmp_path / "empty-zoo", tmp_path / "res", quick=True)
