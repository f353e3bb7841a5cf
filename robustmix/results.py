"""The result store: append-only per-example units plus rebuilt aggregates.

Each finished work unit (one model x attack x threat model x chunk of
examples, all eps) is one parquet file under ``examples/`` named by the hash
of everything that determines it, written atomically. A kill -9 loses at
most the unit in flight; a re-run skips every unit whose file exists. Two
evals writing one store at once may compute the same unit twice but write
identical bytes under one name, so there are never duplicates. Aggregates
(summary, models, diagnostics, run.json) are rebuilt from the units under a
file lock. See ``schema.py`` for the layout.

The same holds for the processes of one sharded eval (``torchrun``): each
writes its own units, temporary files have unique names (also across
hosts), and only rank 0 writes the aggregates, after all ranks are done.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock

from .errors import StoreError
from .fileio import atomic_path, write_json_atomic, write_text_atomic
from .schema import (DIAGNOSTIC_COLUMNS, MODEL_COLUMNS, STORE_FORMAT, STORE_VERSION, SUMMARY_COLUMNS,
                     WORST_CASE)
from .spectrum import model_slug
# wilson_interval lives in stats; aggregate uses it and callers keep importing it from here.
from .stats import (ALPHA, auc_difference, curve_auc, mcnemar_exact, mdd_paired, mdd_seeds, paired_counts,
                    paired_difference, paired_variance, seed_summary, wilson_interval)

class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.examples = self.root / "examples"
        self.probes = self.root / "probes"
        self.banks = self.root / "banks"

    # --- opening ---------------------------------------------------------
    def _not_writable(self, why: str) -> StoreError:
        return StoreError(f"results dir {self.root} is not writable ({why}); "
                          f"pass --results DIR with a writable directory")

    def check(self) -> "ResultStore":
        """What ``open`` would refuse, found without creating anything: an eval checks its store
        first, but creates it only once everything else checked out."""
        if self.root.exists():
            if not self.root.is_dir():
                raise self._not_writable("Not a directory")
            if (self.root / "store.json").exists():
                self.check_marker()
            return self
        parent = self.root.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise self._not_writable(f"{parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise self._not_writable(f"Permission denied at {parent}")
        return self

    def open(self) -> "ResultStore":
        """Create or check the store; refuse stores of another format/version."""
        marker = self.root / "store.json"
        try:
            for d in (self.root, self.examples, self.probes, self.banks):
                d.mkdir(parents=True, exist_ok=True)
            # A unique name: the processes of a sharded eval open the store at once.
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-probe-"):
                pass
        except OSError as exc:
            raise self._not_writable(exc.strerror or str(exc)) from None
        if marker.exists():
            self.check_marker()
        else:
            write_json_atomic(marker, {"format": STORE_FORMAT, "version": STORE_VERSION})
        return self

    def check_marker(self) -> None:
        marker = self.root / "store.json"
        try:
            info = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            raise StoreError(f"{marker} is missing or corrupt; {self.root} is not a robustmix result store") from None
        if info.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.root} is not a robustmix result store (format {info.get('format')!r}); "
                             f"pass another --results DIR")
        if info.get("version") != STORE_VERSION:
            raise StoreError(f"{self.root} was written by store version {info.get('version')}, this robustmix "
                             f"reads {STORE_VERSION}; use a new --results DIR or the robustmix version that wrote it")

    def lock(self) -> FileLock:
        return FileLock(str(self.root / ".lock"))

    # --- units -----------------------------------------------------------
    def unit_path(self, key: str) -> Path:
        return self.examples / f"{key}.parquet"

    def has_unit(self, key: str) -> bool:
        return self.unit_path(key).is_file()

    def write_unit(self, key: str, rows: pd.DataFrame) -> None:
        with atomic_path(self.unit_path(key)) as tmp:
            rows.to_parquet(tmp, index=False)

    def unit_keys(self) -> list[str]:
        """Keys of every finished unit in the store (of this and of earlier specs)."""
        return sorted(p.stem for p in self.examples.glob("*.parquet")) if self.examples.is_dir() else []

    def read_units(self, keys: list[str]) -> pd.DataFrame:
        frames = [pd.read_parquet(self.unit_path(k)) for k in keys if self.has_unit(k)]
        if not frames:
            return pd.DataFrame()
        df = pd.concat(frames, ignore_index=True)
        # Units written before the column existed were all attacked in fp32.
        df["precision"] = df["precision"].fillna("fp32") if "precision" in df else "fp32"
        return df.drop_duplicates(["model", "attack", "threat_model", "eps", "index"], keep="first")

    # --- per-model probes and filter banks ---------------------------------
    def probe_path(self, model_key: str) -> Path:
        return self.probes / f"{model_key}.json"

    def write_probe(self, model_key: str, payload: dict) -> None:
        write_json_atomic(self.probe_path(model_key), payload)

    def read_probe(self, model_key: str) -> dict | None:
        path = self.probe_path(model_key)
        return json.loads(path.read_text()) if path.is_file() else None

    def write_bank(self, model: str, bank: np.ndarray) -> None:
        with atomic_path(self.banks / f"{model_slug(model)}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, bank.astype(np.float32))

    # --- aggregates --------------------------------------------------------
    def write_tables(self, summary: pd.DataFrame, models: pd.DataFrame, diagnostics: pd.DataFrame,
                     run: dict) -> None:
        with self.lock():
            with atomic_path(self.root / "summary.parquet") as tmp:
                summary.to_parquet(tmp, index=False)
            write_text_atomic(self.root / "summary.csv", summary.to_csv(index=False))
            write_text_atomic(self.root / "models.csv", models.to_csv(index=False))
            write_text_atomic(self.root / "diagnostics.csv", diagnostics.to_csv(index=False))
            write_json_atomic(self.root / "run.json", run)


def aggregate(examples: pd.DataFrame, models: pd.DataFrame, context: dict) -> pd.DataFrame:
    """Per-example rows -> one row per (model, attack, threat model, eps), plus worst-case rows.

    ``seconds`` and ``fwd_bwd_passes`` are summed over the units that made a
    row; a worst-case row sums its attacks. A worst-case row covers only the
    examples every attack at that eps evaluated (an attack run on a subset
    narrows it), and says which attacks it took in ``attacks``.
    """
    if examples.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    keys = ["model", "attack", "threat_model", "eps"]
    ex = examples
    cost = ex.drop_duplicates(["unit", "eps"]).groupby(keys)[["seconds", "passes"]].sum()
    agg = ex.groupby(keys).agg(n=("correct", "size"), n_robust=("correct", "sum"),
                               n_clean=("clean_correct", "sum"), attack_kind=("attack_kind", "first"),
                               eps_label=("eps_label", "first"), precision=("precision", "first"))
    agg = agg.join(cost).reset_index()
    agg["attacks"] = agg["attack"]

    worst = []
    for (model, tm, eps), g in ex.groupby(["model", "threat_model", "eps"]):
        per_attack = g.pivot_table(index="index", columns="attack", values="correct", aggfunc="first")
        covered = per_attack.dropna()
        clean = g.drop_duplicates("index").set_index("index")["clean_correct"].reindex(covered.index)
        c = cost.loc[[(model, a, tm, eps) for a in per_attack.columns]].sum()
        worst.append({"model": model, "attack": WORST_CASE, "threat_model": tm, "eps": eps,
                      "n": len(covered), "n_robust": int(covered.astype(bool).all(axis=1).sum()),
                      "n_clean": int(clean.sum()), "attack_kind": WORST_CASE,
                      "eps_label": g["eps_label"].iloc[0], "precision": g["precision"].iloc[0],
                      "seconds": c["seconds"], "passes": c["passes"],
                      "attacks": "+".join(sorted(per_attack.columns))})
    agg = pd.concat([agg, pd.DataFrame(worst)], ignore_index=True)
    agg["n_robust"] = agg["n_robust"].astype(int)
    agg["passes"] = agg["passes"].astype(np.int64)  # a count; the worst-case sum made it float
    agg["robust_acc"] = agg["n_robust"] / agg["n"]
    agg["ci_low"], agg["ci_high"] = wilson_interval(agg["n_robust"].to_numpy(), agg["n"].to_numpy())
    agg["clean_acc"] = agg["n_clean"] / agg["n"]
    agg = agg.rename(columns={"passes": "fwd_bwd_passes"}).drop(columns=["n_clean"])
    meta = models.set_index("model")[["variant", "arch", "dataset", "train_seed"]]
    agg = agg.join(meta, on="model")
    for key, value in context.items():
        agg[key] = value
    cols = list(SUMMARY_COLUMNS) + ["attack_kind", "attacks"]
    order = {m: i for i, m in enumerate(models["model"])}
    agg = agg.assign(_m=agg["model"].map(order), _w=agg["attack"] == WORST_CASE)
    agg = agg.sort_values(["_m", "threat_model", "_w", "attack", "eps"]).drop(columns=["_m", "_w"])
    return agg[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- paired comparisons

EPS_TOL = 1e-9   # eps values are stored as floats of one grid; this only absorbs rounding


def load_examples(root, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every per-example row of a result store, read through ``ResultStore.read_units``.

    With ``summary`` (the store's last aggregate), only the (model, attack,
    threat model, eps) cells it lists are kept, so units of an earlier spec
    left in the store do not enter a comparison."""
    store = ResultStore(root)
    ex = store.read_units(store.unit_keys())
    if summary is None or ex.empty:
        return ex
    cells = summary.loc[summary["attack"] != WORST_CASE, ["model", "attack", "threat_model", "eps"]]
    return ex.merge(cells.drop_duplicates(), on=["model", "attack", "threat_model", "eps"], how="inner")


