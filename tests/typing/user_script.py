"""What an analyst writes: every public API item, checked by ``mypy --strict`` in the tests."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import konbini_ld
from konbini_ld import Format, KonbiniClient, LoadReport, QueryResult, fetch, open_store, push, validate


def analyse(path: Path, sample: Path) -> list[str]:
    with open_store(path) as store:
        report: LoadReport = store.load([sample, {"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1"}}])
        assert report.ok
        result: QueryResult = store.run_named("top-audios")
        names: list[str] = []
        for record in result.records():
            name = record["name"]
            if isinstance(name, str):
                names.append(name)
        frame = store.query("SELECT ?a WHERE { ?a a ?t }", {"t": "https://www.w3.org/ns/activitystreams#Audio"}
                            ).to_pandas()
        print(len(frame))
        out = io.BytesIO()
        store.export(out, Format.TURTLE)
        store.export(out, "jsonld", inline_context=True)
        observed = store.stats().last_observed
        if observed is not None:
            print(datetime.fromisoformat(observed))
        conforms: bool = validate(store).conforms
        print(conforms)
    with open_store(None) as memory:
        memory.load(sample)
    return names


def collect(path: Path, ids: list[str]) -> int:
    client = KonbiniClient("key", base_url="http://127.0.0.1:9")
    with konbini_ld.open_store(path) as store:
        report = fetch(store, client, ids, concurrency=4, max_credits=10)
        counts: dict[str, int] = push(store, "http://127.0.0.1:7878/query")
        print(counts)
    return report.exit_code
