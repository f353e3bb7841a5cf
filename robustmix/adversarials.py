"""Re-checking and handing on saved adversarial examples (advfile.py's files of a result store).

``verify_store`` reloads every saved adversarial input, checks it lies in its
eps-ball and in [0, 1], re-scores the model on it and compares the verdict with
the per-example ``correct`` flag the store holds; every disagreement is a
mismatch. A model's decision only changes where its input changed, so an
example is re-scored once clean and then only at the eps where its input is
new (a randomised model is re-decided by the same seeded majority vote as in
the eval). ``export_adversarials`` writes one model's adversarial inputs at one
eps as a single file in AutoAttack's convention (``adv_complete``), for an
outside evaluation.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import save_file, safe_open

from . import data as datasets
from . import memdata
from .advfile import FOLDER, adversarials_path, read_adversarials, saved_units
from .attacks.base import attack_mode, flat_norm, score
from .config import from_dict
from .device import resolve_device
from .diagnostics import vote_results
from .eps import format_eps, parse_eps, same_eps
from .errors import ConfigError, DataError, StoreError
from .evaluate import eval_data_id
from .fileio import atomic_path
from .results import EVAL_UNIT_COLUMNS, ResultStore, load_results
from .schema import WORST_CASE
from .spec import EvalSpec
from .targets import resolve_targets
from .units import example_indices, plan_units, unit_seed

# Float slack of the eps-ball check: projection and clipping round at the last bits of float32.
BALL_SLACK = 1e-5
SHOWN_MISMATCHES = 20


@dataclass
class Context:
    """What re-scoring a store needs: its spec, models, data set and example subset."""
    root: Path
    spec: EvalSpec
    store: ResultStore
    targets: dict
    ds: object
    indices: torch.Tensor


def load_context(results_dir, store=None, models: dict | None = None, data=None) -> Context:
    results = load_results(results_dir)  # the store and every unit verify first
    spec_fields = dict(results.run.spec)
    if store is not None:
        spec_fields["store"] = str(store)
    spec = from_dict(EvalSpec, spec_fields)
    python = sorted(set(results.models.loc[results.models["source"] == "python", "model"])
                    - set(models or {})) if "source" in results.models else []
    if python:
        raise ConfigError(f"model '{python[0]}' was handed in from Python; verify from Python: "
                          f"robustmix.verify(RESULTS, models={{'{python[0]}': module}}, data=...)")
    targets = {t.name: t for t in resolve_targets(spec, models)}
    if data is None:
        if "@" in spec.data.name:
            raise ConfigError(f"{results.root} was evaluated on data handed in from Python ({spec.data.name}); "
                              "pass the same data: robustmix.verify(RESULTS, models=..., data=(x, y))")
        ds = datasets.load_dataset(spec.data.name, spec.data.split, root=spec.data.root, download=spec.data.download)
        indices = example_indices(spec, len(ds))
    else:
        ds = memdata.adapt(data)
        indices = example_indices(spec, len(ds))
        x, y = memdata.draw(ds, indices)
        given = memdata.data_name(spec.data.name.rsplit("@", 1)[0], memdata.identity(ds, x, y))
        if given != spec.data.name:
            raise DataError(f"data: not the data this store was evaluated on (identity {given.rsplit('@', 1)[-1]}, "
                            f"evaluated {spec.data.name.rsplit('@', 1)[-1]}); pass the same examples")
    return Context(results.root, spec, ResultStore(results.root), targets, ds, indices)


@dataclass
class Verification:
    results: Path
    files: int = 0
    bytes: int = 0
    stored_examples: int = 0     # adversarial inputs held in the files
    inputs_rescored: int = 0     # forward passes spent re-scoring
    decisions: int = 0           # per-example flags compared
    mismatches: int = 0
    messages: list[str] = field(default_factory=list)  # the first SHOWN_MISMATCHES, one line each
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.mismatches == 0

    def fail(self, message: str) -> None:
        self.mismatches += 1
        if len(self.messages) < SHOWN_MISMATCHES:
            self.messages.append(message)

    def line(self) -> str:
        head = (f"{self.files} adversarial files ({self.bytes / 2**20:.1f} MiB, {self.stored_examples} stored "
                f"inputs), {self.decisions} decisions checked, {self.inputs_rescored} inputs re-scored in "
                f"{self.seconds:.1f}s")
        if self.ok:
            return f"verified: {head}: every stored result reproduces"
        return f"verify FAILED: {self.mismatches} mismatch(es) in {head}; first: {self.messages[0]}"


def _ball(x_adv, x, eps, tm) -> torch.Tensor:
    """Rows outside the eps-ball or [0, 1]."""
    far = flat_norm(x_adv - x, tm) > eps * (1 + BALL_SLACK) + 1e-6
    return far | (x_adv < 0).flatten(1).any(1) | (x_adv > 1).flatten(1).any(1)


def verify_store(results_dir, store=None, *, models: dict | None = None, data=None, device=None,
                 log=None) -> Verification:
    """Re-score every saved adversarial of ``results_dir`` and compare with the stored ``correct`` flags."""
    t0 = time.perf_counter()
    ctx = load_context(results_dir, store, models, data)
    keys = saved_units(ctx.root)
    if not keys:
        raise StoreError(f"{ctx.root} has no saved adversarial examples ({FOLDER}/); set save_adversarials = true "
                         "in the spec and re-run `robustmix eval` into it")
    dev = resolve_device(device or "auto")
    out = Verification(ctx.root)
    position = {int(i): p for p, i in enumerate(ctx.indices.tolist())}
    by_model: dict[str, list] = {}
    for key in keys:
        path = adversarials_path(ctx.root, key)
        out.files += 1
        out.bytes += path.stat().st_size
        try:
            saved = read_adversarials(path)
        except StoreError as exc:
            out.fail(str(exc))
            continue
        by_model.setdefault(saved.model, []).append(saved)
    for name, files in by_model.items():
        target = ctx.targets.get(name)
        if target is None:
            out.fail(f"{files[0].path}: model '{name}' is not one of the store's models")
            continue
        model = target.load().to(dev)
        for saved in files:
            if saved.fingerprint != target.fingerprint:
                out.fail(f"model '{name}': its weights differ from those evaluated (fingerprint "
                         f"{target.fingerprint[:12]}, evaluated {saved.fingerprint[:12]})")
            _verify_file(ctx, saved, model, dev, position, out)
            if log is not None:
                log(f"{name} {saved.attack} {saved.threat_model}: {out.mismatches} mismatch(es) so far")
        del model
    # A unit of the last eval whose adversarials were saved and have since gone missing.
    if ctx.spec.save_adversarials:
        n = len(ctx.indices)
        for unit in plan_units(ctx.spec, list(ctx.targets.values()), eval_data_id(ctx.spec, n), n):
            if ctx.store.unit_path(unit.key).is_file() and not adversarials_path(ctx.root, unit.key).is_file():
                out.fail(f"{unit.target.name} {unit.attack.label} {unit.threat_model} [{unit.start}:{unit.stop}]: "
                         f"its adversarials file {adversarials_path(ctx.root, unit.key).name} is missing")
    out.seconds = time.perf_counter() - t0
    return out


def _verify_file(ctx: Context, saved, model, dev, position: dict, out: Verification) -> None:
    where = f"{saved.model} {saved.attack} {saved.threat_model}"
    try:
        rows = ctx.store.read_unit(saved.unit, EVAL_UNIT_COLUMNS)
    except StoreError as exc:
        out.fail(f"{where}: {exc}")
        return
    out.stored_examples += saved.stored_examples
    x, y = datasets.batch(ctx.ds, saved.index)
    if not torch.equal(y, saved.label):
        out.fail(f"{where}: the data's labels differ from those saved; verify with the data that was evaluated")
        return
    x_advs = saved.expand(x)
    flags = {}
    for e in saved.eps:
        at = rows[same_eps(rows["eps"], e)].set_index("index")
        if set(at.index) != set(saved.index.tolist()):
            out.fail(f"{where} eps={format_eps(e)}: the unit's rows and its adversarials cover different examples")
            return
        flags[e] = torch.tensor(at.loc[saved.index.tolist(), "correct"].astype(bool).to_numpy())
    x, y = x.to(dev), y.to(dev)
    votes = int(rows["vote_passes"].iloc[0]) if "vote_passes" in rows and rows["vote_passes"].notna().any() else 0
    if votes:
        decided = _revote(ctx, saved, model, x, y, x_advs, votes, int(rows["attack_batch"].iloc[0]), position)
        out.inputs_rescored += votes * len(x) * (len(saved.eps) + (saved.eps[0] != 0))
    else:
        decided = []
        with attack_mode(model):
            cur = score(model, x, y)[0].cpu()
            out.inputs_rescored += len(x)
            at_pos = {int(v): p for p, v in enumerate(saved.index.tolist())}
            for (idx, _), x_adv in zip(saved.changes, x_advs):
                if len(idx):
                    pos = torch.tensor([at_pos[int(v)] for v in idx.tolist()], dtype=torch.int64)
                    cur = cur.clone()
                    cur[pos] = score(model, x_adv[pos].to(dev), y[pos.to(dev)])[0].cpu()
                    out.inputs_rescored += len(pos)
                decided.append(cur)
    for e, x_adv, now in zip(saved.eps, x_advs, decided):
        outside = _ball(x_adv, x.cpu(), e, saved.threat_model)
        for p in outside.nonzero().flatten().tolist():
            out.fail(f"{where} eps={format_eps(e)}: example {int(saved.index[p])}'s adversarial lies outside the "
                     f"eps-ball or [0, 1]")
        out.decisions += len(now)
        for p in (now != flags[e]).nonzero().flatten().tolist():
            out.fail(f"{where} eps={format_eps(e)}: example {int(saved.index[p])} is stored "
                     f"{'robust' if flags[e][p] else 'broken'} but re-scores "
                     f"{'robust' if now[p] else 'broken'} (unit {saved.unit})")


def _revote(ctx: Context, saved, model, x, y, x_advs, votes: int, batch: int, position: dict) -> list[torch.Tensor]:
    """A randomised model's decisions, re-drawn exactly as the eval drew them (same seed, same batches)."""
    start = position[int(saved.index[0])]
    seed = unit_seed(ctx.spec.seed, saved.model, saved.attack, saved.threat_model, start)
    res = {e: SimpleNamespace(x_adv=xa.to(x.device), correct=None) for e, xa in zip(saved.eps, x_advs)}
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(unit_seed(seed, "votes"))
        vote_results(model, res, x, y, saved.eps, votes, batch, ctx.spec.nested)
    return [res[e].correct.cpu() for e in saved.eps]


