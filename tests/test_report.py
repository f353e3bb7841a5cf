"""HTML report (robustmix.report), spectra (robustmix.spectrum), and a real-browser check."""
import base64
import fcntl
import html
import importlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from robustmix.errors import StoreError
from robustmix.fileio import model_slug
from robustmix.spectrum import envelope_coverage, spectral_envelope
from robustmix.report import auc, headline, write_report
from robustmix.results import load_results

sys.path.insert(0, str(Path(__file__).parent))
fx = importlib.import_module("fixtures_results")

CHROMIUM = "/usr/bin/chromium"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.hrefs, self.scripts_src = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src"))
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag in ("script", "link", "iframe") and (a.get("src") or a.get("href")):
            self.scripts_src.append(a.get("src") or a.get("href"))


def refs(index: Path) -> _Refs:
    p = _Refs()
    p.feed(index.read_text(encoding="utf-8"))
    return p


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    return write_report(fx.realistic_store(base / "results"), base / "report")


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    base = tmp_path_factory.mktemp("inj")
    return write_report(fx.injection_store(base / "results"), base / "report")


# ----------------------------------------------------------------------------- spectrum

def test_delta_envelope_is_flat():
    bank = np.zeros((1, 5, 5), np.float32)
    bank[0, 2, 2] = 1.0
    np.testing.assert_allclose(spectral_envelope(bank, n=32), np.ones((32, 32)), atol=1e-12)


