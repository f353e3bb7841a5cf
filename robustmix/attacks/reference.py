"""The reference implementations: AutoAttack and its Square attack, from pyautoattack."""
from __future__ import annotations

import hashlib
import logging
import sys
from contextlib import contextmanager

import torch
from pyautoattack import AutoAttack as _AA
from pyautoattack.square import SquareAttack
from torch import Tensor

from ..errors import ConfigError
from .base import Attack, CountedModel, check_choice, check_positive, on_clean_correct
from .registry import register_attack

AA_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
AA_VERSIONS = ("standard", "plus", "rand", "custom")


class _FabSearchMemo:
    """Memo of FAB's search from the clean point, shared by the eps of one nested sweep.

    FAB is a minimum-norm attack: its first run per target (no random start; the only
    run of FAB-T in standard AutoAttack) is a deterministic function of the clean image,
    its label and the target class, and never reads eps -- eps only decides afterwards
    whether the point found is close enough. An example still robust at eps_i reaches
    FAB again at eps_{i+1}, where the same search would be repeated from scratch; here its
    result is looked up instead, per example. Runs with a random start (restarts 2..n of
    'plus') depend on eps and are never memoised. Keys are the row's bytes plus label and
    target. The search treats each example on its own, so a looked-up row is the row
    pyautoattack's own call returns for that example, up to the last-bit rounding that a
    batched kernel can give one example with other batch-mates (pyautoattack's batch_size
    has the same effect).
    """

    def __init__(self):
        self._rows: dict[bytes, Tensor | None] = {}  # None: the search found nothing (row = x)

    @staticmethod
    def _keys(x: Tensor, y: Tensor, target) -> list[bytes]:
        xs, ys = x.detach().float().cpu().contiguous(), y.detach().long().cpu()
        return [hashlib.blake2b(xs[i].numpy().tobytes() + f"|{int(ys[i])}|{target}".encode(),
                                digest_size=20).digest() for i in range(len(xs))]

    def wrap(self, fab) -> None:
        search = fab.attack_single_run

        def memo_search(x, y=None, use_rand_start=False, is_targeted=False):
            if use_rand_start or y is None:
                return search(x, y, use_rand_start, is_targeted)
            keys = self._keys(x, y, fab.target_class if is_targeted else "untargeted")
            miss = [i for i, k in enumerate(keys) if k not in self._rows]
            if miss:
                at = torch.tensor(miss, device=x.device)
                found = search(x[at], y[at], False, is_targeted)
                for j, i in enumerate(miss):
                    same = torch.equal(found[j], x[i].float())
                    self._rows[keys[i]] = None if same else found[j].detach().cpu()
            out = x.detach().float().clone()
            for i, k in enumerate(keys):
                if self._rows[k] is not None:
                    out[i] = self._rows[k].to(out.device)
            return out

        fab.attack_single_run = memo_search


@register_attack("autoattack")
class AutoAttack(Attack):
    spec = {"version": (str, "standard"), "attacks": (list, None), "batch_size": (int, 250),
            "n_target_classes": (int, None), "n_queries": (int, None), "verbose": (bool, False)}

    def _validate(self):
        p = self.params
        check_choice(self.name, "version", p["version"], AA_VERSIONS)
        if (p["version"] == "custom") != (p["attacks"] is not None):
            raise ConfigError("autoattack takes attacks=[...] exactly when version='custom'; "
                              f"choose from {', '.join(AA_ATTACKS)}")
        for a in p["attacks"] or ():
            check_choice(self.name, "attacks", a, AA_ATTACKS)
        for key in ("batch_size", "n_target_classes", "n_queries"):
            check_positive(self.name, key, p[key])
        if self.threat_model == "L1" and p["version"] == "plus":
            raise ConfigError("autoattack version='plus' is defined for Linf and L2 only; under L1 use "
                              "version='standard' (APGD-CE and APGD-T with eps schedules, FAB-T, Square)")
        self._fab_memo = None

    @contextmanager
    def across_eps(self):
        self._fab_memo = _FabSearchMemo()
        try:
            yield
        finally:
            self._fab_memo = None

    def _perturb(self, model, x, y, eps, seed):
        p, counted = self.params, CountedModel(model)
        aa = _AA(counted, attacks=p["attacks"], device=x.device, eps=eps, norm=self.threat_model,
                 seed=seed, version=p["version"])
        aa.verbose = p["verbose"]
        if p["n_target_classes"] is not None:
            aa.apgd_targeted.n_target_classes = aa.fab.n_target_classes = p["n_target_classes"]
        if p["n_queries"] is not None:
            aa.square.n_queries = p["n_queries"]
        if self._fab_memo is not None:
            self._fab_memo.wrap(aa.fab)
        logger = logging.getLogger("auto-attack")
        was_disabled, tracer = logger.disabled, sys.gettrace()
        logger.disabled = not p["verbose"]
        try:
            x_adv = on_clean_correct(model, x, y, lambda xs, ys: aa.run_standard_evaluation(
                xs, ys, batch_size=p["batch_size"])[0])
        finally:
            logger.disabled = was_disabled
            sys.settrace(tracer)  # pyautoattack's dynamic-defence check clears any tracer (coverage, debugger)
        return x_adv, counted.n


@register_attack("square")
class Square(Attack):
    """pyautoattack's SquareAttack: the reference code that AutoAttack itself runs."""

    spec = {"n_queries": (int, 1000), "p_init": (float, 0.8), "n_restarts": (int, 1),
            "loss": (str, "margin"), "resc_schedule": (bool, True)}

    def _validate(self):
        p = self.params
        for key in ("n_queries", "p_init", "n_restarts"):
            check_positive(self.name, key, p[key])
        check_choice(self.name, "loss", p["loss"], ("margin", "ce"))

    def _perturb(self, model, x, y, eps, seed):
        p, counted = self.params, CountedModel(model)
        # resc_schedule=True (pyautoattack's standalone default) rescales the p-schedule, tuned
        # for 10000 queries, to n_queries; AutoAttack switches it off at 5000 queries.
        sq = SquareAttack(counted, norm=self.threat_model, n_queries=p["n_queries"], eps=eps,
                          p_init=p["p_init"], n_restarts=p["n_restarts"], seed=seed, verbose=False,
                          loss=p["loss"], resc_schedule=p["resc_schedule"], device=x.device)
        with torch.no_grad():
            x_adv = on_clean_correct(model, x, y, sq.perturb)
        return x_adv, counted.n
