"""RobustBench's common-corruptions format, from a result store with [threat.corruptions] rows.

``robustmix export RESULTS --corruptions DIR`` writes what robustbench 1.1.1's
``benchmark(..., threat_model="corruptions")`` writes under ``model_info/``::

    DIR/<dataset>/corruptions/<model>.json            robustbench.utils.ModelInfo fields, in its order:
                                                      clean_acc, corruptions_acc, corruptions_mce as
                                                      percentage strings with 2 decimals ("81.23")
    DIR/<dataset>/corruptions/unaggregated_results.csv
        accuracy in [0, 1] per model (rows, the index) and (corruption, severity) (a two-row
        header), as robustbench.eval.corruptions_evaluation writes it with DataFrame.to_csv and
        reads it back with read_csv(header=[0, 1], index_col=0); rows of other models already
        in the file are kept, as RobustBench does.

corruptions_acc is the mean accuracy over every (type, severity), as RobustBench
computes it; corruptions_mce is left empty without a baseline (RobustBench
divides by AlexNet's errors; here ``--mce-baseline MODEL`` names the model).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .corruption_tables import accuracy_table, corruption_rows, mce
from .errors import ConfigError, StoreError
from .export import model_info_files, write_files_into
from .results import load_results

# robustbench.data.CORRUPTIONS: the column order of RobustBench's unaggregated results.
ROBUSTBENCH_CORRUPTIONS = ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur",
                           "brightness", "fog", "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast",
                           "jpeg_compression", "elastic_transform")
# robustbench.utils.ModelInfo's fields, in its order.
MODEL_INFO_FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                     "architecture", "eps", "clean_acc", "reported", "corruptions_acc", "corruptions_acc_3d",
                     "corruptions_mce", "corruptions_mce_3d", "autoattack_acc", "footnote")
UNAGGREGATED = "unaggregated_results.csv"


def _pct(x) -> str | None:
    return None if x is None or pd.isna(x) or not np.isfinite(x) else str(round(100 * float(x), 2))


def _cells(table: pd.DataFrame) -> pd.DataFrame:
    """An accuracy_table without its mean row and column, types in RobustBench's order."""
    acc = table.drop(index="mean", columns="mean")
    order = [c for c in ROBUSTBENCH_CORRUPTIONS if c in acc.index]
    return acc.reindex(order)


def unaggregated_frame(summary: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Rows: models; columns: (corruption, severity int) as RobustBench lays them out."""
    rows = {}
    for model in models:
        acc = _cells(accuracy_table(summary, model))
        rows[model] = {(c, int(s[1:])): acc.at[c, s] for c in acc.index for s in acc.columns}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def model_info_entries(results, mce_baseline: str | None = None) -> dict[str, dict]:
    rows = corruption_rows(results.summary)
    if rows.empty:
        raise ConfigError(f"{results.root} has no common-corruption results; run a spec with "
                          f"[threat.corruptions] (e.g. evals/fashion-mnist-corruptions.toml) first")
    models = list(dict.fromkeys(rows["model"]))
    if mce_baseline is not None and mce_baseline not in models:
        raise ConfigError(f"--mce-baseline {mce_baseline!r} has no corruption results in this store; "
                          f"choose one of {', '.join(models)}")
    base = _cells(accuracy_table(rows, mce_baseline)) if mce_baseline else None
    entries = {}
    for model in models:
        acc = _cells(accuracy_table(rows, model))
        first = rows[rows["model"] == model].iloc[0]
        mce_value = None
        if base is not None:
            if not (base.index.equals(acc.index) and base.columns.equals(acc.columns)):
                raise ConfigError(f"{model} and the mCE baseline {mce_baseline} were run on different corruption "
                                  f"types or severities; evaluate both with the same [threat.corruptions]")
            with np.errstate(divide="ignore", invalid="ignore"):
                mce_value = float(mce(1 - acc.to_numpy(), 1 - base.to_numpy()))
        n = int(rows.loc[rows["model"] == model, "n"].min())
        note = (f"robustmix: {len(acc)} corruption types x severities {', '.join(acc.columns)} of the "
                f"imagecorruptions package on {n} test images"
                + (f"; mCE relative to {mce_baseline}" if mce_baseline else "") + ".")
        entry = dict.fromkeys(MODEL_INFO_FIELDS)
        entry.update({
            "link": "", "name": model, "authors": "", "additional_data": False, "number_forward_passes": 1,
            "dataset": str(first["dataset"]).lower(), "venue": "N/A", "architecture": str(first["arch"]),
            "clean_acc": _pct(first["clean_acc"]), "reported": _pct(acc.to_numpy().mean()),
            "corruptions_acc": _pct(acc.to_numpy().mean()), "corruptions_mce": _pct(mce_value), "footnote": note,
        })
        entries[model] = entry
    return entries


def export_corruptions(results_dir, out_dir, mce_baseline: str | None = None) -> list[Path]:
    """Write the RobustBench corruptions files (module docstring) under ``out_dir``; return their paths.

    Built in a temporary directory next to the target, then each file moved in
    with an atomic replace, so an error leaves no half-written file.
    """
    results = load_results(results_dir)
    entries = model_info_entries(results, mce_baseline)
    rows = corruption_rows(results.summary)
    datasets = {e["dataset"] for e in entries.values()}
    if len(datasets) != 1:
        raise ConfigError(f"the store mixes data sets ({', '.join(sorted(datasets))}); export one store per data set")
    target = Path(out_dir) / datasets.pop() / "corruptions"
    frame = unaggregated_frame(rows, list(entries))
    existing = target / UNAGGREGATED
    if existing.is_file():
        try:
            old = pd.read_csv(existing, header=[0, 1], index_col=0)
            old.columns = pd.MultiIndex.from_tuples([(c, int(s)) for c, s in old.columns])
        except Exception as exc:  # pandas raises many types for a foreign or damaged CSV
            raise StoreError(f"cannot read {existing} ({type(exc).__name__}); move it away or pass another "
                             f"--corruptions DIR") from None
        frame = pd.concat([old.drop(index=[m for m in frame.index if m in old.index]), frame])
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write RobustBench corruptions files to {target}: {exc.strerror or exc}; "
                         "pass a path in a writable directory") from None
    files = {**model_info_files(entries), UNAGGREGATED: frame.to_csv()}
    return write_files_into(target, files, "RobustBench corruptions files")
