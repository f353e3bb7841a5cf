"""Leaderboard CSV and RobustBench model_info JSON export of a result store.

``export_leaderboard`` ranks models by worst-case robust accuracy (minimum
over all attacks run) at one (threat model, eps). ``export_robustbench``
writes one JSON per model with RobustBench's model_info field names so the
files can be dropped into a RobustBench-style leaderboard.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .eps import format_eps, parse_eps, same_eps
from .errors import ConfigError, StoreError
from .fileio import atomic_path, model_slug, temp_dir_next_to
from .results import load_results, model_flags
from .schema import CORRUPTIONS, WORST_CASE

LEADERBOARD_COLUMNS = (
    "rank", "model", "variant", "architecture", "dataset", "threat_model", "eps", "eps_label",
    "clean_acc", "robust_acc", "autoattack_acc", "pgd_acc", "fgsm_acc", "n_examples",
    "params", "trainable_params", "train_seed", "eval_seed", "flags", "code_version", "date",
)

# Field order of RobustBench's model_info/<dataset>/<threat>/<model>.json files
# (robustbench.utils.ModelInfo plus the leaderboard's "external"/"unreliable").
ROBUSTBENCH_FIELDS = (
    "link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
    "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "external", "unreliable",
    "footnote",
)

def _pct(x) -> str | None:
    return None if x is None or pd.isna(x) else f"{100 * float(x):.2f}"


def _match_eps(available: list[float], eps: float) -> float | None:
    for e in available:
        if same_eps(e, eps):
            return e
    return None


def select_cell(results, threat_model=None, eps=None) -> tuple[str, float]:
    """(threat model, eps) to rank at; defaults documented in export_leaderboard."""
    s = results.summary
    s = s[s["threat_model"] != CORRUPTIONS]  # common corruptions export with --corruptions DIR
    if s.empty:
        raise ConfigError("the store holds common-corruption results only; export them with --corruptions DIR")
    tms = s["threat_model"].value_counts()
    if threat_model is None:
        # most rows; ties broken by name so the choice is stable
        threat_model = sorted(tms.index, key=lambda t: (-tms[t], t))[0]
    elif threat_model not in tms.index:
        raise ConfigError(f"threat model {threat_model!r} is not in the results; "
                          f"use one of {', '.join(sorted(tms.index))}")
    d = s[s["threat_model"] == threat_model]
    available = sorted(d["eps"].unique())
    if eps is None:
        models = d["model"].nunique()
        full = d[d["attack"] == WORST_CASE].groupby("eps")["model"].nunique()
        common = sorted(full[full == models].index)
        if not common:
            raise ConfigError(f"no {threat_model} eps was evaluated for every model; "
                              f"pass eps, one of {_eps_list(d)}")
        return threat_model, float(common[-1])
    found = _match_eps(available, parse_eps(eps))
    if found is None:
        # The threat model may have been the default: point to those where this eps was evaluated.
        elsewhere = [t for t in sorted(tms.index) if t != threat_model
                     and _match_eps(sorted(s.loc[s["threat_model"] == t, "eps"].unique()), parse_eps(eps)) is not None]
        hint = f"pass --threat-model {' or '.join(elsewhere)}, or " if elsewhere else ""
        raise ConfigError(f"eps {eps} was not evaluated for {threat_model}; "
                          f"{hint}use a {threat_model} eps: {_eps_list(d)}")
    return threat_model, float(found)


def _eps_list(d: pd.DataFrame) -> str:
    labels = d.drop_duplicates("eps").sort_values("eps")
    return ", ".join(f"{lab} ({e:.6g})" if lab != f"{e:.6g}" else lab
                     for e, lab in zip(labels["eps"], labels["eps_label"]))


def leaderboard_frame(results, threat_model=None, eps=None) -> pd.DataFrame:
    tm, eps = select_cell(results, threat_model, eps)
    s = results.summary
    cell = s[(s["threat_model"] == tm) & s["eps"].map(lambda e: same_eps(e, eps))]
    by_attack = cell.pivot_table(index="model", columns="attack", values="robust_acc",
                                 aggfunc="first")
    wc = cell[cell["attack"] == WORST_CASE].set_index("model")
    models = results.models.set_index("model")
    flags = model_flags(results)
    date = results.date
    rows = []
    for model in results.model_names:
        m = models.loc[model] if model in models.index else None
        w = wc.loc[model] if model in wc.index else None
        srow = s[s["model"] == model].iloc[0]

        def pick(col, *, model_first=True):
            for src in ((m, w, srow) if model_first else (w, m, srow)):
                if src is not None and col in src.index and not pd.isna(src[col]):
                    return src[col]
            return None

        def acc(attack):
            if attack in by_attack.columns and model in by_attack.index:
                return by_attack.at[model, attack]
            return float("nan")

        rows.append({
            "model": model, "variant": pick("variant"), "architecture": pick("arch"),
            "dataset": pick("dataset"), "threat_model": tm, "eps": float(eps),
            "eps_label": results.eps_labels.get((tm, eps), format_eps(eps)),
            "clean_acc": pick("clean_acc"), "robust_acc": acc(WORST_CASE),
            "autoattack_acc": acc("autoattack"), "pgd_acc": acc("pgd"), "fgsm_acc": acc("fgsm"),
            "n_examples": pick("n", model_first=False), "params": pick("params"),
            "trainable_params": pick("trainable_params"), "train_seed": pick("train_seed"),
            "eval_seed": pick("eval_seed", model_first=False),
            "flags": ";".join(flags.get(model, [])),
            "code_version": pick("code_version", model_first=False) or results.run.code_version,
            "date": date,
        })
    df = pd.DataFrame(rows)
    # Highest worst-case accuracy first; ties by clean accuracy, then name (stable output).
    df = df.sort_values(["robust_acc", "clean_acc", "model"], ascending=[False, False, True],
                        na_position="last", kind="mergesort").reset_index(drop=True)
    df["rank"] = df["robust_acc"].rank(method="min", ascending=False).astype("Int64")
    for col in ("n_examples", "params", "trainable_params", "train_seed", "eval_seed"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in ("clean_acc", "robust_acc", "autoattack_acc", "pgd_acc", "fgsm_acc"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df[list(LEADERBOARD_COLUMNS)]


def export_leaderboard(results_dir, out_csv, threat_model=None, eps=None) -> pd.DataFrame:
    """Write a leaderboard CSV (one row per model, LEADERBOARD_COLUMNS) and return it.

    Ranked by ``robust_acc``: worst case over attacks at (threat_model, eps).
    Defaults: the threat model with most summary rows, and its largest eps
    evaluated for every model. ``eps`` may be a float or a string ("8/255").
    Models lacking that cell keep a row with empty robust_acc and rank.
    """
    results = load_results(results_dir)
    df = leaderboard_frame(results, threat_model, eps)
    out_csv = Path(out_csv)
    _atomic_write(out_csv, lambda f: df.to_csv(f, index=False), newline="")
    return df


def robustbench_entries(results, threat_model, eps, meta: dict | None = None) -> dict[str, dict]:
    """RobustBench model_info entries; ``meta`` fills the fields a result store does not know
    (link, authors, venue, additional_data, number_forward_passes)."""
    board = leaderboard_frame(results, threat_model, eps)
    meta = meta or {}
    flags = model_flags(results)
    entries = {}
    for row in board.itertuples(index=False):
        notes = []
        if pd.notna(row.autoattack_acc):
            aa = row.autoattack_acc
        else:
            aa = row.robust_acc
            notes.append("AutoAttack was not run: autoattack_acc is the worst case over "
                         "the attacks run by robustmix.")
        if flags.get(row.model):
            notes.append("Diagnostics flagged: " + ", ".join(flags[row.model]) + ".")
        if pd.isna(row.robust_acc):
            notes.append("This model was not evaluated at this eps.")
        entry = {
            "link": meta.get("link", ""),
            "name": row.model,
            "authors": meta.get("authors", ""),
            "additional_data": bool(meta.get("additional_data", False)),
            "number_forward_passes": int(meta.get("number_forward_passes", 1)),
            "dataset": str(row.dataset or "").lower(),
            "venue": meta.get("venue", "N/A"),
            "architecture": row.architecture,
            "eps": row.eps_label,
            "clean_acc": _pct(row.clean_acc),
            # "reported" is the number the authors claim; for a robustmix run that is its own
            # headline number, the worst case over all attacks.
            "reported": _pct(row.robust_acc),
            "autoattack_acc": _pct(aa),
            # RobustBench ranks by "external" when present: the strongest evaluation known.
            "external": _pct(row.robust_acc),
            "unreliable": bool(flags.get(row.model)),
            "footnote": "<br>".join(notes) if notes else None,
        }
        entries[row.model] = {k: entry[k] for k in ROBUSTBENCH_FIELDS}
    return entries


def export_robustbench(results_dir, out_dir, threat_model, eps) -> list[Path]:
    """Write <out_dir>/<model_slug>.json, one RobustBench model_info entry per model.

    Accuracies are percentage strings with 2 decimals ("59.53"); eps is the
    display label ("8/255"). ``unreliable`` is true when diagnostics flagged
    the model. Files are written in a temporary directory next to out_dir and
    moved in, each with an atomic replace.
    """
    results = load_results(results_dir)
    entries = robustbench_entries(results, threat_model, eps)
    return write_files_into(Path(out_dir), model_info_files(entries), "RobustBench JSON")


def model_info_files(entries: dict[str, dict]) -> dict[str, str]:
    """{file name: JSON text} of RobustBench model_info entries, one ``<model_slug>.json`` per model."""
    return {f"{model_slug(model)}.json": json.dumps(entry, indent=2, ensure_ascii=False) + "\n"
            for model, entry in entries.items()}


def write_files_into(out_dir: Path, files: dict[str, str], what: str) -> list[Path]:
    """Write text ``files`` into ``out_dir`` through a temporary directory next to it: a new
    out_dir appears whole; in an existing one each file replaces its namesake atomically and
    files of other models stay. A failure is one StoreError naming ``what``."""
    try:
        with temp_dir_next_to(out_dir) as tmp:
            for name, text in files.items():
                (tmp / name).write_text(text, encoding="utf-8")
            if not out_dir.exists():
                os.rename(tmp, out_dir)
            else:  # files of other models already there stay
                for name in files:
                    os.replace(tmp / name, out_dir / name)
    except OSError as exc:
        raise StoreError(f"cannot write {what} to {out_dir}: {exc.strerror or exc}; "
                         "pass a path in a writable directory") from None
    return [out_dir / name for name in files]


def _atomic_write(path: Path, write, newline=None) -> None:
    if path.is_dir():
        raise StoreError(f"{path} is a directory; pass a file path such as {path / 'leaderboard.csv'}")
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline=newline) as f:
                write(f)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}; "
                         "pass a path in a writable directory") from None
