"""The figures users decide from, checked end to end against the loopback fake API.

    python bench/figures.py [--audios 200] [--days 7]

A week of daily ``fetch --videos --refresh-older-than`` runs of a watch list (with two ids that
do not exist, and one billed 503 on day 4), through the command line as a user runs it; then:
the API's own bill beside what the runs' summaries said and what ``stats`` says; a dry run's
count beside the spend of the run after it; points per counter per run; and a reload of the
same recorded files (quads, points and archive before and after); and an answer of 250,000 rows
from ``serve`` as requests, SPARQLWrapper and Jena's ``SERVICE`` count it (the suite checks
40,000). Prints a table; writes the
section ``figures`` of bench/BENCHMARKS.md through run.py's writer when run from it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-figures-0a1b2c"


def konbini(store: Path, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KONBINI_API_KEY": KEY, "KONBINI_API_URL": url}
    return subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), *args], env=env,
                          capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audios", type=int, default=200)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    from konbini_ld import open_store
    from konbini_ld.sources.konbini.fakeapi import FakeKonbiniAPI, Scripted, audio_id

    work = Path(tempfile.mkdtemp(prefix="kld-figures-"))
    store = work / "store"
    ids = work / "watch.txt"
    ids.write_text("\n".join([audio_id(i) for i in range(args.audios)] + ["111", "222"]) + "\n")
    said = 0
    dry: list[tuple[int, int]] = []
    with FakeKonbiniAPI(api_key=KEY, pages=2) as api:
        api.reset(credits=10_000_000)
        for day in range(args.days):
            api.day = day
            if day == 3:
                api.script(f"/v1/tiktok/audios/{audio_id(0)}", Scripted(503, {"errors": [{"code": "x"}], "data": None},
                                                                        bill=True))
            common = ["fetch", "--ids-file", str(ids), "--videos", "--refresh-older-than", "0s"]
            if day:
                plan = konbini(store, *common, "--dry-run", url=api.url)
                planned = int(re.search(r"would make (\d+) requests", plan.stderr).group(1))  # type: ignore[union-attr]
            before = api.credits_used
            p = konbini(store, *common, url=api.url)
            m = re.search(r"credits used (\d+)", p.stderr)
            assert m, p.stderr
            said += int(m.group(1))
            if day:
                dry.append((planned, api.credits_used - before))
        billed = api.credits_used
    with open_store(store, read_only=True) as s:
        stats = s.stats()
        audio = "https://www.tiktok.com/music/"
        rows = s.query(
            "SELECT ?a (COUNT(?o) AS ?n) WHERE { ?a a <https://www.w3.org/ns/activitystreams#Audio> . "
            "?o <http://www.w3.org/ns/sosa/hasFeatureOfInterest> ?a ; "
            "<https://konbiniapi.com/ns/social/history#videoCount> ?v } GROUP BY ?a").records()
        per_run = sorted({r["n"] for r in rows if r["a"].startswith(audio)})
    print(f"week of refreshes, {args.audios} audios + 2 unknown ids, --videos, {args.days} days:")
    print(f"  billed by the API {billed:,}; said by the runs' summaries {said:,}; stats {stats.credits_spent:,}")
    print(f"  dry run vs the run after it (days 2..{args.days}): {dry}")
    print(f"  videoCount points per audio after {args.days} runs: {per_run}")
    # a reload of the same recorded files
    samples = sorted((ROOT / "samples").glob("*.json"))
    reload_store = work / "reload"
    p1 = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(reload_store), "load", *map(str, samples)],
                        capture_output=True, text=True)
    with open_store(reload_store, read_only=True) as s:
        first = (len(s), s.stats().points)
    p2 = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(reload_store), "load", *map(str, samples)],
                        capture_output=True, text=True)
    with open_store(reload_store, read_only=True) as s:
        second = (len(s), s.stats().points)
    print(f"  reload of samples/*.json: quads, points {first} -> {second}; "
          f"{p1.stderr.strip().splitlines()[-1]!r} then {p2.stderr.strip().splitlines()[-1]!r}")

    large_answers(work)


def large_answers(work: Path, rows: int = 250_000) -> None:
    """Rows of one large answer from ``serve``, as three clients count them."""
    import shutil

    import requests
    from SPARQLWrapper import JSON, SPARQLWrapper

    sys.path.insert(0, str(ROOT / "tests"))
    from jena import classpath
    from test_server import Served

    store = work / "large"
    samples = sorted((ROOT / "samples").glob("*.json"))
    subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store), "load", *map(str, samples)],
                   capture_output=True, text=True, check=True)
    pairs = f"SELECT ?a ?c ?e WHERE {{ ?a ?p ?b . ?c ?q ?d . ?e ?r ?f }} LIMIT {rows}"
    served = Served(store, "--timeout", "300")
    try:
        r = requests.post(served.url + "/sparql", data={"query": pairs}, headers={"Accept": "text/csv"}, timeout=600)
        by_requests = r.text.count("\r\n") - 1 if len(r.content) == int(r.headers["content-length"]) else -1
        client = SPARQLWrapper(served.url + "/sparql")
        client.setQuery(pairs)
        client.setReturnFormat(JSON)
        by_wrapper = len(client.query().convert()["results"]["bindings"])  # type: ignore[index,call-overload]
        by_jena: object = "(no java)"
        if shutil.which("java"):
            query = work / "service.rq"
            query.write_text(f"SELECT (COUNT(*) AS ?n) WHERE {{ SERVICE <{served.url}/sparql> {{ {pairs} }} }}")
            out = subprocess.run(["java", "-cp", classpath(work), "arq.sparql", "--query", str(query),
                                  "--results=csv"], capture_output=True, text=True, timeout=900)
            by_jena = int(out.stdout.split()[1]) if out.returncode == 0 else out.stderr.strip().splitlines()[-1:]
    finally:
        served.stop()
    print(f"answer of {rows:,} rows from serve: requests {by_requests:,}, SPARQLWrapper {by_wrapper:,}, "
          f"Jena SERVICE {by_jena}")


if __name__ == "__main__":
    main()