def test_box_envelope_is_dirichlet():
    k, n = 5, 32
    env = spectral_envelope(np.ones((1, k, k)), n=n)
    f = np.fft.fftshift(np.fft.fftfreq(n))  # cycles/sample, DC in the centre like the envelope
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.abs(np.sin(np.pi * f * k) / np.sin(np.pi * f))
    d[np.isclose(f, 0)] = k  # limit at DC
    np.testing.assert_allclose(env, np.outer(d, d), atol=1e-9)
    assert env[n // 2, n // 2] == pytest.approx(k * k)  # DC of the box = its sum


def test_coverage_grows_with_random_filters_not_with_copies():
    rng = np.random.default_rng(0)
    rand = envelope_coverage(rng.normal(size=(32, 5, 5)))
    assert list(rand.columns) == ["n_filters", "coverage", "mean_magnitude"]
    assert list(rand["n_filters"]) == list(range(1, 33))
    assert rand["coverage"].is_monotonic_increasing
    assert rand["coverage"].iloc[-1] > rand["coverage"].iloc[0] + 0.2
    same = envelope_coverage(np.repeat(rng.normal(size=(1, 5, 5)), 32, axis=0))
    assert same["coverage"].nunique() == 1 and same["mean_magnitude"].nunique() == 1


def test_envelope_accepts_tensor_and_depthwise_layout():
    torch = pytest.importorskip("torch")
    w = torch.randn(8, 1, 3, 3)
    np.testing.assert_allclose(spectral_envelope(w), spectral_envelope(w[:, 0].numpy()))


def test_model_slug():
    assert model_slug("convmixer-full") == "convmixer-full"
    s = model_slug("<script>alert(1)</script>")
    assert all(c.isalnum() or c in "._-" for c in s)
    assert model_slug("a b") != model_slug("a/b")
    assert model_slug("../../etc") != "../../etc" and "/" not in model_slug("../../etc")


# ----------------------------------------------------------------------------- report

def test_report_files_and_links(real):
    out = real.parent
    assert real.name == "index.html" and real.is_file()
    r = refs(real)
    assert len(r.imgs) >= 2 + 4  # curves, worst case, one bank figure per model
    for src in r.imgs:
        assert not urlparse(src).scheme, src  # relative: opens from disk
        assert (out / unquote(src)).is_file(), src
        assert (out / unquote(src)).with_suffix(".svg").is_file()
    for href in r.hrefs:
        if not urlparse(href).scheme and not href.startswith("#"):
            assert (out / unquote(href)).is_file(), href
    assert not r.scripts_src  # no external scripts/styles/fonts
    text = real.read_text()
    assert "http://" not in text and "https://" not in text
    assert (out / "data" / "summary.csv").is_file()
    assert len(list((out / "figures").glob("*.png"))) == len(list((out / "figures").glob("*.svg")))


def test_report_content(real):
    text = real.read_text()
    assert "fashion-mnist" in text and "convmixer-smooth" in text
    assert "95% CI" in text
    assert "fgsm-beats-pgd" in text
    assert html.escape(fx.schema.DIAGNOSTIC_FLAGS["fgsm-beats-pgd"]) in text
    assert "AUC" in text and "trainable" in text
    assert "0.1.0+g1a2b3c4" in text and "cpu" in text  # provenance from run.json
    assert "partial" not in text.split('id="table"')[1].split('id="diagnostics"')[0].replace(
        "for a partial model", "")


def test_auc_is_the_trapezoid_over_the_eps_range():
    two = pd.DataFrame({"eps": [0.1, 0.0], "robust_acc": [0.5, 1.0]})  # unsorted on purpose
    assert auc(two) == pytest.approx((1.0 + 0.5) / 2)
    # uneven spacing: (0.8+0.6)/2*0.01 + (0.6+0.2)/2*0.02 = 0.015 over a range of 0.03
    three = pd.DataFrame({"eps": [0.0, 0.01, 0.03], "robust_acc": [0.8, 0.6, 0.2]})
    assert auc(three) == pytest.approx(0.5)
    assert auc(pd.DataFrame({"eps": [0.02], "robust_acc": [0.3]})) == pytest.approx(0.3)


def _two_model_headline(tmp_path, robust_b):
    models = [dict(name="model-a", variant="full", arch="A", robustness=0.01, clean=0.9),
              dict(name="model-b", variant="chans", arch="A", robustness=robust_b, clean=0.9)]
    root = fx.write_store(tmp_path / "r", models, threat_models={"Linf": [0.0, 0.02, 0.05]},
                          attacks=("pgd",), n=400, bank_shape=None)
    return headline(load_results(root))


def test_headline_names_a_clear_winner(tmp_path):
    text = _two_model_headline(tmp_path, robust_b=0.2)
    assert "<b>model-b</b>" in text.split("is the most robust")[0]
    assert "significantly above every other model" in text and "the runner-up <b>model-a</b>" in text
    assert "do not separate" not in text


def test_headline_refuses_to_rank_within_the_intervals(tmp_path):
    text = _two_model_headline(tmp_path, robust_b=0.0101)
    assert "do not separate it from model-a" in text and "do not establish" in text
    assert "most robust" not in text


def test_names_escaped(injected):
    text = injected.read_text()
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<img src=x" not in text and "<b>bold</b>" not in text
    assert text.count("<script>") == 1  # only the report's own image check
    for src in refs(injected).imgs:
        assert (injected.parent / unquote(src)).is_file()


def test_partial_marked(tmp_path):
    index = write_report(fx.partial_store(tmp_path / "r"), tmp_path / "rep")
    text = index.read_text()
    table = text.split('id="table"')[1].split('id="diagnostics"')[0]
    rows = [r for r in table.split("<tr") if "convmixer-space" in r]
    assert rows and all('badge partial' in r for r in rows)
    assert not any("badge partial" in r for r in table.split("<tr") if "convmixer-full" in r)
    assert 'class="missing"' in table
    assert "(partial)" not in text  # legend text lives in the figure, not the HTML
    assert "convmixer-space" in text.split('id="summary"')[1].split("</dl>")[1]


def test_twenty_models(tmp_path):
    root = fx.many_store(tmp_path / "r")
    index = write_report(root, tmp_path / "rep")
    table = index.read_text().split('id="table"')[1].split('id="diagnostics"')[0]
    names = pd.read_csv(root / "models.csv")["model"]
    assert len(names) == 20 and all(f"<td>{n}</td>" in table for n in names)
    assert len(refs(index).imgs) == 2 + 20
    for src in refs(index).imgs:
        assert (index.parent / src).is_file()


def test_one_model_and_rerun(tmp_path):
    root = fx.write_store(tmp_path / "r", fx.CONVMIXER[:1], threat_models={"Linf": [0, 8 / 255]},
                          n=50, bank_shape=(4, 3, 3))
    index = write_report(root, tmp_path / "rep")
    assert "convmixer-full" in index.read_text() and "keeps" in index.read_text()
    # a second run replaces the previous report in place and leaves no temp dirs
    assert write_report(root, tmp_path / "rep") == index
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "rep"]


@pytest.mark.parametrize("case", ["missing", "empty", "no-marker", "no-columns", "bad-json"])
def test_bad_store_errors(tmp_path, case):
    root = tmp_path / "r"
    if case != "missing":
        root.mkdir()
    if case in ("no-marker", "no-columns", "bad-json"):
        fx.write_store(root, fx.CONVMIXER[:1], threat_models={"Linf": [0.0]}, n=10, bank_shape=None)
    if case == "no-marker":
        (root / "store.json").unlink()
    if case == "no-columns":
        pd.read_parquet(root / "summary.parquet").drop(columns=["attack", "eps"]).to_parquet(
            root / "summary.parquet")
    if case == "bad-json":
        (root / "store.json").write_text("{")
    with pytest.raises(StoreError) as e:
        write_report(root, tmp_path / "rep")
    assert "\n" not in str(e.value) and str(root) in str(e.value)
    if case == "no-columns":
        assert "attack" in str(e.value) and "eps" in str(e.value)
    assert not (tmp_path / "rep").exists()


