"""Write fixture result stores in exactly the layout of robustmix/schema.py.

The eval engine is built separately; these stores let report/export tests
run without it. Accuracies are sampled per example, so summary rows, CIs
and worst-case rows are consistent with the examples/ parquet files.
Import from tests with sys.path insertion (tests/ is not a package).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from robustmix import schema
from robustmix.fileio import model_slug
from robustmix.results import ResultStore, RunInfo

LINF_EPS = [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.1, 0.2]
L2_EPS = [0.0, 0.25, 0.5, 1.0]
ATTACKS = ("fgsm", "pgd", "autoattack")
ATTACK_STRENGTH = {"fgsm": 0.75, "pgd": 0.95, "autoattack": 1.0}  # how close to the true curve


def _label(eps: float) -> str:
    k = eps * 255
    if 0 < eps < 1 and abs(k - round(k)) < 1e-6 and len(f"{eps:.4g}") > 5:
        return f"{round(k)}/255"
    return f"{eps:.4g}"


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def write_store(root, models, *, threat_models=None, attacks=ATTACKS, n=200,
                missing=(), flags=(), with_examples=True, bank_shape=(16, 7, 7),
                dataset="fashion-mnist", seed=0):
    """Write a result store at ``root``.

    models: list of dicts with name, variant, arch, robustness (decay scale of
    the accuracy curve; larger is more robust), clean (clean accuracy), and
    optional masked=True (FGSM beats PGD: gradient masking).
    missing: (model, attack, threat_model, eps) cells left out (eps may be
    None for "all eps", attack None for "all attacks").
    flags: (model, flag, detail) diagnostic rows.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    threat_models = threat_models or {"Linf": LINF_EPS, "L2": L2_EPS}
    rng = np.random.default_rng(seed)
    (root / "store.json").write_text(json.dumps(
        {"format": schema.STORE_FORMAT, "version": schema.STORE_VERSION}))

    def is_missing(model, attack, tm, eps):
        for m, a, t, e in missing:
            if m == model and a in (None, attack) and t in (None, tm) and (
                    e is None or abs(e - eps) < 1e-9):
                return True
        return False

    summary, model_rows, ex_frames = [], [], []
    for mi, m in enumerate(models):
        name = m["name"]
        clean_p = m.get("clean", 0.9)
        clean = rng.random(n) < clean_p
        # Per-example "true" robustness radius; each attack finds a fraction of it.
        radius = rng.exponential(m.get("robustness", 0.03), size=n)
        n_robust_clean = int(clean.sum())
        for tm, eps_list in threat_models.items():
            scale = 1.0 if tm == "Linf" else 8.0  # L2 balls are larger
            per_eps_correct = {}
            for eps in eps_list:
                per_attack = {}
                for attack in attacks:
                    strength = ATTACK_STRENGTH.get(attack, 0.9)
                    if m.get("masked") and attack == "pgd":
                        strength = 0.5
                    if m.get("masked") and attack == "fgsm":
                        strength = 0.8
                    correct = clean & (radius * scale > eps * strength) if eps > 0 else clean.copy()
                    if is_missing(name, attack, tm, eps):
                        continue
                    per_attack[attack] = correct
                per_eps_correct[eps] = per_attack
                if per_attack:
                    per_attack[schema.WORST_CASE] = np.logical_and.reduce(list(per_attack.values()))
                for attack, correct in per_attack.items():
                    k = int(correct.sum())
                    lo, hi = wilson(k, n)
                    summary.append(dict(
                        model=name, variant=m["variant"], arch=m["arch"], dataset=dataset,
                        train_seed=m.get("train_seed", 0), threat_model=tm, attack=attack,
                        eps=float(eps), eps_label=_label(eps), n=n, n_robust=k,
                        robust_acc=k / n, ci_low=lo, ci_high=hi,
                        clean_acc=n_robust_clean / n, seconds=float(rng.uniform(1, 30)),
                        fwd_bwd_passes=int(n * (1 if attack == "fgsm" else 100)),
                        eval_seed=1234, spec_hash="deadbeef", code_version="0.1.0+g1a2b3c4",
                        nested=attack == schema.WORST_CASE))
                    if with_examples and attack != schema.WORST_CASE:
                        ex_frames.append(pd.DataFrame(dict(
                            model=name, attack=attack, threat_model=tm, eps=float(eps),
                            index=np.arange(n), label=rng.integers(0, 10, n), correct=correct,
                            margin=rng.normal(1.0, 1.0, n).astype("float32"), eval_seed=1234,
                            attack_kind=attack, eps_label=_label(eps), clean_correct=clean,
                            seconds=1.0, passes=n)))
        params = 100_000 + 5_000 * mi
        model_rows.append(dict(
            model=name, variant=m["variant"], sigma=m.get("sigma", math.nan), rho=m.get("rho", math.nan),
            arch=m["arch"], dataset=dataset, train_seed=m.get("train_seed", 0),
            params=params, trainable_params=params - 1000 * (mi % 3),
            clean_acc=n_robust_clean / n, source="zoo"))
        if bank_shape:
            (root / "banks").mkdir(exist_ok=True)
            bank = _bank(rng, m["variant"], bank_shape)
            np.save(root / "banks" / f"{model_slug(name)}.npy", bank)

    df = pd.DataFrame(summary, columns=list(schema.SUMMARY_COLUMNS))
    df.to_parquet(root / "summary.parquet", index=False)
    df.to_csv(root / "summary.csv", index=False)
    pd.DataFrame(model_rows, columns=list(schema.MODEL_COLUMNS)).to_csv(root / "models.csv", index=False)
    pd.DataFrame(list(flags), columns=list(schema.DIAGNOSTIC_COLUMNS)).to_csv(
        root / "diagnostics.csv", index=False)
    if ex_frames:
        (root / "examples").mkdir(exist_ok=True)
        for i, frame in enumerate(ex_frames):  # through the store's own writer: units verify
            ResultStore(root).write_unit(f"unit-{i:04d}", frame.assign(unit=f"unit-{i:04d}"))
    (root / "run.json").write_text(json.dumps(dataclasses.asdict(RunInfo(
        spec={"dataset": dataset, "attacks": list(attacks),
              "threat_models": {k: list(v) for k, v in threat_models.items()}, "n": n},
        spec_hash="deadbeef", eval_seed=1234, eps_grid={k: list(v) for k, v in threat_models.items()},
        n_examples=n, nested=True, code_version="0.1.0+g1a2b3c4",
        packages={"torch": "2.14.1", "python": "3.11"}, device="cpu", world_size=1,
        seconds=2520.0, wall_seconds=2520.0, finished="2024-05-01T10:42:00+00:00")), indent=2))
    return root


