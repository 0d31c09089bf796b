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


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path
