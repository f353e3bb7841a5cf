"""The report's paired-comparison section and its numbers."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_results as fx  # noqa: E402

from robustmix.report import write_report  # noqa: E402
from robustmix.results import load_results  # noqa: E402
from robustmix.report_paired import paired_tables  # noqa: E402
from robustmix.compare import compare, load_examples  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


def _store(root):
    models = [dict(name=f"rec/{v}-s{s}", variant=v, arch="a", robustness=r, clean=0.9, train_seed=s)
              for s in (0, 1) for v, r in (("full", 0.01), ("chans", 0.03))]
    return fx.write_store(root, models, threat_models={"Linf": [0.0, 0.02, 0.05]}, attacks=("fgsm", "pgd"),
                          n=300, bank_shape=None)


def test_pairs_each_model_with_the_full_model_of_its_seed(tmp_path):
    res = load_results(_store(tmp_path / "r"))
    ex = load_examples(res.root, res.summary)
    pairs, seeds = paired_tables(ex, res.summary, res.models)
    assert sorted(set(zip(pairs["model_a"], pairs["model_b"]))) == [("rec/chans-s0", "rec/full-s0"),
                                                                   ("rec/chans-s1", "rec/full-s1")]
    assert sorted(pairs["eps"].unique()) == [0.02, 0.05]  # eps > 0 only
    row = pairs[(pairs["model_a"] == "rec/chans-s0") & (pairs["eps"] == 0.05)].iloc[0]
    c = compare(ex, "rec/chans-s0", "rec/full-s0", "Linf", 0.05)
    assert (row["diff"], row["p"], row["n"]) == (c.diff, c.p, 300)
    # The worst case per example over fgsm and pgd matches the summary's worst-case row.
    wc = res.summary[(res.summary["attack"] == "worst-case") & (res.summary["eps"] == 0.05)
                     & (res.summary["model"] == "rec/chans-s0")]
    assert row["acc_a"] == pytest.approx(float(wc["robust_acc"].iloc[0]))
    assert len(seeds) == 2 and set(seeds["k"]) == {2}
    s = seeds[seeds["eps"] == 0.05].iloc[0]
    per_seed = pairs[pairs["eps"] == 0.05]["diff"]
    assert s["mean"] == pytest.approx(per_seed.mean()) and s["dominant"] in ("seed-to-seed", "sampling")


def test_report_shows_the_paired_section(tmp_path):
    index = write_report(_store(tmp_path / "r"), tmp_path / "rep")
    text = index.read_text().split('id="paired"')[1]
    assert "rec/chans-s1" in text and "Over training seeds" in text and "dominant variance" in text
