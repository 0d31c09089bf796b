"""A wheel installed in a fresh virtualenv, run from another directory, works offline."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_contexts_queries_and_samples_and_runs_elsewhere(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("konbini_ld-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("konbini_ld/contexts/activitystreams.jsonld", "konbini_ld/contexts/konbini-social.jsonld",
                    "konbini_ld/queries/top-audios.rq", "konbini_ld/samples/seed-audio.json"):
        assert shipped in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # the dependencies come from this interpreter's site-packages (no network); the project only from the wheel
    purelib = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True,
                   capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import konbini_ld, pathlib; "
        "assert 'site-packages' in konbini_ld.__file__, konbini_ld.__file__; "
        "s = pathlib.Path(konbini_ld.__file__).parent / 'samples' / 'seed-audio.json'; "
        "st = konbini_ld.open_store(None); r = st.load([s]); assert r.ok, r.failed; "
        "print(next(st.run_named('top-audios').rows())[4].value)"
    )
    out = subprocess.run([py, "-I", "-c", code], cwd=elsewhere, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "khaby.lame"