def test_unwritable_and_foreign_out(real, tmp_path):
    results = tmp_path / "r"
    fx.write_store(results, fx.CONVMIXER[:1], threat_models={"Linf": [0.0]}, n=10, bank_shape=None)
    blocker = tmp_path / "file"
    blocker.write_text("x")  # parent is a regular file: unwritable even for root
    with pytest.raises(StoreError) as e:
        write_report(results, blocker / "rep")
    assert "\n" not in str(e.value)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(StoreError, match="not a robustmix report"):
        write_report(results, foreign)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine", "r"]  # no temp dirs


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    from robustmix import figures

    results = fx.write_store(tmp_path / "r", fx.CONVMIXER[:1], threat_models={"Linf": [0.0]},
                             n=10, bank_shape=None)
    monkeypatch.setattr(figures, "worst_case_figure", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(results, tmp_path / "rep")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


@pytest.mark.parametrize("failing", ["move the old report aside", "move the new report in"])
def test_failed_replace_keeps_the_previous_report_and_no_temp_dirs(tmp_path, monkeypatch, failing):
    """A directory whose rename is refused (e.g. read-only to its owner) cannot be replaced: the
    previous report stays where it was and no .old-/.tmp- directory is left beside it."""
    results = fx.write_store(tmp_path / "r", fx.CONVMIXER[:1], threat_models={"Linf": [0.0]},
                             n=10, bank_shape=None)
    index = write_report(results, tmp_path / "rep")
    before = index.read_bytes()
    real_rename = os.rename

    def rename(src, dst):
        step = ("move the old report aside" if Path(src) == tmp_path / "rep" else
                "move the new report in" if Path(src).name.startswith(".rep.tmp-") else "put back")
        if step == failing:
            raise PermissionError(13, "Permission denied")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(StoreError, match="Permission denied"):
        write_report(results, tmp_path / "rep")
    assert index.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r", "rep"]


# ----------------------------------------------------------------------------- real browser

class CDP:
    """Chrome DevTools Protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-framed).

    No websocket client and no extra package: the browser reads commands from
    its fd 3 and writes replies/events to its fd 4.
    """

    def __init__(self, profile: str):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        # Lift both child ends above 2..4 so the dup2s below cannot clobber each other.
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def child():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "--window-size=1400,1600",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child, close_fds=False)
        os.close(hi_r)
        os.close(hi_w)
        self._buf, self._id, self.events = b"", 0, []

    def _read(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method, timeout=30):
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)


CHECK_JS = """JSON.stringify({
  images: Array.from(document.images).map(i => ({src: i.getAttribute('src'),
          ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth})),
  total: document.body.dataset.imagesTotal, okCount: document.body.dataset.imagesOk,
  title: document.title})"""


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason=f"{CHROMIUM} not installed (apt-get install chromium) - browser check skipped")
def test_report_in_headless_chromium(real, injected, tmp_path):
    profile = tempfile.mkdtemp(prefix="rm-chromium-")
    cdp = CDP(profile)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", session=sid)
        for index in (real, injected):
            cdp.events.clear()
            cdp.send("Page.navigate", {"url": index.resolve().as_uri()}, session=sid)
            cdp.wait_event("Page.loadEventFired")
            time.sleep(0.3)  # let late console messages arrive
            value = cdp.send("Runtime.evaluate", {"expression": CHECK_JS, "returnByValue": True},
                             session=sid)["result"]["value"]
            status = json.loads(value)
            assert status["images"] and all(i["ok"] for i in status["images"]), status
            # the report's own inline check agrees
            assert status["okCount"] == status["total"] == str(len(status["images"]))
            errors = [e for e in cdp.events if
                      e.get("method") == "Runtime.exceptionThrown"
                      or (e.get("method") == "Runtime.consoleAPICalled"
                          and e["params"]["type"] in ("error", "assert"))
                      or (e.get("method") == "Log.entryAdded"
                          and e["params"]["entry"]["level"] == "error")]
            assert not errors, errors
            assert not [e for e in cdp.events if e.get("method") == "Page.javascriptDialogOpening"]
            shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=sid)["data"]
            png = base64.b64decode(shot)
            assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
            (tmp_path / f"{index.parent.parent.name}.png").write_bytes(png)
    finally:
        cdp.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.parametrize("edit, match", [
    (lambda root: (root / "store.json").write_text(json.dumps({"format": "robustmix-results", "version": 1})),
     "store version 1, older than"),
    (lambda root: (root / "run.json").write_text(json.dumps({"seeds": {}, "versions": {}})),
     "run.json does not hold"),
    (lambda root: (root / "run.json").unlink(), "run.json is missing"),
])
def test_old_or_foreign_store_is_refused_in_one_line(tmp_path, edit, match):
    """A store of an older version (or with another run.json) is refused, not half-read."""
    root = fx.write_store(tmp_path / "r", fx.CONVMIXER[:1], threat_models={"Linf": [0.0]}, n=10, bank_shape=None)
    assert load_results(root).run.eval_seed == 1234
    edit(root)
    with pytest.raises(StoreError, match=match) as e:
        write_report(root, tmp_path / "rep")
    assert "\n" not in str(e.value) and "robustmix eval" in str(e.value)
    assert not (tmp_path / "rep").exists()
