"""Verdicts on the paper's claims from hand-built result tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from robustmix.paper import verdicts as V
from robustmix.paper.analysis import bank_for, bank_label, spectrum_table
from robustmix.stats import wilson_interval

pytestmark = pytest.mark.usefixtures("single_thread")

C = "fashion-mnist-controls"
K = "fashion-mnist-core"   # all_verdicts decides claims 1-3b on the core zoo
E8 = 8 / 255


def vec(acc, n=500, offset=0):
    """Robust on round(acc * n) consecutive examples from ``offset``: vectors with one offset are
    nested, so two of them differ only one way (the strongest pairing)."""
    v = np.zeros(n, bool)
    v[(offset + np.arange(round(acc * n))) % n] = True
    return v


def rows(model, attack, eps, correct):
    n = len(correct)
    return pd.DataFrame(dict(model=model, attack=attack, attack_kind=attack, threat_model="Linf", eps=eps,
                             index=np.arange(n), correct=correct))


def store(spec, n=500):
    """Per-example rows. spec: {model: (clean acc, {attack: robust acc at 8/255})}; square runs
    on the first 200 examples only (a subset attack)."""
    frames = []
    for m, (clean, rob) in spec.items():
        frames += [rows(m, "fgsm", 0.0, vec(clean, n)), rows(m, "pgd", 0.0, vec(clean, n))]
        for att, acc in rob.items():
            frames.append(rows(m, att, E8, vec(acc, 200 if att == "square" else n)))
    return pd.concat(frames, ignore_index=True)


def flags(*pairs):
    return pd.DataFrame([dict(model=m, flag=f, detail="") for m, f in pairs], columns=["model", "flag", "detail"])


def test_split_name():
    assert V.split_name("r/smooth-sigma0.5-s2") == ("r", "smooth-sigma0.5", 2)
    assert V.split_name("r/chans") == ("r", "chans", None)


@pytest.mark.parametrize("full,chans,expect,p", [
    (0.90, 0.89, V.HOLDS, 0.0246),       # gap 1.0 +- 0.45 (paired se) points: z = -2.25 against 2 points
    (0.90, 0.80, V.FAILS, None),
    (0.90, 0.865, V.NOT_SHOWN, 0.0548)])  # gap 3.6 +- 0.833 points: z = 1.92
def test_claim1(full, chans, expect, p):
    s = store({f"{C}/full-s0": (full, {}), f"{C}/chans-s0": (chans, {})})
    v = V.claim1(s, C)
    assert v.verdict == expect, v.evidence
    t = v.numbers["test"]
    assert t["n"] == 500 and t["ci_low"] < full - chans < t["ci_high"] and t["null"] == V.CLOSE_TOL
    if p is not None:
        assert t["p"] == pytest.approx(p, abs=5e-4)
    if expect == V.NOT_SHOWN:
        assert "minimum detectable difference at n=500" in v.evidence


def test_claim1_missing_is_not_shown():
    s = store({f"{C}/full-s0": (0.9, {}), f"{C}/chans-s0": (0.89, {})})
    assert V.claim1(s, "other-recipe").verdict == V.NOT_SHOWN


@pytest.mark.parametrize("space,expect", [(0.6, V.HOLDS), (0.95, V.FAILS),
                                          (0.88, V.NOT_SHOWN)])  # 5 one-way discordances: p = 1/16
def test_claim2(space, expect):
    s = store({f"{C}/space-s0": (space, {}), f"{C}/chans-s0": (0.89, {})})
    v = V.claim2(s, C)
    assert v.verdict == expect
    if expect == V.NOT_SHOWN:
        assert v.test.p == pytest.approx(2 / 2 ** 5)


def _robust(chans_pgd, full_pgd=0.2, square=None, transfer=None):
    c = {"fgsm": chans_pgd + 0.1, "pgd": chans_pgd}
    f = {"fgsm": full_pgd + 0.1, "pgd": full_pgd}
    if square:
        c["square"], f["square"] = square
    if transfer:
        c["transfer"], f["transfer"] = transfer
    return store({f"{C}/full-s0": (0.9, f), f"{C}/chans-s0": (0.89, c)})


def test_claim3_holds_fails_not_shown():
    v = V.claim3(_robust(0.4), None, C)
    assert v.verdict == V.HOLDS
    assert v.numbers["attacks"] == ["fgsm", "pgd"] and v.test.n == 500  # worst case over white-box, full n
    assert v.test.estimate == pytest.approx(0.2)                        # per example: pgd decides
    assert V.claim3(_robust(0.05), None, C).verdict == V.FAILS
    # 10 one-way discordances of 500 (2 points): exact p = 2 / 2**10, significant when paired.
    assert V.claim3(_robust(0.22), None, C).verdict == V.HOLDS
    v = V.claim3(_robust(0.204), None, C)  # 2 one-way discordances: p = 0.5
    assert v.verdict == V.NOT_SHOWN and "minimum detectable difference" in v.evidence


def test_claim3_contradicted_by_black_box():
    v = V.claim3(_robust(0.4, square=(0.1, 0.5)), None, C)
    assert v.verdict == V.FAILS and "square" in v.evidence
    assert v.numbers["black_box_contradictions"][0]["n"] == 200  # square ran on a subset
    # A black-box attack that agrees does not change the verdict.
    assert V.claim3(_robust(0.4, transfer=(0.6, 0.3)), None, C).verdict == V.HOLDS


def test_claim3_flag_masks():
    v = V.claim3(_robust(0.4), flags((f"{C}/chans-s0", "fgsm-beats-pgd")), C)
    assert v.verdict == V.NOT_SHOWN and "gradient masking" in v.evidence
    assert "minimum detectable difference" in v.evidence and not v.tested
    # A flag on another recipe's model does not mask this one.
    assert V.claim3(_robust(0.4), flags(("other/chans-s0", "zero-gradients")), C).verdict == V.HOLDS


def test_pairing_detects_what_overlapping_intervals_miss():
    """Two models on 2,000 shared examples that differ on 3% of them, all one way."""
    n = 2000
    full, chans = vec(0.50, n), vec(0.53, n)
    s = pd.concat([rows(f"{C}/full-s0", "pgd", E8, full), rows(f"{C}/chans-s0", "pgd", E8, chans),
                   rows(f"{C}/full-s0", "pgd", 0.0, vec(0.9, n)), rows(f"{C}/chans-s0", "pgd", 0.0, vec(0.9, n))])
    v = V.claim3(s, None, C)
    assert v.verdict == V.HOLDS and v.test.p < 1e-15  # 60 discordant pairs, all one way
    # The removed rule: a verdict only when the two 95% Wilson intervals do not overlap.
    (lo_c, lo_f), (hi_c, hi_f) = wilson_interval(np.array([chans.sum(), full.sum()]), np.array([n, n]))
    overlap = lo_c <= hi_f and lo_f <= hi_c
    assert overlap  # so the old rule said "not shown"


def _seeds(diffs, base=0.80):
    """chans/space pairs over seeds: space is ``diff`` below chans on seed i (one-way)."""
    frames = []
    for i, d in enumerate(diffs):
        for tag, acc in (("chans", base), ("space", base - d)):
            frames.append(rows(f"{C}/{tag}-s{i}", "pgd", 0.0, vec(acc)))
    return pd.concat(frames, ignore_index=True)


def test_seed_level_interval_decides():
    consistent = V.claim2(_seeds([0.10, 0.11, 0.09]), C)
    assert consistent.verdict == V.HOLDS and consistent.test.seeds == 3
    assert consistent.test.estimate == pytest.approx(0.10)
    # sd of 0.01 over seeds vs a sampling variance of about 0.1 / 500 = 2e-4: sampling dominates.
    assert consistent.test.dominant == "sampling"
    # Each seed alone is significant (McNemar p < 1e-8), but the seeds disagree: not shown.
    mixed = V.claim2(_seeds([0.10, -0.08, 0.05]), C)
    assert mixed.verdict == V.NOT_SHOWN and mixed.test.dominant == "seed-to-seed"
    assert "3 seeds" in mixed.evidence and "minimum detectable difference" in mixed.evidence


def test_all_verdicts_holm_adjusts_over_claims():
    spec = {f"{K}/full-s0": (0.90, {"pgd": 0.2}), f"{K}/chans-s0": (0.864, {"pgd": 0.4}),
            f"{K}/space-s0": (0.852, {})}
    s = store(spec)
    # chans vs space: 6 one-way discordances, p = 2 / 2**6 = 0.031: alone, it holds.
    assert V.claim2(s, K).verdict == V.HOLDS
    # Family: claim 3 (p ~ 0), claim 2 (0.031), claim 1 (gap 3.6 points against 2: p 0.055).
    # Holm: 0.031 * 2 = 0.0625 > 0.05 stops the step-down: claims 1 and 2 are not shown.
    by = {v.claim: v for v in V.all_verdicts(s)}
    assert [by[c].tested for c in ("1", "2", "3", "3b", "4", "5")] == [True, True, True, False, False, False]
    assert by["3"].verdict == V.HOLDS
    assert by["2"].verdict == V.NOT_SHOWN and by["2"].test.p_holm == pytest.approx(0.0625)
    assert by["1"].verdict == V.NOT_SHOWN and by["1"].test.p_holm == pytest.approx(0.0625)


S = "fashion-mnist-smoothing"


def _smooth(accs):
    """Examples of smooth models at each sigma, and model -> sigma as a models table gives it
    (the names say nothing of sigma: it comes from the table)."""
    names = {s: f"{S}/smooth-{i}-s0" for i, s in enumerate(accs)}
    return store({names[s]: (0.88, {"pgd": a}) for s, a in accs.items()}), {names[s]: s for s in accs}


def c3b(accs, diag=None):
    ex, sigmas = _smooth(accs)
    return V.claim3b(ex, diag, S, sigmas=sigmas)


def test_claim3b():
    assert c3b({0: 0.2, 0.5: 0.25, 1: 0.3, 2: 0.45}).verdict == V.HOLDS
    assert c3b({0: 0.45, 0.5: 0.3, 1: 0.2, 2: 0.1}).verdict == V.FAILS
    # A reversed middle pair (sigma 1 significantly below sigma 0.5) contradicts it.
    v = c3b({0: 0.2, 0.5: 0.4, 1: 0.25, 2: 0.45})
    assert v.verdict == V.FAILS and v.numbers["reversed_pairs"] == ["sigma 1 - sigma 0.5 robust accuracy"]
    assert c3b({0: 0.2, 2: 0.22}).verdict == V.HOLDS   # 10 one-way pairs
    assert c3b({0: 0.2, 2: 0.204}).verdict == V.NOT_SHOWN
    v = c3b({0: 0.2, 2: 0.45}, flags((f"{S}/smooth-1-s0", "non-monotonic")))
    assert v.verdict == V.NOT_SHOWN
    assert c3b({1: 0.3}).verdict == V.NOT_SHOWN


def test_claim3b_takes_chans_as_sigma_zero():
    # A zoo that trains smooth at sigma 1 and 2 only: its chans models are the sigma-0 point.
    s = store({f"{S}/chans-s0": (0.88, {"pgd": 0.45}), f"{S}/smooth-sigma1-s0": (0.88, {"pgd": 0.3}),
               f"{S}/smooth-sigma2-s0": (0.88, {"pgd": 0.2})})
    models = pd.DataFrame({"model": [f"{S}/chans-s0", f"{S}/smooth-sigma1-s0", f"{S}/smooth-sigma2-s0"],
                           "variant": ["chans", "smooth", "smooth"], "sigma": [np.nan, 1.0, 2.0]})
    v = V.claim3b(s, None, S, sigmas=V.smooth_sigmas(models))
    assert v.verdict == V.FAILS and v.numbers["sigmas"] == [0.0, 1.0, 2.0]
    assert "sigma 2 - sigma 0 " in v.test.what
    # With a smooth sigma-0 model of its own, chans is not added a second time.
    s0, sigmas = _smooth({0: 0.2, 2: 0.45})
    s0 = pd.concat([s0, store({f"{S}/chans-s0": (0.88, {"pgd": 0.9})})], ignore_index=True)
    assert V.claim3b(s0, None, S, sigmas={**sigmas, f"{S}/chans-s0": 0.0}).verdict == V.HOLDS
    # Without the models table there is no sigma to read: nothing to decide.
    assert V.claim3b(s0, None, S).verdict == V.NOT_SHOWN


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
    # Nested vectors: the gap shrinks on 5 of 500 examples (1 point), z = 2.25, p = 0.025.
    v = V.claim5(_widths({16: 0.03, 64: 0.02}))
    assert v.verdict == V.HOLDS and v.test.p == pytest.approx(0.0248, abs=5e-4)
    v = V.claim5(_widths({16: 0.03, 64: 0.025}))  # 3 of 500: z = 1.73, p = 0.083
    assert v.verdict == V.NOT_SHOWN and "minimum detectable difference" in v.evidence
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

    from robustmix.compare import load_examples
    from robustmix.results import load_results

    models = [dict(name=f"{K}/full-s0", variant="full", arch="a", robustness=0.01, clean=0.9),
              dict(name=f"{K}/chans-s0", variant="chans", arch="a", robustness=0.08, clean=0.895)]
    write_store(tmp_path / "r", models, threat_models={"Linf": [0.0, 4 / 255, E8]}, n=500,
                flags=[(f"{K}/chans-s0", "fgsm-beats-pgd", "")])
    res = load_results(tmp_path / "r")
    out = V.all_verdicts(load_examples(res.root, res.summary), res.diagnostics)
    by = {v.claim: v for v in out}
    assert [v.claim for v in out] == ["1", "2", "3", "3b", "4", "5", "6"]
    # The fixture draws each model's clean examples independently (about 18% discordant): a
    # half-point gap on 500 examples cannot be shown to lie within 2 points.
    assert by["1"].verdict == V.NOT_SHOWN and by["1"].test.n == 500
    assert abs(by["1"].test.estimate - 0.005) < 0.03 and "minimum detectable difference" in by["1"].evidence
    assert by["3"].verdict == V.NOT_SHOWN and "masking" in by["3"].evidence
    assert by["3"].test.estimate > 0 and not by["3"].tested  # chans more robust, but flagged
    assert all(v.verdict in (V.HOLDS, V.FAILS, V.NOT_SHOWN) for v in out)


def test_write_index_escapes_and_is_self_contained(tmp_path):
    from robustmix.paper.reproduce import write_index

    test = V.Test("chans - full <x>", "exact McNemar", 0.031, 0.004, 0.058, 0.0213, 2000, 1, 0.0125, p_holm=0.0639)
    vs = [V.Verdict("1", "s <b>", V.HOLDS, "<script>alert(1)</script>", {"x": "<i>"}),
          V.Verdict("3", "t", V.NOT_SHOWN, "e", {}, test, True)]
    index = write_index(vs, tmp_path / "paper", links={"eval": "eval/index.html"},
                        accuracy=[("core/full-s0 <b>", 0.8792, 10000)])
    page = index.read_text()
    # Each claim's test: estimate and interval in points, p raw and Holm-adjusted, MDD.
    assert "3.1 [0.4, 5.8]" in page and "<td>0.0213</td>" in page and "<td>0.0639</td>" in page
    assert "<td>1.2</td>" in page and "chans - full &lt;x&gt;" in page
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "core/full-s0 &lt;b&gt;</td><td>87.92%</td><td>10000" in page and "WRN-28-10" in page
    assert 'class="v holds"' in page and 'class="v not-shown"' in page
    assert [p.name for p in (tmp_path / "paper").iterdir()] == ["index.html"]  # temp dir cleaned up


def test_recipes_and_spec_for_reproduce(tmp_path):
    from pathlib import Path

    from robustmix.paper.reproduce import CPU_WIDTHS, classify_recipes, paper_spec

    root = Path(__file__).parent.parent
    rs = classify_recipes(root, quick=True)
    names = [r.name for r in rs]
    assert names[:2] == ["fashion-mnist-core", "fashion-mnist-controls"]
    assert [r.model.args["dim"] for r in rs[2:]] == list(CPU_WIDTHS)
    assert all(r.epochs == 1 and r.data.train_subset == 300 for r in rs)
    from robustmix.paper.reproduce import LONG

    long = classify_recipes(root, long=True)
    assert [r.model.args["dim"] for r in long[2:]] == list(LONG["widths"])
    assert long[0].seeds == LONG["core_seeds"] and all(r.epochs == LONG["epochs"] for r in long)
    assert classify_recipes(root)[0].epochs == 2 and classify_recipes(root)[0].seeds == [0, 1, 2]
    from robustmix.errors import ConfigError

    with pytest.raises(ConfigError, match="models"):  # nothing trained: every pattern dropped
        paper_spec(root, tmp_path / "empty-zoo", tmp_path / "res", quick=True)


def test_clean_accuracy_takes_the_clean_pass_on_the_most_examples():
    from robustmix.paper.reproduce import clean_accuracy

    s = pd.DataFrame([dict(model="m", attack="clean", eps=0.0, n=10000, robust_acc=0.87),
                      dict(model="m", attack="pgd", eps=0.0, n=2000, robust_acc=0.9),
                      dict(model="m", attack="pgd", eps=E8, n=2000, robust_acc=0.2),
                      dict(model="m", attack="worst-case", eps=0.0, n=10000, robust_acc=0.5),
                      dict(model="a", attack="fgsm", eps=0.0, n=500, robust_acc=0.8)])
    assert clean_accuracy(s) == [("a", 0.8, 500), ("m", 0.87, 10000)]


def test_white_box_lists_the_attacks_that_ran_at_the_compared_eps():
    from robustmix.paper.claim_tests import white_box

    ex = pd.concat([rows("m", "clean", 0.0, vec(0.9)), rows("m", "pgd", 0.0, vec(0.9)),
                    rows("m", "pgd", E8, vec(0.2)), rows("m", "square", E8, vec(0.3, 200))])
    assert sorted(white_box(ex)) == ["clean", "pgd"]
    assert white_box(ex, "Linf", E8) == ["pgd"]
