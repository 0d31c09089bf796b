"""Type checkers see the API: the package type-checks, and a user script using every public
item passes ``mypy --strict``."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_type_checks() -> None:
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "konbini_ld")])
    assert status == 0, out + err


def test_a_user_script_passes_mypy_strict() -> None:
    script = ROOT / "tests" / "typing" / "user_script.py"
    out, err, status = api.run(["--strict", "--config-file", str(ROOT / "pyproject.toml"), str(script)])
    assert status == 0, out + err
    assert "Success" in out
