"""The command line's own errors: one line that names the (sub)command and the fix, exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustmix import cli


def _one_line_error(capsys) -> str:
    out = capsys.readouterr()
    assert out.err.count("\n") == 1, out.err
    return out.err


@pytest.mark.parametrize("argv,names", [
    (["eval", "x.toml", "--seed", "abc"], ["robustmix eval: error:", "invalid int value: 'abc'"]),
    (["train", "r.toml", "--epochs", "two"], ["robustmix train: error:", "'two'"]),
    (["reproduce", "paper", "--bogus"], ["robustmix reproduce paper: error:", "unrecognized arguments: --bogus"]),
    (["zoo", "list", "--bogus"], ["robustmix zoo list: error:", "--bogus"]),
    ([], ["robustmix: error:", "COMMAND"]),
    (["zoo"], ["robustmix zoo: error:", "{list,show,remove}"]),
    (["eval", "x.toml", "--device", ""], ["robustmix eval: error:", "--device: empty"]),
    (["unshuffle", "r.toml", "--out", "o", "--device", " "], ["robustmix unshuffle: error:", "--device: empty"]),
])
def test_argument_errors_are_one_line_naming_the_subcommand(argv, names, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = _one_line_error(capsys)
    for part in names:
        assert part in err, err
    assert f"see `{names[0].split(':')[0]} --help`" in err


def test_help_still_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["eval", "--help"])
    assert exit_.value.code == 0 and "--precision" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["models", "zzz*"], "no registered architecture matches 'zzz*'"),
    (["zoo", "--store", "/nonexistent/zoo", "list"], "zoo store /nonexistent/zoo is not a directory"),
    (["analyze", "spectrum", "--layer", "2", "--out", "OUT"], "--layer picks a layer of a trained model"),
    (["analyze", "spectrum", "--n", "100000", "--out", "OUT"], "use --n 1672 or less"),
    (["analyze", "spectrum", "--n", "0", "--out", "OUT"], "--n: must be a positive integer"),
])
def test_requests_that_match_nothing_or_cannot_run_fail(argv, message, capsys, tmp_path):
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert cli.main(argv) == 2
    err = _one_line_error(capsys)
    assert err.startswith("robustmix: error:") and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("blocker", ["is a file", "under a file"])
def test_spectrum_out_that_cannot_be_a_directory(blocker, capsys, tmp_path):
    (tmp_path / "file").write_text("keep me")
    out = tmp_path / "file" if blocker == "is a file" else tmp_path / "file" / "sub"
    assert cli.main(["analyze", "spectrum", "--channels", "4", "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert f"cannot write to {out}" in err and "writable directory" in err
    assert (tmp_path / "file").read_text() == "keep me"


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv,message", [
    (["eval", "DIR"], "is a directory; pass the path of a TOML file"),
    (["train", str(REPO / "zoo/fashion-mnist-unshuffle.toml"), "--seeds", "1", "--amp", "off"],
     "--seeds, --amp do not apply to un-shuffling recipes"),
])
def test_inputs_that_would_be_misread(argv, message, capsys, tmp_path):
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    assert cli.main(argv) == 2
    assert message in _one_line_error(capsys)


@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_reader_that_leaves_early_is_not_an_error(unbuffered):
    # `robustmix models | head -1`: the pipe closes before robustmix has written everything.
    # Buffered (the default) the write fails at the final flush, unbuffered at the first print.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "robustmix", "models"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=Path(cli.__file__).parents[1])
    proc.stdout.close()  # the reader leaves before robustmix writes a line
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and err == "", err


def test_a_closed_stdout_is_not_an_error():
    # `robustmix models >&-`: Python then has no sys.stdout at all, and print writes nothing.
    proc = subprocess.run(["sh", "-c", f"exec '{sys.executable}' -m robustmix models >&-"],
                          capture_output=True, text=True, cwd=Path(cli.__file__).parents[1])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
