"""The result store: append-only per-example units plus rebuilt aggregates.

Each finished work unit (one model x attack x threat model x chunk of
examples, all eps) is one parquet file under ``examples/`` named by the hash
of everything that determines it, written atomically. A kill -9 loses at
most the unit in flight; a re-run skips every unit whose file exists and
verifies (readable with parquet's page checksums, the row count and key
recorded in the file's metadata, the columns the readers need), and
recomputes one that does not. Two
evals writing one store at once may compute the same unit twice but write
identical bytes under one name, so there are never duplicates. Aggregates
(summary, models, diagnostics, run.json) are rebuilt from the units under a
file lock. See ``schema.py`` for the layout.

This module is the one reader and writer of the store: ``load_results``
reads what ``ResultStore`` wrote (report, export and the paper's verdicts go
through it), and ``run.json`` is the ``RunInfo`` dataclass, written and read
here only.

The same holds for the processes of one sharded eval (``torchrun``): each
writes its own units, temporary files have unique names (also across
hosts), and only rank 0 writes the aggregates, after all ranks are done.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from .eps import format_eps, same_eps
from .errors import StoreError
from .fileio import atomic_path, model_slug, remove_stale_temps, write_json_atomic, write_text_atomic
from .schema import (CORRUPTIONS, DIAGNOSTIC_COLUMNS, MODEL_COLUMNS, STORE_FORMAT, STORE_VERSION, SUMMARY_COLUMNS,
                     VARIANT_PARAMS, WORST_CASE)
# wilson_interval lives in stats; aggregate uses it and callers keep importing it from here.
from .stats import wilson_interval
# Parquet metadata key of a unit file: {"key": ..., "rows": ...} as written, checked on every read.
UNIT_RECORD = b"robustmix.unit"
# What every unit holds (schema.EXAMPLE_COLUMNS less the later additions precision and attack_batch),
# and what an eval's aggregate() and run.json read on top of that, so what a resume requires.
UNIT_COLUMNS = ("model", "attack", "threat_model", "eps", "index", "label", "correct", "margin", "eval_seed")
EVAL_UNIT_COLUMNS = UNIT_COLUMNS + ("attack_kind", "eps_label", "clean_correct", "unit", "seconds", "passes")


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """``run.json``: what produced a store's aggregates, rebuilt with them by every eval."""
    spec: dict              # the EvalSpec as run (asdict)
    spec_hash: str
    eval_seed: int
    eps_grid: dict          # threat model -> eps floats
    n_examples: int         # distinct examples across all units
    nested: bool
    code_version: str
    packages: dict          # package -> version
    device: str
    world_size: int         # processes that shared the units
    # Attack time summed over all units (also those done by earlier, resumed runs);
    # wall_seconds is only the invocation that wrote this file, which skips finished units.
    seconds: float
    wall_seconds: float
    finished: str           # ISO 8601, UTC

    @classmethod
    def from_json(cls, obj, path: Path) -> "RunInfo":
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(obj, dict) or set(obj) != set(names):
            raise StoreError(f"{path} does not hold this robustmix's run.json fields; "
                             "re-run `robustmix eval` into a fresh --results DIR")
        return cls(**obj)


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
        for d in (self.root, self.examples, self.probes, self.banks):
            remove_stale_temps(d)  # left by killed evals; never one a running eval is writing
        if marker.exists():
            self.check_marker()
        else:
            write_json_atomic(marker, {"format": STORE_FORMAT, "version": STORE_VERSION})
        return self

    def check_marker(self) -> None:
        marker = self.root / "store.json"
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8 text at all
            raise StoreError(f"{marker} is missing or corrupt; {self.root} is not a robustmix result store") from None
        if not isinstance(info, dict) or info.get("format") != STORE_FORMAT:
            info = info if isinstance(info, dict) else {}
            raise StoreError(f"{self.root} is not a robustmix result store (format {info.get('format')!r}); "
                             f"pass another --results DIR")
        version = info.get("version")
        if isinstance(version, int) and version < STORE_VERSION:
            raise StoreError(f"{self.root} was written by store version {version}, older than the version {STORE_VERSION} "
                             f"this robustmix reads; re-run `robustmix eval` into a fresh --results DIR")
        if version != STORE_VERSION:
            raise StoreError(f"{self.root} was written by store version {version}, this robustmix "
                             f"reads {STORE_VERSION}; use a new --results DIR or the robustmix version that wrote it")

    def lock(self) -> FileLock:
        return FileLock(str(self.root / ".lock"))

    # --- units -----------------------------------------------------------
    def unit_path(self, key: str) -> Path:
        return self.examples / f"{key}.parquet"

    def has_unit(self, key: str, on_corrupt=None) -> bool:
        """Finished: the unit's file exists and verifies. A file that does not (truncated, foreign,
        bit-flipped) counts as unfinished, so it is recomputed; ``on_corrupt(message)`` hears why."""
        if not self.unit_path(key).is_file():
            return False
        _, why = self._verified_unit(key, EVAL_UNIT_COLUMNS)
        if why is not None and on_corrupt is not None:
            on_corrupt(f"{self.unit_path(key)} is corrupt ({why})")
        return why is None

    def write_unit(self, key: str, rows: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(rows, preserve_index=False)  # what DataFrame.to_parquet(index=False) writes
        record = json.dumps({"key": key, "rows": table.num_rows, "digest": _digest(table.to_pandas())}).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), UNIT_RECORD: record})
        with atomic_path(self.unit_path(key)) as tmp:
            pq.write_table(table, tmp, write_page_checksum=True)

    def _verified_unit(self, key: str, columns=UNIT_COLUMNS) -> tuple[pd.DataFrame | None, str | None]:
        """(rows, None) for a sound unit file, (None, what is wrong) otherwise."""
        path = self.unit_path(key)
        try:
            table = pq.read_table(path, page_checksum_verification=True)
            record = json.loads((table.schema.metadata or {}).get(UNIT_RECORD, b"{}"))
            names = table.column_names
            df = table.to_pandas()
        except Exception as exc:  # pyarrow raises many types (ArrowInvalid, OSError, ...) for a damaged file
            text = " ".join(str(exc).replace(str(path), "the file").split())
            return None, f"unreadable: {type(exc).__name__}: {text[:100]}"
        if not isinstance(record, dict):
            return None, "its robustmix.unit record is not a table"
        # Units written before the record existed have none; their columns and key are still checked.
        if record.get("key", key) != key:
            return None, f"it holds unit {record.get('key')!r}, not {key!r}"
        if record.get("rows", len(df)) != len(df):
            return None, f"{len(df)} rows where {record['rows']} were written"
        missing = [c for c in columns if c not in names]
        if missing:
            return None, f"no column {missing[0]}: not a robustmix result unit"
        if df.empty or ("unit" in names and (df["unit"] != key).any()):
            return None, "no rows" if df.empty else "rows of another unit"
        if "digest" in record and record["digest"] != _digest(df):
            return None, "its rows differ from those written (checksum mismatch)"
        return df, None

    def read_unit(self, key: str, columns=UNIT_COLUMNS) -> pd.DataFrame:
        df, why = self._verified_unit(key, columns)
        if why is not None:
            raise StoreError(f"{self.unit_path(key)} is corrupt ({why}); re-run the same `robustmix eval` "
                             f"command to recompute it")
        return df

    def verify_units(self) -> None:
        """Every unit file of the store verifies, or a StoreError names the first that does not
        (report and export check this: the summary is only as sound as the units it came from)."""
        for path in sorted(self.examples.glob("*.parquet")):
            self.read_unit(path.name[:-len(".parquet")])

    def unit_keys(self) -> list[str]:
        """Keys of every finished unit in the store (of this and of earlier specs)."""
        return sorted(p.stem for p in self.examples.glob("*.parquet")) if self.examples.is_dir() else []

    def read_units(self, keys: list[str]) -> pd.DataFrame:
        frames = [self.read_unit(k, EVAL_UNIT_COLUMNS) for k in keys if self.unit_path(k).is_file()]
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
                     run: "RunInfo") -> None:
        with self.lock():
            with atomic_path(self.root / "summary.parquet") as tmp:
                summary.to_parquet(tmp, index=False)
            write_text_atomic(self.root / "summary.csv", summary.to_csv(index=False))
            write_text_atomic(self.root / "models.csv", models.to_csv(index=False))
            write_text_atomic(self.root / "diagnostics.csv", diagnostics.to_csv(index=False))
            write_json_atomic(self.root / "run.json", dataclasses.asdict(run))


def _digest(rows: pd.DataFrame) -> str:
    """Checksum of a unit's decoded rows (parquet's page checksums leave headers and statistics out)."""
    return hashlib.sha256(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()[:32]


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
        if tm == CORRUPTIONS:  # different corruptions at one severity are no eps-ball: no worst case
            continue
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
    meta = models.set_index("model")[["variant", *VARIANT_PARAMS, "arch", "dataset", "train_seed"]]
    agg = agg.join(meta, on="model")
    for key, value in context.items():
        agg[key] = value
    cols = list(SUMMARY_COLUMNS) + ["attack_kind", "attacks"]
    order = {m: i for i, m in enumerate(models["model"])}
    agg = agg.assign(_m=agg["model"].map(order), _w=agg["attack"] == WORST_CASE)
    agg = agg.sort_values(["_m", "threat_model", "_w", "attack", "eps"]).drop(columns=["_m", "_w"])
    return agg[cols].reset_index(drop=True)


# --- reading: the one reader of a store, for report, export and verdicts -----

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


__all__ = ["ResultStore", "Results", "RunInfo", "aggregate", "load_results", "model_flags", "wilson_interval",
           "empty_frame", "MODEL_COLUMNS", "DIAGNOSTIC_COLUMNS"]