def compact(examples: pd.DataFrame) -> pd.DataFrame:
    """The columns comparisons read, names as categories: many pairwise look-ups in one frame
    then filter by integer codes instead of comparing strings (seconds instead of minutes on
    a million rows)."""
    cols = [c for c in ("model", "attack", "attack_kind", "threat_model", "eps", "index", "correct")
            if c in examples.columns]
    return examples[cols].astype({c: "category" for c in ("model", "attack", "attack_kind", "threat_model")
                                  if c in cols})


def _as_examples(store) -> pd.DataFrame:
    if isinstance(store, pd.DataFrame):
        return store
    # Every unit of the store; callers holding the summary pass load_examples(root, summary).
    return load_examples(store.root if isinstance(store, ResultStore) else store)


def example_table(examples: pd.DataFrame, threat_model: str, eps: float, attack: str = WORST_CASE,
                  models=None, attacks=None) -> pd.DataFrame:
    """Robust indicator per example (rows: example index) and model (columns) at one
    (threat model, eps, attack), on the examples every model shares.

    ``attack=WORST_CASE``: an example is robust when it is robust under every
    attack that ran on it (restricted to ``attacks`` when given). Where attacks
    ran on different n (AutoAttack or Square on a subset), examples in the
    subset are judged by more attacks than the rest: this per-example worst
    case covers all examples any attack reached, unlike the summary's
    worst-case row, which keeps only the subset every attack covered. A pair
    is only fair when both models met the same attacks on an example, so an
    example enters the table only if every model ran the same set of attacks
    on it; ``table.attrs["dropped"]`` counts the others and
    ``table.attrs["attacks"]`` names the attacks used."""
    ex = examples[(examples["threat_model"] == threat_model) & ((examples["eps"] - eps).abs() < EPS_TOL)]
    if models is not None:
        ex = ex[ex["model"].isin(list(models))]
    if attack != WORST_CASE:
        ex = ex[ex["attack"] == attack]
    elif attacks is not None:
        ex = ex[ex["attack"].isin(list(attacks))]
    names = list(models) if models is not None else list(dict.fromkeys(ex["model"]))
    if ex.empty:
        table = pd.DataFrame(columns=names, dtype=bool)
        table.attrs.update(dropped=0, attacks=[])
        return table
    ex = ex.drop_duplicates(["model", "attack", "index"])
    codes = pd.Categorical(ex["attack"]).codes.astype(np.int64)
    g = ex.assign(_bit=np.left_shift(1, codes)).groupby(["model", "index"], observed=True)
    robust = g["correct"].all().unstack("model")
    ran = g["_bit"].sum().unstack("model")
    if not set(names) <= set(robust.columns):  # a model with no rows here: nothing is shared
        table = pd.DataFrame(columns=names, dtype=bool)
        table.attrs.update(dropped=int(len(robust)), attacks=sorted(ex["attack"].unique()))
        return table
    have = robust[names].notna().all(axis=1)
    same = ran[names].eq(ran[names[0]], axis=0).all(axis=1)
    keep = have & same
    table = robust.loc[keep, names].astype(bool).sort_index()
    table.attrs.update(dropped=int((~keep).sum()), attacks=sorted(ex["attack"].unique()))
    return table


