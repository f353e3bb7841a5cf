"""The paper report's compute section: recorded training and evaluation seconds, summed."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from robustmix.paper.cost import CostRow, cost_html, evaluation_cost, training_cost
from robustmix.recipe import DataSection, ModelSection, Recipe
from robustmix.store import ModelStore
from robustmix.train import train_recipe

pytestmark = pytest.mark.usefixtures("single_thread")


def test_training_cost_counts_only_the_study_runs(fake_fmnist, tmp_path):
    zoo = ModelStore(tmp_path / "zoo")
    recipe = Recipe(name="core", data=DataSection(root=str(fake_fmnist)), model=ModelSection(name="convmixer_16_2_ks3_p4"),
                    variants=["full", "chans"], seeds=[0, 1], epochs=1, batch_size=64, eval_batch_size=256,
                    device="cpu")
    train_recipe(dataclasses.replace(recipe, variants=["full"]), zoo, progress=False)  # 2 of the 4 runs
    seconds = {n: zoo.meta(n)["seconds"] for n in ("core/full-s0", "core/full-s1")}
    assert all(s > 0 for s in seconds.values())

    (row,) = training_cost(zoo, [recipe])
    assert (row.step, row.what, row.count, row.planned) == ("train", "core", 2, 4)
    assert row.seconds == pytest.approx(sum(seconds.values()))
    # A checkpoint of the same recipe name that this study does not plan (seed 1 here) is not its cost.
    (one_seed,) = training_cost(zoo, [dataclasses.replace(recipe, seeds=[0])])
    assert (one_seed.count, one_seed.planned) == (1, 2)
    assert one_seed.seconds == pytest.approx(seconds["core/full-s0"])


def test_evaluation_cost_sums_attacks_and_leaves_out_the_worst_case():
    summary = pd.DataFrame({"attack": ["fgsm", "fgsm", "pgd", "pgd", "worst-case", "worst-case"],
                            "seconds": [1.0, 2.0, 10.0, 20.0, 11.0, 22.0]})
    rows = evaluation_cost(summary)
    assert [(r.what, r.count, r.seconds) for r in rows] == [("fgsm", 2, 3.0), ("pgd", 2, 30.0)]


def test_cost_html_shows_partial_recipes_subtotals_and_total():
    rows = [CostRow("train", "core<&>", 2, 5400.0, planned=4), CostRow("train", "width", 3, 1800.0, planned=3),
            CostRow("eval", "pgd", 12, 1800.0)]
    page = cost_html(rows)
    assert "core&lt;&amp;&gt;" in page and "<td>2 of 4</td>" in page and "<td>3</td>" in page
    assert "<th>5</th><th>2.00 h</th>" in page  # train subtotal: 5 models, 7200 s
    assert "<th>12</th><th>30.0 min</th>" in page  # eval subtotal
    assert "took 2.50 h," in page
    assert cost_html([]) == ""


def test_write_index_carries_the_compute_section(tmp_path):
    from robustmix.paper.reproduce import write_index
    section = cost_html([CostRow("eval", "fgsm", 1, 60.0)])
    text = write_index([], tmp_path, cost=section).read_text()
    assert "id='compute'" in text and "1.0 min" in text
