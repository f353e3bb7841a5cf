"""The paper's reproduction on top of the core: spectral-envelope analysis, the
claims' verdicts, pixel un-shuffling and the end-to-end ``reproduce paper`` run."""