@dataclass
class Comparison:
    """A paired comparison of two models on the same examples: A - B in robust accuracy."""
    model_a: str
    model_b: str
    threat_model: str
    eps: float
    attack: str
    n: int
    acc_a: float
    acc_b: float
    diff: float          # acc_a - acc_b
    ci_low: float        # Newcombe (1998) hybrid score interval, method 10
    ci_high: float
    p: float             # exact McNemar, two-sided
    only_a: int          # discordant: robust under A only
    only_b: int          # discordant: robust under B only
    mdd: float           # minimum detectable difference (80% power, alpha) at this n and discordant rate
    dropped: int         # examples left out (missing for a model, or met different attacks)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def variance(self) -> float:
        return paired_variance(self.only_a, self.only_b, self.n)


def paired_comparison(robust_a, robust_b, alpha: float = ALPHA, **labels) -> Comparison:
    """Compare two aligned boolean vectors (same examples) with the tests of ``robustmix.stats``."""
    a, b, c, d = paired_counts(robust_a, robust_b)
    n = a + b + c + d
    diff, lo, hi = paired_difference(a, b, c, d, alpha)
    return Comparison(**{"dropped": 0, **labels}, n=n, acc_a=(a + b) / n if n else np.nan,
                      acc_b=(a + c) / n if n else np.nan, diff=diff, ci_low=lo, ci_high=hi,
                      p=mcnemar_exact(b, c), only_a=b, only_b=c,
                      mdd=mdd_paired(n, (b + c) / n, alpha) if n else np.nan)


