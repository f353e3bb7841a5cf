"""Leaderboard CSV and RobustBench JSON export (robustmix.export)."""
import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from robustmix.errors import ConfigError, StoreError
from robustmix.export import (LEADERBOARD_COLUMNS, ROBUSTBENCH_FIELDS, export_leaderboard,
                              export_robustbench, format_eps, parse_eps)

sys.path.insert(0, str(Path(__file__).parent))
fx = importlib.import_module("fixtures_results")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fx.realistic_store(tmp_path_factory.mktemp("store") / "results")


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    return fx.partial_store(tmp_path_factory.mktemp("partial") / "results")


def test_parse_and_format_eps():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps(" 8 / 255 ") == pytest.approx(8 / 255)
    assert parse_eps("0.5") == 0.5 and parse_eps(0.25) == 0.25 and parse_eps("2e-2") == 0.02
    for bad in ("abc", "8/0", "-1", "nan", ""):
        with pytest.raises(ConfigError):
            parse_eps(bad)
    assert format_eps(8 / 255) == "8/255" and format_eps(1 / 255) == "1/255"
    assert format_eps(0.2) == "0.2" and format_eps(0) == "0" and format_eps(0.5) == "0.5"


def test_leaderboard_columns_and_ranking(store, tmp_path):
    out = tmp_path / "lb.csv"
    df = export_leaderboard(store, out, threat_model="Linf", eps="8/255")
    assert tuple(df.columns) == LEADERBOARD_COLUMNS
    read = pd.read_csv(out)
    assert tuple(read.columns) == LEADERBOARD_COLUMNS and len(read) == 4
    assert read["eps"].dtype == float and read["eps"].iloc[0] == pytest.approx(8 / 255)
    assert set(read["eps_label"]) == {"8/255"}
    assert list(read["robust_acc"]) == sorted(read["robust_acc"], reverse=True)
    assert list(read["rank"]) == sorted(read["rank"]) and read["rank"].iloc[0] == 1
    # robust_acc is the worst case: never above any single attack
    assert (read["robust_acc"] <= read[["autoattack_acc", "pgd_acc", "fgsm_acc"]].min(axis=1) + 1e-12).all()
    flagged = read.set_index("model").loc["convmixer-smooth", "flags"]
    assert flagged == "fgsm-beats-pgd"
    assert read["params"].notna().all() and read["code_version"].notna().all()
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file


def test_leaderboard_float_eps_matches_label(store, tmp_path):
    a = export_leaderboard(store, tmp_path / "a.csv", "Linf", 8 / 255)
    b = export_leaderboard(store, tmp_path / "b.csv", "Linf", "8/255")
    pd.testing.assert_frame_equal(a, b)


def test_leaderboard_defaults(store, partial, tmp_path):
    df = export_leaderboard(store, tmp_path / "d.csv")
    # Linf has more rows than L2; 0.2 is its largest eps, evaluated for every model
    assert set(df["threat_model"]) == {"Linf"} and df["eps"].iloc[0] == pytest.approx(0.2)
    dp = export_leaderboard(partial, tmp_path / "p.csv", "Linf", "16/255")
    space = dp.set_index("model").loc["convmixer-space"]
    assert pd.isna(space["autoattack_acc"]) and pd.notna(space["robust_acc"])


def test_unknown_eps_and_threat_model(store, tmp_path):
    with pytest.raises(ConfigError) as e:
        export_leaderboard(store, tmp_path / "x.csv", "Linf", "3/255")
    msg = str(e.value)
    assert "\n" not in msg and "8/255" in msg and "0.2" in msg
    with pytest.raises(ConfigError, match="L3"):
        export_leaderboard(store, tmp_path / "x.csv", "L3")
    assert not (tmp_path / "x.csv").exists()


def test_eps_of_another_threat_model_names_it(store, tmp_path, capsys):
    # 0.5 is an L2 eps only; without --threat-model the default (Linf) is tried first.
    with pytest.raises(ConfigError, match="eps 0.5 was not evaluated for Linf; pass --threat-model L2, or use a Linf"):
        export_leaderboard(store, tmp_path / "x.csv", eps="0.5")
    from robustmix import cli

    assert cli.main(["export", str(store), "--leaderboard", str(tmp_path / "x.csv"), "--eps", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustmix: error: ") and err.count("\n") == 1 and "--threat-model L2" in err
    assert not (tmp_path / "x.csv").exists()


def test_robustbench_json(store, tmp_path):
    paths = export_robustbench(store, tmp_path / "rb", "Linf", "8/255")
    assert len(paths) == 4
    entries = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in paths}
    for e in entries.values():
        assert tuple(e) == ROBUSTBENCH_FIELDS
        assert e["eps"] == "8/255" and e["dataset"] == "fashion-mnist"
        for k in ("clean_acc", "reported", "autoattack_acc", "external"):
            assert isinstance(e[k], str) and len(e[k].split(".")[1]) == 2
            assert 0 <= float(e[k]) <= 100
        assert isinstance(e["additional_data"], bool) and e["number_forward_passes"] == 1
    assert entries["convmixer-smooth"]["unreliable"] is True
    assert "fgsm-beats-pgd" in entries["convmixer-smooth"]["footnote"]
    assert entries["convmixer-full"]["unreliable"] is False
    assert entries["convmixer-full"]["footnote"] is None


def test_robustbench_without_autoattack(tmp_path):
    root = fx.write_store(tmp_path / "r", fx.CONVMIXER[:2], attacks=("fgsm", "pgd"),
                          threat_models={"Linf": [0.0, 8 / 255]}, n=50, bank_shape=None)
    [p, _] = export_robustbench(root, tmp_path / "rb", "Linf", 8 / 255)
    e = json.loads(p.read_text())
    assert e["autoattack_acc"] == e["external"]
    assert "AutoAttack was not run" in e["footnote"]


def test_bad_stores(tmp_path, store):
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad, pattern in [(empty, "empty"), (tmp_path / "nope", "does not exist")]:
        with pytest.raises(StoreError, match=pattern) as e:
            export_leaderboard(bad, tmp_path / "o.csv")
        assert "\n" not in str(e.value)
    broken = fx.write_store(tmp_path / "broken", fx.CONVMIXER[:1], n=20, bank_shape=None,
                            threat_models={"Linf": [0.0]})
    (broken / "summary.parquet").unlink()
    pd.read_csv(broken / "summary.csv").drop(columns=["robust_acc"]).to_csv(
        broken / "summary.csv", index=False)
    with pytest.raises(StoreError, match="robust_acc"):
        export_leaderboard(broken, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


def test_unwritable_outputs(store, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a regular file as parent: fails even for root
    with pytest.raises(StoreError) as e:
        export_leaderboard(store, blocker / "lb.csv")
    assert "\n" not in str(e.value)
    with pytest.raises(StoreError):
        export_robustbench(store, blocker / "rb", "Linf", "8/255")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
