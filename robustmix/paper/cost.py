"""What a paper study cost in compute: training seconds per recipe, evaluation seconds per attack.

The figures are sums of the records each step already writes: a checkpoint's ``seconds``
(meta.json; a resumed run carries its earlier epochs' time forward) and the result store's
per-unit ``seconds``. Summing records instead of timing the command counts a study that ran in
resumed pieces, over several sittings, exactly once. Left out, and small next to these: process
start, data preparation, the spectral analysis and writing the reports.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from ..schema import WORST_CASE
from ..store import ModelStore
from ..train import run_name


@dataclass(frozen=True)
class CostRow:
    step: str  # "train" or "eval"
    what: str  # a recipe name, or an attack name
    count: int  # models trained, or (model, threat model, attack, eps) summary rows evaluated
    seconds: float
    planned: int | None = None  # the recipe's runs (variants x seeds); None for evaluation
    copied: int = 0  # of ``count``, runs copied from a finished twin (robustmix.twins): no training time


def training_cost(zoo: ModelStore, recipes) -> list[CostRow]:
    """One row per recipe: how many of its runs are finished in ``zoo``, of how many, and their
    summed training seconds. Other checkpoints under the same recipe name (say, seeds another
    scale trained) are not this study's and are not counted, and a run copied from its twin took
    no training time here (its meta.json keeps the twin's seconds)."""
    rows = []
    for recipe in recipes:
        names = [run_name(recipe, v, p, s) for v, p in recipe.variant_list() for s in recipe.seeds]
        metas = [zoo.meta(n) for n in names if zoo.exists(n)]
        trained = [m for m in metas if "copied_from" not in m]
        seconds = float(sum(m.get("seconds", 0.0) for m in trained))
        rows.append(CostRow("train", recipe.name, len(metas), seconds, planned=len(names),
                            copied=len(metas) - len(trained)))
    return rows


def evaluation_cost(summary: pd.DataFrame) -> list[CostRow]:
    """One row per attack: summary rows and their seconds. The worst-case rows restate the attacks'
    time, so they are left out of the sum."""
    rows = summary[summary["attack"] != WORST_CASE]
    return [CostRow("eval", str(attack), len(g), float(g["seconds"].sum()))
            for attack, g in rows.groupby("attack", sort=True)]


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def cost_html(rows: list[CostRow]) -> str:
    """The report's compute section: a table of the rows with subtotals per step and a total."""
    if not rows:
        return ""
    cells = []
    for step in ("train", "eval"):
        part = [r for r in rows if r.step == step]
        for r in part:
            count = f"{r.count} of {r.planned}" if r.planned not in (None, r.count) else str(r.count)
            if r.copied:
                count += f" ({r.copied} copied from the same training under another name)"
            cells.append(f"<tr><td>{step}</td><td>{html.escape(r.what)}</td><td>{count}</td>"
                         f"<td>{hours(r.seconds)}</td></tr>")
        if part:
            cells.append(f"<tr><th>{step}</th><th>all</th><th>{sum(r.count for r in part)}</th>"
                         f"<th>{hours(sum(r.seconds for r in part))}</th></tr>")
    total = hours(sum(r.seconds for r in rows))
    return ("<section id='compute'><h2>Compute</h2>"
            f"<p>Training and evaluation took {total}, summed from the recorded time of every "
            "checkpoint and evaluation unit, so a study resumed in pieces is counted once (each model's training device is in its "
            "meta.json, the evaluation's in the eval report). Not counted: "
            "process start, data preparation, the spectral analysis and report writing.</p>"
            "<table class='test'><tr><th>step</th><th>recipe or attack</th><th>models or rows</th>"
            f"<th>time</th></tr>{''.join(cells)}</table></section>")
