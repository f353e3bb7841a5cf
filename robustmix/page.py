"""The HTML page shell every robustmix page shares (report, paper claims, un-shuffling).

Pages are self-contained: inline CSS and script, no network, relative links.
Every text from data goes through ``esc``.
"""
from __future__ import annotations

import html
import math


def esc(x) -> str:
    """HTML-escaped text (attributes too); None and NaN become empty."""
    return html.escape("" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x),
                       quote=True)


def html_page(title: str, body: str, css: str = "", script: str = "") -> str:
    """A complete UTF-8 page around ``body`` (already HTML); ``title`` is escaped here."""
    tail = f"<script>{script}</script>\n" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{css}</style></head>\n<body>\n{body}\n"
            f"{tail}</body></html>\n")
