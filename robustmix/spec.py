"""Sweep specs: TOML files in evals/, parsed strictly into dataclasses.

A spec names models (zoo names or glob patterns, or external models), the
data subset, the eps grid per threat model and the attacks with their
parameters. Everything is validated here, at the boundary: eps become
floats, attacks are built (so unknown attack arguments fail before any
work starts), unknown keys are errors naming the key.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch.nn as nn

from .attacks import check_precision, make_attack
from .config import check_seed, from_dict, load_toml
from .corruptions import CorruptionSpec
from .eps import check_eps, parse_eps, same_eps
from .errors import ConfigError
from .provenance import stable_hash
from .schema import CORRUPTIONS, THREAT_MODELS

# Keys of an [[attacks]] table that steer the driver; the rest are attack parameters.
DRIVER_KEYS = ("name", "label", "n", "eps", "threat_models", "models")


def check_n(n, where: str) -> int:
    """A number of examples: an int >= 1 (whether it fits the split is checked once the data is loaded)."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError(f"{where}: must be > 0, got {n!r}; give the number of examples to evaluate "
                          f"(data.n in the spec or --n), e.g. 1000")
    return n


DEFAULT_VOTES = 10  # forward passes per robust/not decision on a randomised model


@dataclass
class DataSpec:
    name: str = "fashion-mnist"
    split: str = "test"
    n: int = 1000                   # a seeded subset of the split; recorded by index
    batch_size: int = 500           # examples per work unit (and the attack batch, unless memory runs out)
    root: str | None = None
    download: bool = False

    def validate(self, where):
        check_n(self.n, f"{where}.n")
        if self.batch_size <= 0:
            raise ConfigError(f"{where}.batch_size: must be > 0, got {self.batch_size}")


@dataclass
class ThreatSpec:
    eps: list[float | int | str] = field(default_factory=list)


@dataclass
class ExternalModel:
    """A model not trained by robustmix.

    factory: "package.module:function" returning an nn.Module (kwargs passed),
    or robustbench: a RobustBench model-zoo name whose architecture is built
    offline and whose weights come from ``weights`` (a local file) or are
    downloaded where there is internet.
    """
    name: str
    dataset: str
    factory: str | None = None
    kwargs: dict = field(default_factory=dict)
    robustbench: str | None = None
    threat_model: str = "Linf"      # robustbench: which zoo the name is from
    weights: str | None = None
    # Normalisation the model expects; robustmix wraps it so attacks act on [0, 1].
    mean: list[float] | None = None
    std: list[float] | None = None

    def validate(self, where):
        if (self.factory is None) == (self.robustbench is None):
            raise ConfigError(f"{where}: give exactly one of factory = \"pkg.module:function\" or "
                              f"robustbench = \"ModelName\"")
        if self.factory is not None and ":" not in self.factory:
            raise ConfigError(f"{where}.factory: expected \"package.module:function\", got {self.factory!r}")


@dataclass
class AttackSpec:
    name: str
    label: str
    params: dict
    n: int | None
    eps: list[float] | None
    threat_models: list[str] | None
    # Glob patterns over the spec's model names: the attack runs on the models that
    # match one (None: on every model). Lets a study spend expensive attacks (AutoAttack,
    # Square) on the few models where they check for gradient masking.
    models: list[str] | None = None


