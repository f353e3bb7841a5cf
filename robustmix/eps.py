"""Epsilon values: parsed once at the boundary, stored as floats.

Specs and CLI flags may write eps as 0.0314, "0.0314" or "8/255"; everything
downstream sees a float. ``format_eps`` gives the display form back,
``check_eps`` is the one validity rule and ``same_eps`` the one tolerance.
"""
from __future__ import annotations

import math
import re
from fractions import Fraction

from .errors import ConfigError

# Two eps are the same when they differ by at most this (relative above 1): CSV round
# trips differ in the last bits, and 1e-6 is far below the smallest step anyone
# sweeps (1/255 ~ 0.004).
EPS_TOL = 1e-6

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def parse_eps(value) -> float:
    """eps as a float from 0.0314, "0.0314", "8/255", " 8 / 255 " or "2e-2"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        eps = float(value)
    else:
        text = str(value).strip()
        m = re.fullmatch(rf"({_NUM})\s*(?:/\s*({_NUM}))?", text)
        if not m:
            raise ConfigError(f"cannot read eps {text!r}; write a number (0.0314) or a fraction (8/255)")
        eps = float(m.group(1))
        if m.group(2) is not None:
            den = float(m.group(2))
            if den == 0:
                raise ConfigError(f"eps {text!r} divides by zero; write e.g. 8/255")
            eps /= den
    return check_eps(eps, where=f"eps {value!r}")


def format_eps(eps: float) -> str:
    """Display form: "8/255" when eps*255 is an integer and the decimal would be long, else 4 digits.

    0.2 == 51/255 stays "0.2": a fraction only helps when the decimal is
    not short (8/255 = 0.03137...).
    """
    eps = float(eps)
    short = f"{eps:.4g}"
    k = eps * 255
    if 0 < eps < 1 and abs(k - round(k)) < 1e-6 and Fraction(short) != Fraction(round(k), 255):
        return f"{round(k)}/255"
    return short


def check_eps(eps: float, threat_model: str | None = None, where: str = "eps") -> float:
    """Validate an already-parsed eps: finite, >= 0 and, for Linf, within the pixel range."""
    if not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"{where} must be a finite number >= 0, e.g. 8/255")
    if threat_model == "Linf" and eps > 1:
        raise ConfigError(f"{where}: Linf eps {eps:g} > 1 exceeds the [0, 1] pixel range; "
                          f"write fractions of 1, e.g. 8/255")
    return eps


def same_eps(a: float, b: float) -> bool:
    """Whether two eps are one value up to EPS_TOL (relative for eps above 1). ``a`` may be an
    array or a pandas Series: the answer is then elementwise (how per-example rows are filtered)."""
    return abs(a - b) <= EPS_TOL * max(1.0, abs(b))