# --- export -------------------------------------------------------------------

EXPORT_SUFFIXES = (".pt", ".pth", ".safetensors")


@dataclass
class Exported:
    path: Path
    model: str
    attack: str
    threat_model: str
    eps: float
    n: int
    robust: int
    attacks: list[str]


def export_adversarials(results_dir, out, *, model: str, eps, threat_model: str | None = None,
                        attack: str = WORST_CASE, store=None, models: dict | None = None, data=None) -> Exported:
    """One model's adversarial inputs at one eps, per example the worst case over the saved attacks
    (or one attack's), as ``adv_complete`` (N, C, H, W) with ``y``, ``index`` and ``robust``."""
    out = Path(out)
    if out.suffix not in EXPORT_SUFFIXES:
        raise ConfigError(f"--adversarials {out}: use a .pt/.pth (torch.save) or .safetensors file name")
    eps = parse_eps(eps) if isinstance(eps, str) else float(eps)
    ctx = load_context(results_dir, store, models, data)
    metas = []
    for key in saved_units(ctx.root):
        with safe_open(str(adversarials_path(ctx.root, key)), framework="pt") as fh:
            meta = fh.metadata() or {}
        metas.append((key, meta))
    mine = [(k, m) for k, m in metas if m.get("model") == model]
    if not mine:
        have = sorted({m.get("model") for _, m in metas})
        raise ConfigError(f"--model {model}: no saved adversarials for it in {ctx.root}; saved: "
                          f"{', '.join(have) or 'none (set save_adversarials = true and re-run eval)'}")
    saved = [read_adversarials(adversarials_path(ctx.root, k)) for k, _ in mine]
    saved = [s for s in saved if any(same_eps(eps, e) for e in s.eps)
             and (threat_model is None or s.threat_model == threat_model)
             and (attack == WORST_CASE or s.attack == attack)]
    tms = sorted({s.threat_model for s in saved})
    if not saved:
        where = (f" {threat_model}" if threat_model else "") + ("" if attack == WORST_CASE else f" by {attack}")
        raise ConfigError(f"no saved adversarials of {model} at eps {format_eps(eps)}{where}; "
                          "check --eps, --threat-model and --attack against the spec")
    if len(tms) > 1:
        raise ConfigError(f"eps {format_eps(eps)} is in threat models {', '.join(tms)}; pick one with --threat-model")
    per_index: dict[int, dict[str, tuple[torch.Tensor, bool]]] = {}
    for s in saved:
        i = next(k for k, e in enumerate(s.eps) if same_eps(eps, e))
        x, _ = datasets.batch(ctx.ds, s.index)
        rows = ctx.store.read_unit(s.unit, EVAL_UNIT_COLUMNS)
        at = rows[same_eps(rows["eps"], eps)].set_index("index")["correct"]
        x_adv = s.expand(x)[i]
        for p, idx in enumerate(s.index.tolist()):
            per_index.setdefault(idx, {})[s.attack] = (x_adv[p], bool(at.loc[idx]))
    attacks = sorted({s.attack for s in saved})
    # As the summary's worst case: only examples every attack evaluated (an attack's n may be smaller).
    order = [i for i in ctx.indices.tolist() if i in per_index and len(per_index[i]) == len(attacks)]
    chosen = []
    for i in order:
        found = per_index[i]
        broken = [a for a in attacks if not found[a][1]]
        chosen.append(found[broken[0] if broken else attacks[0]] + (i,))
    x_adv = torch.stack([c[0] for c in chosen])
    robust = torch.tensor([c[1] for c in chosen], dtype=torch.bool)
    index = torch.tensor([c[2] for c in chosen], dtype=torch.int64)
    y = datasets.batch(ctx.ds, index)[1]
    tensors = {"adv_complete": x_adv.contiguous(), "y": y, "index": index, "robust": robust}
    meta = {"model": model, "attack": attack, "attacks": "+".join(attacks), "threat_model": tms[0],
            "eps": repr(float(eps)), "eps_label": format_eps(eps), "n": str(len(index)),
            "robust": str(int(robust.sum())), "results": str(ctx.root)}
    with atomic_path(out) as tmp:
        if out.suffix == ".safetensors":
            save_file(tensors, str(tmp), metadata=meta)
        else:
            torch.save({**tensors, "meta": meta}, tmp)
    return Exported(out, model, attack, tms[0], float(eps), len(index), int(robust.sum()), attacks)


__all__ = ["Exported", "Verification", "export_adversarials", "load_context", "verify_store"]
