"""Reading a result store: ``load_results`` for report, export, compare and the paper's verdicts."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..eps import format_eps, same_eps
from ..errors import StoreError
from ..schema import CORRUPTIONS, DIAGNOSTIC_COLUMNS, MODEL_COLUMNS, WORST_CASE, VARIANT_PARAMS
from .result_store import ResultStore, RunInfo

# Columns the report and export cannot do without; the others of
# schema.SUMMARY_COLUMNS are shown when present.
REQUIRED_SUMMARY = ("model", "variant", "arch", "dataset", "threat_model", "attack", "eps",
                    "robust_acc")


@dataclasses.dataclass
class Results:
    root: Path
    summary: pd.DataFrame        # SUMMARY_COLUMNS, plus derived worst-case rows if absent
    models: pd.DataFrame         # MODEL_COLUMNS (may be empty)
    diagnostics: pd.DataFrame    # DIAGNOSTIC_COLUMNS (may be empty)
    run: RunInfo
    model_names: list[str]       # in store order
    eps_labels: dict             # (threat_model, eps) -> display label

    @property
    def date(self) -> str:
        """When the eval that wrote the aggregates finished."""
        return self.run.finished


def _read_table(path: Path, what: str) -> pd.DataFrame:
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except Exception as exc:  # pyarrow/pandas raise many types for a corrupt file
        raise StoreError(f"cannot read {what} {path}: {type(exc).__name__}; "
                         "re-run `robustmix eval` to rebuild the result store") from None


def load_results(results_dir) -> Results:
    """Read and validate a result store; every problem is a one-line StoreError."""
    root = Path(results_dir)
    if not root.is_dir():
        raise StoreError(f"results dir {root} does not exist or is not a directory; "
                         "pass the directory written by `robustmix eval`")
    if not any(root.iterdir()):
        raise StoreError(f"results dir {root} is empty; run `robustmix eval` into it first")
    if not (root / "store.json").is_file():
        raise StoreError(f"{root} has no store.json, so it is not a robustmix result store; "
                         "pass the directory written by `robustmix eval`")
    ResultStore(root).check_marker()  # the one version rule, shared with eval

    path = root / "summary.parquet"
    if not path.is_file():
        path = root / "summary.csv"
    if not path.is_file():
        raise StoreError(f"{root} has no summary.parquet or summary.csv; "
                         "re-run `robustmix eval` to finish the store")
    summary = _read_table(path, "summary")
    ResultStore(root).verify_units()  # a summary is only as sound as the per-example units it came from
    missing = [c for c in REQUIRED_SUMMARY if c not in summary.columns]
    if missing:
        raise StoreError(f"{path} lacks column(s) {', '.join(missing)}; "
                         "re-run `robustmix eval` with this robustmix version to rebuild it")
    if summary.empty:
        raise StoreError(f"{path} has no rows; run `robustmix eval` to completion first")
    summary = _normalise_summary(summary)

    models = _optional_table(root / "models.csv", MODEL_COLUMNS)
    diagnostics = _optional_table(root / "diagnostics.csv", DIAGNOSTIC_COLUMNS)
    run_path = root / "run.json"
    try:
        run = RunInfo.from_json(json.loads(run_path.read_text(encoding="utf-8")), run_path)
    except (OSError, ValueError):
        raise StoreError(f"{run_path} is missing or not valid JSON; "
                         "re-run `robustmix eval` to rewrite it") from None

    names = list(dict.fromkeys(list(summary["model"]) + list(models.get("model", []))))
    labels = {(t, e): lab for t, e, lab in
              summary[["threat_model", "eps", "eps_label"]].drop_duplicates().itertuples(index=False)}
    return Results(root, summary, models, diagnostics, run, names, labels)


def _optional_table(path: Path, columns) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=list(columns))
    df = _read_table(path, path.stem)
    if df.empty:
        return pd.DataFrame(columns=list(columns))
    if "model" not in df.columns:
        raise StoreError(f"{path} lacks column model; re-run `robustmix eval` to rebuild it")
    df["model"] = df["model"].astype(str)
    return df


def _normalise_summary(s: pd.DataFrame) -> pd.DataFrame:
    s = s.copy()
    for col in ("model", "variant", "arch", "dataset", "threat_model", "attack"):
        s[col] = s[col].astype(str)
    s["eps"] = pd.to_numeric(s["eps"], errors="coerce")
    s["robust_acc"] = pd.to_numeric(s["robust_acc"], errors="coerce")
    if s["eps"].isna().any():
        raise StoreError("summary has non-numeric eps values; re-run `robustmix eval` to rebuild it")
    # Snap eps values that differ only by CSV rounding onto one value per threat model.
    for tm, idx in s.groupby("threat_model").groups.items():
        vals = np.sort(s.loc[idx, "eps"].unique())
        canon = {}
        for v in vals:
            prev = next((c for c in canon.values() if same_eps(c, v)), None)
            canon[v] = v if prev is None else prev
        s.loc[idx, "eps"] = s.loc[idx, "eps"].map(canon)
    for col in ("ci_low", "ci_high", "clean_acc", "n", "n_robust", "eval_seed", "train_seed",
                "code_version", *VARIANT_PARAMS):
        if col not in s.columns:
            s[col] = np.nan
    if "eps_label" not in s.columns:
        s["eps_label"] = None
    s["eps_label"] = [lab if isinstance(lab, str) and lab else format_eps(e)
                      for lab, e in zip(s["eps_label"], s["eps"])]
    # Worst case = per-eps minimum over attacks; derive rows the store lacks.
    have = set(map(tuple, s.loc[s["attack"] == WORST_CASE, ["model", "threat_model", "eps"]]
                   .itertuples(index=False)))
    att = s[(s["attack"] != WORST_CASE) & (s["threat_model"] != CORRUPTIONS)].dropna(subset=["robust_acc"])
    if len(att):
        mins = att.loc[att.groupby(["model", "threat_model", "eps"])["robust_acc"].idxmin()]
        add = mins[[(m, t, e) not in have for m, t, e in
                    mins[["model", "threat_model", "eps"]].itertuples(index=False)]].copy()
        if len(add):
            add["attack"] = WORST_CASE
            s = pd.concat([s, add], ignore_index=True)
    return s


def model_flags(results: Results) -> dict[str, list[str]]:
    """Diagnostic flags raised per model, in store order, each once."""
    d = results.diagnostics
    if d.empty or "flag" not in d.columns:
        return {}
    out: dict[str, list[str]] = {}
    for model, flag in d[["model", "flag"]].dropna().itertuples(index=False):
        out.setdefault(str(model), [])
        if str(flag) not in out[str(model)]:
            out[str(model)].append(str(flag))
    return out


def empty_frame(columns) -> pd.DataFrame:
    return pd.DataFrame(columns=list(columns))