def compare(store, model_a: str, model_b: str, threat_model: str, eps: float, attack: str = WORST_CASE,
            attacks=None, alpha: float = ALPHA) -> Comparison:
    """Paired test of model A against model B at one (threat model, eps, attack).

    ``store``: a ResultStore, its directory, or a frame from ``load_examples``.
    Exact McNemar p-value, Newcombe interval for the difference, discordant
    counts, n and the minimum detectable difference (``robustmix.stats``)."""
    t = example_table(_as_examples(store), threat_model, eps, attack, [model_a, model_b], attacks)
    return paired_comparison(t[model_a].to_numpy(bool), t[model_b].to_numpy(bool), alpha, model_a=model_a,
                             model_b=model_b, threat_model=threat_model, eps=float(eps), attack=attack,
                             dropped=int(t.attrs["dropped"]))


def compare_seeds(comparisons: list[Comparison], alpha: float = ALPHA) -> dict:
    """Seeds as replicates over per-seed comparisons (one per seed pair, k >= 2):
    ``stats.seed_summary`` plus the minimum detectable difference of the seed design."""
    out = seed_summary([c.diff for c in comparisons], [c.variance for c in comparisons], alpha)
    out["mdd"] = mdd_seeds(out["k"], out["sd"], alpha)
    return out


def compare_auc(store, model_a: str, model_b: str, threat_model: str, attack: str = WORST_CASE,
                attacks=None, alpha: float = ALPHA, seed: int = 0) -> dict:
    """AUC of each model's robustness curve (``stats.curve_auc``) and a paired bootstrap
    interval for AUC_A - AUC_B over the examples both have at every eps of the grid."""
    ex = _as_examples(store)
    ex = ex[ex["threat_model"] == threat_model]
    grid = sorted(set(ex.loc[ex["model"] == model_a, "eps"]) & set(ex.loc[ex["model"] == model_b, "eps"]))
    tables = [example_table(ex, threat_model, e, attack, [model_a, model_b], attacks) for e in grid]
    shared = sorted(set.intersection(*(set(t.index) for t in tables))) if tables else []
    ra = np.stack([t.loc[shared, model_a].to_numpy(bool) for t in tables], axis=1) if shared else np.zeros((0, 0))
    rb = np.stack([t.loc[shared, model_b].to_numpy(bool) for t in tables], axis=1) if shared else np.zeros((0, 0))
    if not shared:
        return {"n": 0, "eps": grid, "auc_a": np.nan, "auc_b": np.nan, "diff": np.nan,
                "ci_low": np.nan, "ci_high": np.nan}
    diff, lo, hi = auc_difference(grid, ra, rb, seed=seed, alpha=alpha)
    return {"n": len(shared), "eps": grid, "auc_a": curve_auc(grid, ra.mean(0)),
            "auc_b": curve_auc(grid, rb.mean(0)), "diff": diff, "ci_low": lo, "ci_high": hi}


def empty_frame(columns) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))


__all__ = ["ResultStore", "aggregate", "wilson_interval", "empty_frame", "MODEL_COLUMNS",
           "DIAGNOSTIC_COLUMNS", "load_examples", "compact", "example_table", "Comparison", "paired_comparison",
           "compare", "compare_seeds", "compare_auc"]