@dataclass
class EvalSpec:
    name: str
    models: list[str] = field(default_factory=list)
    external: list[ExternalModel] = field(default_factory=list)
    store: str | None = None         # zoo store; default zoo/store or $ROBUSTMIX_ZOO
    results: str | None = None       # default results/<name>
    data: DataSpec = field(default_factory=DataSpec)
    threat: dict = field(default_factory=dict)     # {"Linf": {"eps": [...]}, "L2": {...}}
    attacks: list[dict] = field(default_factory=list)
    seed: int = 0
    nested: bool = True              # nested eps sweeps (see attacks.sweep)
    precision: str = "fp32"          # of the model inside attacks: "fp32" | "bf16" (see attacks/base.py)
    # A model flagged randomized (two forward passes differ) is judged robust at an input when a
    # majority of this many forward passes classify it correctly: one pass is a coin toss.
    randomized_votes: int = DEFAULT_VOTES
    # Keep every unit's adversarial examples (robustmix/advfile.py) so `robustmix verify` can
    # re-score them and `robustmix export --adversarials` can hand them on. Not in the spec hash:
    # it changes what is kept, not what is computed.
    save_adversarials: bool = False
    description: str = ""

    def validate(self, where):
        check_precision(self.precision)
        check_seed(self.seed, "seed")
        if isinstance(self.randomized_votes, bool) or not isinstance(self.randomized_votes, int) \
                or self.randomized_votes < 1:
            raise ConfigError(f"randomized_votes: must be a positive integer (forward passes per decision on a "
                              f"randomised model), got {self.randomized_votes!r}; e.g. randomized_votes = 10")
        if not self.models and not self.external:
            raise ConfigError("models: list at least one zoo name/pattern or an [[external]] model")
        if not self.name or "/" in self.name:
            raise ConfigError(f"name: must be a plain name without '/', got {self.name!r}")
        if not self.threat:
            raise ConfigError('threat: add at least one threat model, e.g. [threat.Linf] eps = [0, "8/255"]')
        self.eps_grid = {}
        self.corruptions = None  # [threat.corruptions]: common corruptions, no attacks (corruption_eval.py)
        for tm, table in self.threat.items():
            if tm == CORRUPTIONS:
                if not isinstance(table, dict):
                    raise ConfigError(f"threat.{CORRUPTIONS}: must be a table, e.g. [threat.{CORRUPTIONS}] "
                                      f"severities = [1, 3, 5]")
                self.corruptions = from_dict(CorruptionSpec, table, f"threat.{CORRUPTIONS}")
                continue
            if tm not in THREAT_MODELS:
                raise ConfigError(f"threat.{tm}: unknown threat model; choose from "
                                  f"{', '.join(THREAT_MODELS + (CORRUPTIONS,))}")
            spec = from_dict(ThreatSpec, table if isinstance(table, dict) else {"eps": table}, f"threat.{tm}")
            if not spec.eps:
                raise ConfigError(f"threat.{tm}.eps: list at least one eps (0 gives clean accuracy)")
            grid = [check_eps(parse_eps(e), tm, f"threat.{tm}.eps") for e in spec.eps]
            self.eps_grid[tm] = sorted(set(grid))
        if not self.attacks and self.eps_grid:
            raise ConfigError('attacks: add at least one [[attacks]] table, e.g. name = "pgd"')
        self.attack_list = [self._attack(i, a) for i, a in enumerate(self.attacks)]
        labels = [a.label for a in self.attack_list]
        dup = {lbl for lbl in labels if labels.count(lbl) > 1}
        if dup:
            raise ConfigError(f"attacks: two attacks share the label '{sorted(dup)[0]}'; add label = \"...\" to one")
        names = [e.name for e in self.external]
        if len(set(names)) != len(names):
            raise ConfigError("external: two external models share a name; names must be unique")

    def _attack(self, i: int, table: dict) -> AttackSpec:
        where = f"attacks[{i}]"
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            raise ConfigError(f"{where}: needs name = \"fgsm\" | \"pgd\" | \"autoattack\" | ...")
        params = {k: v for k, v in table.items() if k not in DRIVER_KEYS}
        n = table.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
            raise ConfigError(f"{where}.n: must be a positive integer, got {n!r}")
        tms = table.get("threat_models")
        if tms is not None:
            if not isinstance(tms, list) or any(t not in self.eps_grid for t in tms):
                raise ConfigError(f"{where}.threat_models: must list threat models of this spec "
                                  f"({', '.join(self.eps_grid)}), got {tms!r}")
        eps = table.get("eps")
        if eps is not None:
            if not isinstance(eps, list) or not eps:
                raise ConfigError(f"{where}.eps: must be a non-empty list, got {eps!r}")
            eps = sorted({parse_eps(e) for e in eps})
        models = table.get("models")
        if models is not None and (not isinstance(models, list) or not models
                                   or not all(isinstance(m, str) and m for m in models)):
            raise ConfigError(f"{where}.models: must be a non-empty list of model names or glob patterns, "
                              f"e.g. [\"fashion-mnist-core/*-s0\"], got {models!r}")
        label = table.get("label", table["name"])
        if not isinstance(label, str) or not label or "/" in label:
            raise ConfigError(f"{where}.label: must be a non-empty name without '/', got {label!r}")
        spec = AttackSpec(table["name"], label, params, n, eps, tms, models)
        for tm in self.attack_threats(spec):
            # Builds and validates now so a typo fails before hours of work.
            make_attack(spec.name, self._buildable(params), tm)
            if eps is not None:
                for e in eps:
                    check_eps(e, tm, f"{where}.eps")
                    if not any(same_eps(e, g) for g in self.eps_grid[tm]):
                        raise ConfigError(f"{where}.eps: {e:g} is not in threat.{tm}.eps; "
                                          f"an attack's eps must be a subset of the grid")
        return spec

    @staticmethod
    def _buildable(params: dict) -> dict:
        # A transfer `source` names a model the driver loads at run time; a
        # stand-in module lets the attack's own parameter checks run now.
        return {**params, "source_model": nn.Identity()} if "source" in params else params

    def attack_threats(self, attack: AttackSpec) -> list[str]:
        return [tm for tm in self.eps_grid if attack.threat_models is None or tm in attack.threat_models]

    def attack_eps(self, attack: AttackSpec, threat_model: str) -> list[float]:
        grid = self.eps_grid[threat_model]
        if attack.eps is None:
            return grid
        return [g for g in grid if any(same_eps(g, e) for e in attack.eps)]

    def spec_hash(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k not in ("description", "save_adversarials")}
        if fields["precision"] == "fp32":  # added later: at its default, a spec keeps the hash it had
            del fields["precision"]
        if fields["randomized_votes"] == DEFAULT_VOTES:  # likewise
            del fields["randomized_votes"]
        return stable_hash(fields)[:16]


def load_spec(path: str | Path, overrides: dict | None = None) -> EvalSpec:
    data = load_toml(path)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    data.setdefault("name", Path(path).stem)
    return from_dict(EvalSpec, data)