def _bank(rng, variant, shape):
    c, k, _ = shape
    if variant == "smooth":  # Gaussian-like low-pass filters
        x = np.arange(k) - k // 2
        g = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * rng.uniform(0.8, 2.0, (c, 1, 1)) ** 2))
        return g.astype(np.float32)
    return rng.normal(0, 1, shape).astype(np.float32)


CONVMIXER = [
    dict(name="convmixer-full", variant="full", arch="ConvMixer-256/8", robustness=0.030, clean=0.91),
    dict(name="convmixer-chans", variant="chans", arch="ConvMixer-256/8", robustness=0.024, clean=0.90),
    dict(name="convmixer-space", variant="space", arch="ConvMixer-256/8", robustness=0.020, clean=0.89),
    dict(name="convmixer-smooth", variant="smooth", arch="ConvMixer-256/8", robustness=0.035,
         clean=0.88, masked=True),
]


def realistic_store(root):
    """4 ConvMixer variants, Linf 0..0.2 and L2, fgsm/pgd/autoattack + worst-case, a flag."""
    return write_store(root, CONVMIXER, flags=[
        ("convmixer-smooth", "fgsm-beats-pgd", "FGSM 41.0% < PGD 47.5% at eps=4/255")])


def many_store(root, n_models=20):
    """20 models x 3 attacks x 10 Linf eps, two architectures, 5 variants x 2 seeds each."""
    variants = ["full", "chans", "space", "smooth", "lowrank"]
    models = [dict(name=f"{arch.split('-')[0].lower()}-{variants[i % 5]}-s{i // 5}",
                   variant=variants[i % 5], arch=arch, train_seed=i // 5,
                   robustness=0.015 + 0.002 * i, clean=0.85 + 0.005 * (i % 5))
              for j, arch in enumerate(["ConvMixer-256/8", "ResMixer-128/4"])
              for i in range(j * n_models // 2, (j + 1) * n_models // 2)]
    eps = [i / 255 for i in range(0, 10)]
    return write_store(root, models, threat_models={"Linf": eps}, n=100,
                       with_examples=False, flags=[(models[3]["name"], "non-monotonic", "")])


def partial_store(root):
    """Realistic store where convmixer-space lacks autoattack above 4/255 and all of L2."""
    return write_store(root, CONVMIXER, missing=[
        *[("convmixer-space", "autoattack", "Linf", e) for e in LINF_EPS if e > 4 / 255 + 1e-9],
        ("convmixer-space", None, "L2", None)])


INJECTION = "<script>alert(1)</script>"


def injection_store(root):
    """A model and a variant whose names are HTML."""
    models = [dict(CONVMIXER[0]),
              dict(name=INJECTION, variant='"><img src=x onerror=alert(2)>', arch="Conv&Mixer",
                   robustness=0.02, clean=0.8)]
    return write_store(root, models, flags=[(INJECTION, "train-mode", "<b>bold</b>")])
