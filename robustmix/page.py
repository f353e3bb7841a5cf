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


def table(headers, rows, numeric=()) -> str:
    """A plain <table>: ``headers`` are text (escaped here); ``rows`` hold each cell's HTML (escape
    text from data first); cells in the ``numeric`` column positions are right-aligned (td.num)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# The report's look (robustmix report); paper pages pass their own smaller CSS.
REPORT_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1500px;padding:1rem 2rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
nav a{margin-right:1rem}.headline{background:#eef5ff;border-left:4px solid #2b6cb0;padding:.6rem 1rem}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dl.kv dt{font-weight:600}
dl.kv dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}th,td{border:1px solid #ddd;padding:.25rem .5rem}
th{background:#f4f4f4;position:sticky;top:0}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.missing{color:#999;background:#fafafa;text-align:center}.scroll{overflow-x:auto;max-width:100%}
.badge{display:inline-block;border-radius:.6rem;padding:0 .5rem;font-size:.75rem;font-weight:600;margin:0 .15rem}
.partial{background:#fff3cd;color:#7a5a00;border:1px solid #e6c65c}
.flag{background:#fde2e1;color:#9b1c1c;border:1px solid #f5a5a3}
tr.flagged td:first-child{border-left:4px solid #d9534f}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.8rem;color:#555}img.broken{outline:4px solid red}
.note{color:#555;font-size:.85rem}pre{background:#f7f7f7;padding:.5rem;overflow-x:auto;font-size:.8rem}
#image-status.bad{color:#b00;font-weight:700}
"""

# Marks images that failed to load with a red outline and records the count on
# <body data-images-ok/-total/-broken>: a reader sees a broken figure at once,
# and the browser test reads the same attributes.
IMAGE_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0, broken = [];
  for (var i = 0; i < imgs.length; i++) {
    var im = imgs[i];
    if (im.complete && im.naturalWidth > 0) { ok++; } else {
      broken.push(im.getAttribute('src')); im.classList.add('broken'); }
  }
  var b = document.body;
  b.setAttribute('data-images-total', String(imgs.length));
  b.setAttribute('data-images-ok', String(ok));
  b.setAttribute('data-images-broken', broken.join(' '));
  var el = document.getElementById('image-status');
  if (el && broken.length) { el.textContent = broken.length + ' figure(s) failed to load: ' +
                             broken.join(', '); el.className = 'bad'; }
});
"""
