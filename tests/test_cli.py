"""The echoseek console script: help everywhere, one-line errors with exit code 2."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from echoseek.cli import COMMANDS, main


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = COMMANDS[command][0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            pytest.fail(f"command '{command}' is registered but {module} does not exist")
        raise
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    assert f"echoseek {command}" in capsys.readouterr().out


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and len(err.strip().splitlines()) == 1


def test_console_script_error_has_no_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("echoseek")
    proc = subprocess.run(
        [str(exe), "ingest", f"input={tmp_path / 'missing.mat'}", f"output={tmp_path / 'o'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"echoseek ingest: error: {tmp_path / 'missing.mat'}: input not found"
    )


def test_module_entry_point_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "echoseek.jobs.ingest", "input="],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "input is required" in proc.stderr
