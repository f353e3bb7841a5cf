"""Attack engine: FGSM, PGD, AutoAttack, Square, transfer and any torchattacks attack.

Every attack is built by :func:`make_attack` and run as
``attack.run(model, x, y, eps, seed) -> AttackResult``; :func:`sweep` runs one
attack over an eps grid, nested by default. What a run guarantees is stated in
``base.py``; each file below holds one family:

* ``base``: the Attack class, AttackResult, validation and the run's guarantees;
* ``registry``: names -> attack classes (``register_attack``, ``make_attack``);
* ``gradient``: our PGD and FGSM; ``reference``: pyautoattack's AutoAttack and
  Square; ``transfer``; ``torchattacks_adapter``: any torchattacks class;
* ``l1``: the L1 ball's projection, sparse step and linear maximiser (used by the above);
* ``sweep``: one attack over an eps grid;
* ``minnorm``: minimum-norm attacks (FAB, FMN, DDN), one search per unit for every eps.
"""
# Importing the attack modules registers them (in this order: the order list_attacks shows).
from . import gradient, reference, transfer  # noqa: F401
from . import minnorm  # noqa: F401  (fab, fmn, ddn: after the fixed-eps attacks)
from .base import PRECISIONS, Attack, AttackResult, check_precision
from .reference import AutoAttack
from .registry import attack_names, list_attacks, make_attack, register_attack
from .sweep import sweep

__all__ = ["AttackResult", "Attack", "AutoAttack", "list_attacks", "make_attack", "register_attack", "sweep",
           "check_precision", "attack_names", "PRECISIONS"]
