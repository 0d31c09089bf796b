"""Helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
SEED = DATA / "seed-audio.json"
NEWER = DATA / "tiktokGetAudio.json"
VIDEOS = DATA / "tiktokGetAudioVideos.json"
AUDIO_IRI = "https://www.tiktok.com/music/original-sound-7611615657754381599"
KHABY = "https://www.tiktok.com/@khaby.lame"


def seed_data() -> dict[str, Any]:
    """The documented seed audio object (unwrapped), a fresh copy each time."""
    return copy.deepcopy(json.loads(SEED.read_text())["data"])


def write_data(store: Any, lines: list[str]) -> None:
    """N-Triples lines straight into a store's data graph (blank nodes relabelled as Oxigraph loads them)."""
    import pyoxigraph as ox

    from konbini_ld.vocab import DATA_GRAPH

    store.engine.apply([], {ox.NamedNode(DATA_GRAPH): lines})


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def kill_mid_work(proc: Any, started: Any, delay: float, *, what: str = "the command") -> None:
    """SIGKILL ``proc`` ``delay`` seconds after ``started()`` says its work began, and check the
    kill landed mid-work: it had begun (however slowly the process started, on a busy machine)
    and had not ended on its own."""
    import signal as _signal
    import time as _time

    deadline = _time.monotonic() + 120
    while not started() and proc.poll() is None and _time.monotonic() < deadline:
        _time.sleep(0.01)
    assert proc.poll() is None and started(), f"{what} ended or never began its work before the kill"
    _time.sleep(delay)
    assert proc.poll() is None, f"{what} ended before the kill: the kill must land mid-work (shorten the delay)"
    proc.send_signal(_signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -_signal.SIGKILL


def writing(store: Any, proc: Any) -> Any:
    """Whether ``proc`` holds the store's writer lock (it has begun writing)."""
    from pathlib import Path as _Path

    lock = _Path(store) / "writer.lock"

    def check() -> bool:
        try:
            return f"pid {proc.pid}" in lock.read_text()
        except OSError:
            return False

    return check
