"""core.paths: the repository and the runs folder ($XRAY_RUNS_DIR, else runs/ in the repository)."""

from __future__ import annotations

from pathlib import Path

from core.paths import REPO_ROOT, runs_root


def test_repo_root_is_the_folder_holding_core():
    assert (REPO_ROOT / "core" / "paths.py").is_file()
    assert REPO_ROOT == Path(__file__).resolve().parent.parent


def test_runs_root_follows_the_variable_else_the_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert runs_root() == tmp_path / "elsewhere"
    monkeypatch.setenv("XRAY_RUNS_DIR", "")   # set but empty: the default, not the cwd
    assert runs_root() == REPO_ROOT / "runs"
    monkeypatch.delenv("XRAY_RUNS_DIR")
    assert runs_root() == REPO_ROOT / "runs"
