"""Writing a result store and verifying its units: ``ResultStore`` and ``run.json``'s ``RunInfo``.

Each finished work unit (one model x attack x threat model x chunk of
examples, all eps) is one parquet file under ``examples/`` named by the hash
of everything that determines it, written atomically. A kill -9 loses at
most the unit in flight; a re-run skips every unit whose file exists and
verifies (readable with parquet's page checksums, the row count and key
recorded in the file's metadata, the columns the readers need), and
recomputes one that does not. Two evals writing one store at once may
compute the same unit twice but write identical bytes under one name, so
there are never duplicates. Aggregates (summary, models, diagnostics,
run.json) are rebuilt from the units under a file lock; only rank 0 of a
sharded eval (``torchrun``) writes them, after all ranks are done.
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

from ..errors import StoreError
from ..fileio import atomic_path, model_slug, remove_stale_temps, write_json_atomic, write_text_atomic
from ..schema import STORE_FORMAT, STORE_VERSION
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
