"""The result store: append-only per-example units plus rebuilt aggregates (layout in ``schema.py``).

This package is the one reader and writer of the store: ``ResultStore``
(result_store.py) writes units and aggregates and verifies units,
``aggregate`` (summary.py) builds the summary from per-example rows, and
``load_results`` (reader.py) reads what they wrote for report, export and
the paper's verdicts. ``run.json`` is the ``RunInfo`` dataclass, written
and read here only.
"""
from ..schema import DIAGNOSTIC_COLUMNS, MODEL_COLUMNS
# wilson_interval lives in stats; aggregate uses it and callers keep importing it from here.
from ..stats import wilson_interval
from .reader import REQUIRED_SUMMARY, Results, empty_frame, load_results, model_flags
from .result_store import EVAL_UNIT_COLUMNS, UNIT_COLUMNS, UNIT_RECORD, ResultStore, RunInfo
from .summary import aggregate

__all__ = ["ResultStore", "Results", "RunInfo", "aggregate", "load_results", "model_flags", "wilson_interval",
           "empty_frame", "MODEL_COLUMNS", "DIAGNOSTIC_COLUMNS", "EVAL_UNIT_COLUMNS", "UNIT_COLUMNS", "UNIT_RECORD",
           "REQUIRED_SUMMARY"]
