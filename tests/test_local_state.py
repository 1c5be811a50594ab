"""The local provider's state under $CLOUDML_HOME: private to the user, and every way it can be
unusable gives a clear error with a hint and exit code 2, never a traceback."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading

import pytest
from conftest import run_cli


def _assert_clear_error(result, *words: str) -> None:
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "Traceback" not in text, text
    assert "hint:" in text or '"hint"' in text, text
    for word in words:
        assert word in text, text


def test_a_fresh_home_and_its_state_file_are_private(tmp_path):
    home = tmp_path / "home"
    assert run_cli("list", home=home).returncode == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "state.db").stat().st_mode) == 0o600


def test_a_home_readable_by_others_is_made_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    assert run_cli("list", home=home).returncode == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_cloudml_home_being_a_file_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    _assert_clear_error(run_cli("list", home=home), "is not a folder")
    _assert_clear_error(run_cli("status", "x", home=home), "is not a folder")


def test_a_corrupt_state_database_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "state.db").write_bytes(b"this is not sqlite at all" * 100)
    _assert_clear_error(run_cli("list", home=home), "corrupt", "state.db")
    result = run_cli("list", "--output", "json", home=home)
    _assert_clear_error(result, "corrupt")
    assert result.stdout.strip(), "nothing on stdout with --output json"
    json.loads(result.stdout)


def test_an_unreadable_state_database_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    (home / "state.db").mkdir(parents=True)  # not a file: sqlite cannot open it, even as root
    _assert_clear_error(run_cli("list", home=home), "state.db")


def test_a_record_that_is_not_json_is_a_clear_error(tmp_path):
    home = tmp_path / "home"
    assert run_cli("list", home=home).returncode == 0
    with sqlite3.connect(home / "state.db") as conn:
        conn.execute("INSERT INTO deployments(name, record) VALUES('bad', '{truncated')")
    _assert_clear_error(run_cli("status", "bad", home=home), "unreadable")


def test_a_locked_state_database_is_a_clear_error_after_the_timeout(tmp_path):
    home = tmp_path / "home"
    assert run_cli("list", home=home).returncode == 0
    locked, release = threading.Event(), threading.Event()

    def hold():
        conn = sqlite3.connect(home / "state.db", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        result = run_cli("list", home=home, env={"CLOUDML_LOCAL_STATE_TIMEOUT": "0.5"})
        _assert_clear_error(result, "locked")
    finally:
        release.set()
        holder.join()
    assert run_cli("list", home=home).returncode == 0


@pytest.mark.parametrize("command", [["list"], ["status", "x"], ["delete", "x"]])
def test_the_state_errors_are_the_same_for_every_command(tmp_path, command):
    home = tmp_path / "home"
    home.mkdir()
    (home / "state.db").write_bytes(b"\0garbage" * 200)
    _assert_clear_error(run_cli(*command, home=home), "corrupt")
