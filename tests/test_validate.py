from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import AUDIO_IRI, KHABY, NEWER, SEED, VIDEOS, seed_data, write_data, write_json
from rdflib import Graph, Literal, Namespace

from konbini_ld.apps.cli import main
from konbini_ld.query.validate import validate

SH = Namespace("http://www.w3.org/ns/shacl#")


def test_the_samples_conform(store: Any) -> None:
    store.load([SEED, NEWER, VIDEOS])
    report = validate(store)
    assert report.conforms and report.results == []


def test_violations_name_node_path_and_value(store: Any, tmp_path: Path) -> None:
    bad = seed_data()
    bad["attributedTo"]["followerCount"] = -5
    bad["icon"] = {"type": "Image", "width": 3}  # no url
    store.load([write_json(tmp_path / "bad.json", {"data": bad})])
    report = validate(store)
    assert not report.conforms
    lines = [str(r) for r in report.results]
    assert any(KHABY in line and "ks:followerCount" in line and "-5" in line for line in lines), lines
    assert any("as:url" in line and "an image needs a url" in line for line in lines), lines


@pytest.mark.filterwarnings("ignore:Parsing weird boolean:UserWarning")  # (what a user's run does with it)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_value_is_reported_as_the_store_holds_it(store: Any, workers: int, monkeypatch: Any) -> None:
    """A literal the data graph holds in a form of its own (``"yes"^^xsd:boolean``) is checked and
    reported as written, not as rdflib would rewrite it (``false``: a valid boolean), whether one
    process validates or several."""
    import pyoxigraph as ox

    import konbini_ld.query.shacl_parallel as parallel
    from konbini_ld.vocab import DATA_GRAPH

    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    store.load([SEED])
    graph, ks = ox.NamedNode(DATA_GRAPH), "https://konbiniapi.com/ns/social#"
    old = list(store.engine.store.quads_for_pattern(ox.NamedNode(AUDIO_IRI), ox.NamedNode(ks + "videoCount"),
                                                    None, graph))
    assert len(old) == 1
    store.engine.apply(old, {graph: [
        f'<{AUDIO_IRI}> <{ks}videoCount> "yes"^^<http://www.w3.org/2001/XMLSchema#boolean> .\n']})
    report = validate(store, workers=workers)
    lines = [str(r) for r in report.results]
    assert any("ks:videoCount" in line and line.endswith("(value yes)") for line in lines), lines
    assert not any("value false" in line for line in lines), lines
    turtle = report.turtle()  # (what `validate --format turtle` writes: Turtle a parser reads, the value as held)
    assert '"yes"^^xsd:boolean' in turtle
    values = [t.object for t in ox.parse(turtle, ox.RdfFormat.TURTLE)
              if t.predicate.value == "http://www.w3.org/ns/shacl#value"]
    assert values and all(v.value == "yes" for v in values), values
    if workers == 1:  # the command line says it in its own words, with no warning of rdflib's on the way
        import subprocess
        import sys

        out = subprocess.run([sys.executable, "-m", "konbini_ld", "--store", str(store.location), "validate"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and "(value yes)" in out.stdout, out
        assert out.stderr.startswith("does not conform") and "Warning" not in out.stderr, out.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_rdf_1_2_values_are_validated_and_reported_as_held(store: Any, workers: int, monkeypatch: Any) -> None:
    """A triple term or a directional string in the data graph (RDF 1.2, which rdflib cannot hold):
    validated as what it is (not an integer, not a plain string), shown and written in the Turtle
    report whole, never "failed to run"."""
    import pyoxigraph as ox

    import konbini_ld.query.shacl_parallel as parallel
    from konbini_ld.vocab import DATA_GRAPH

    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    store.load([SEED])
    graph, ks = ox.NamedNode(DATA_GRAPH), "https://konbiniapi.com/ns/social#"
    old = [q for p in ("videoCount", "album")
           for q in store.engine.store.quads_for_pattern(ox.NamedNode(AUDIO_IRI), ox.NamedNode(ks + p), None, graph)]
    store.engine.apply(old, {graph: [
        f'<{AUDIO_IRI}> <{ks}videoCount> <<( <urn:a> <urn:b> "c" )>> .\n',
        f'<{AUDIO_IRI}> <{ks}album> "Greatest"@en--rtl .\n',
    ]})
    report = validate(store, workers=workers)
    lines = [str(r) for r in report.results]
    assert any("ks:videoCount" in line and line.endswith('(value <<( <urn:a> <urn:b> "c" )>>)') for line in lines), lines
    assert any("ks:album" in line and line.endswith('(value "Greatest"@en--rtl)') for line in lines), lines
    values = {t.object for t in ox.parse(report.turtle(), ox.RdfFormat.TURTLE)
              if t.predicate.value == "http://www.w3.org/ns/shacl#value"}
    assert ox.Triple(ox.NamedNode("urn:a"), ox.NamedNode("urn:b"), ox.Literal("c")) in values, values
    assert ox.Literal("Greatest", language="en", direction=ox.BaseDirection.RTL) in values, values


def test_cli_exit_codes_and_turtle_report(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    runner = CliRunner()
    runner.invoke(main, ["--store", store, "load", str(SEED)], catch_exceptions=False)
    ok = runner.invoke(main, ["--store", store, "validate"], catch_exceptions=False)
    assert ok.exit_code == 0 and "conforms" in ok.stderr
    bad = seed_data()
    bad["videoCount"] = -1
    runner.invoke(main, ["--store", store, "load", str(write_json(tmp_path / "b.json", {"data": bad}))])
    r = runner.invoke(main, ["--store", store, "validate"], catch_exceptions=False)
    assert r.exit_code == 1 and "ks:videoCount" in r.stdout and "does not conform" in r.stderr
    r = runner.invoke(main, ["--store", store, "validate", "--format", "turtle"], catch_exceptions=False)
    assert r.exit_code == 1
    g = Graph().parse(data=r.stdout, format="turtle")
    assert (None, SH.conforms, Literal(False)) in g


def test_what_the_api_always_sends_is_required_and_the_unusual_is_a_warning(store: Any, tmp_path: Path) -> None:
    nameless = seed_data()
    del nameless["name"]
    lonely = seed_data()
    lonely["id"] = "https://www.tiktok.com/music/lonely-1"
    del lonely["attributedTo"]
    anonymous = seed_data()
    anonymous["id"] = "https://www.tiktok.com/music/anonymous-2"
    anonymous["attributedTo"] = {"type": "Person", "id": "https://www.tiktok.com/@nobody"}
    for i, doc in enumerate((nameless, lonely, anonymous)):
        store.load([write_json(tmp_path / f"{i}.json", {"data": doc})])
    report = validate(store)
    assert not report.conforms
    by = {(r.severity, r.message) for r in report.results}
    assert ("Violation", "an audio needs one name (the API always sends it)") in by
    assert ("Warning", "an audio with no creator is unusual") in by
    assert ("Violation", "a person needs one username (preferredUsername: the API always sends it)") in by
    assert "violations" in report.summary() and "warning" in report.summary()


def test_warnings_alone_pass_but_by_shacl_do_not_conform(store: Any, tmp_path: Path) -> None:
    import pyshacl

    from konbini_ld.query.validate import _data_graph, shapes_path

    lonely = seed_data()
    del lonely["attributedTo"]
    store.load([write_json(tmp_path / "l.json", {"data": lonely})])
    report = validate(store)
    assert report.ok and {r.severity for r in report.results} == {"Warning"}
    assert not report.conforms  # SHACL: conforms only when there are no results
    assert (None, SH.conforms, Literal(False)) in report.graph
    assert (None, SH.conforms, Literal(True)) not in report.graph
    # pySHACL says the same when it is not told to let warnings pass
    shacl = Graph().parse(shapes_path())
    assert pyshacl.validate(_data_graph(store), shacl_graph=shacl, inference="none")[0] is False
    assert "no violations" in report.summary() and "does not conform" in report.summary()


def test_cli_warnings_exit_0_with_a_report_that_does_not_conform(tmp_path: Path) -> None:
    lonely = seed_data()
    del lonely["attributedTo"]
    store = str(tmp_path / "s")
    runner = CliRunner()
    runner.invoke(main, ["--store", store, "load", str(write_json(tmp_path / "l.json", {"data": lonely}))])
    r = runner.invoke(main, ["--store", store, "validate", "--format", "turtle"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    g = Graph().parse(data=r.stdout, format="turtle")
    assert set(g.objects(None, SH.conforms)) == {Literal(False)}
    assert len(set(g.subjects(None, SH.ValidationResult))) == 1


def test_the_samples_report_conforms_true(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    CliRunner().invoke(main, ["--store", store, "load", str(SEED)], catch_exceptions=False)
    r = CliRunner().invoke(main, ["--store", store, "validate", "--format", "turtle"], catch_exceptions=False)
    assert r.exit_code == 0
    assert set(Graph().parse(data=r.stdout, format="turtle").objects(None, SH.conforms)) == {Literal(True)}


#: Shapes files, and what ``validate --shapes`` must end with: (exit code, words of its one line).
SHAPES: dict[str, tuple[bytes | None, int, str]] = {
    "not Turtle": (b"not rdf at all {{{\n", 1, "not Turtle"),
    "unbound prefix": (b"@prefix sh: <http://www.w3.org/ns/shacl#> .\nex:S a sh:NodeShape .\n", 1, "not Turtle"),
    "minCount not an integer": (
        b"@prefix sh: <http://www.w3.org/ns/shacl#> .\n<http://ex/S> a sh:NodeShape ; "
        b"sh:targetClass <https://www.w3.org/ns/activitystreams#Audio> ; "
        b'sh:property [ sh:path <http://ex/p> ; sh:minCount "x" ] .\n', 1, "minCount"),
    "a path of a literal": (
        b"@prefix sh: <http://www.w3.org/ns/shacl#> .\n<http://ex/S> a sh:NodeShape ; "
        b"sh:targetClass <https://www.w3.org/ns/activitystreams#Audio> ; "
        b"sh:property [ sh:path [ sh:zeroOrMorePath 5 ] ; sh:minCount 1 ] .\n", 1, "failed to run"),
    "a SPARQL constraint with SERVICE": (
        b"@prefix sh: <http://www.w3.org/ns/shacl#> .\n<http://ex/S> a sh:NodeShape ; "
        b"sh:targetClass <https://www.w3.org/ns/activitystreams#Audio> ; "
        b'sh:sparql [ sh:select "SELECT $this WHERE { SERVICE <http://127.0.0.1:9/> {} }" ] .\n', 1, "SERVICE"),
    "not UTF-8": (b"\xff\xfe@prefix", 2, "not UTF-8"),
    "missing": (None, 2, "does not exist"),
}


def test_shapes_files_that_cannot_be_used_are_one_line_each(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    CliRunner().invoke(main, ["--store", store, "load", str(SEED)], catch_exceptions=False)
    for label, (content, code, says) in SHAPES.items():
        path = tmp_path / f"{len(label)}.ttl"
        if content is not None:
            path.write_bytes(content)
        r = CliRunner().invoke(main, ["--store", store, "validate", "--shapes", str(path)])
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
        assert r.exit_code == code and r.exception is None or isinstance(r.exception, SystemExit), (label, r.stderr)
        assert len(errors) == 1 and says in errors[0] and "Traceback" not in r.stderr, (label, r.stderr)


def test_shapes_are_read_only_up_to_a_limit(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    CliRunner().invoke(main, ["--store", store, "load", str(SEED)], catch_exceptions=False)
    r = CliRunner().invoke(main, ["--store", store, "validate", "--shapes", "/dev/zero"], catch_exceptions=False)
    assert r.exit_code == 2 and r.stderr.splitlines() == ["Error: shapes /dev/zero is larger than 64 MiB: refusing "
                                                          "to read it"], r.stderr


# -- a large graph's nodes shared out among processes ----------------------------------------------


def _mixed_store(store: Any, tmp_path: Path) -> None:
    """Violations, warnings (from blank-node property shapes) and clean nodes, pages of videos too."""
    from konbini_ld.sources.konbini.corpus import workload_lines

    (tmp_path / "w.jsonl").write_text("".join(workload_lines(12, 0)))
    store.load([tmp_path / "w.jsonl", SEED, VIDEOS])
    for i in range(6):
        bad = seed_data()
        bad["id"] = f"https://www.tiktok.com/music/bad-{i}"
        bad["videoCount"] = -1 - i
        if i % 2:
            del bad["attributedTo"]
        if i % 3 == 0:
            bad["icon"] = {"type": "Image", "width": 3}
        store.load([write_json(tmp_path / f"bad{i}.json", {"data": bad})])
    # a duration that is neither integer nor double, on audios every worker gets some of: the sh:or
    # shape the results name is described in each worker's report (its list and its member shapes)
    import pyoxigraph as ox

    from konbini_ld.vocab import DATA_GRAPH

    graph, seconds = ox.NamedNode(DATA_GRAPH), ox.NamedNode("https://konbiniapi.com/ns/social#durationSeconds")
    audios = [row[0] for row in store.engine.query(
        "SELECT ?a WHERE { ?a a <https://www.w3.org/ns/activitystreams#Audio> } ORDER BY ?a LIMIT 6")]
    old = [q for a in audios for q in store.engine.store.quads_for_pattern(a, seconds, None, graph)]
    store.engine.apply(old, {graph: [f'{q.subject} {seconds} "long" .\n' for q in old]})


def test_shared_out_validation_gives_the_same_report_as_one_process(store: Any, tmp_path: Path,
                                                                     monkeypatch: Any) -> None:
    from rdflib.compare import isomorphic

    import konbini_ld.query.shacl_parallel as parallel

    _mixed_store(store, tmp_path)
    one = validate(store, workers=1)
    assert one.results and not one.ok  # violations and warnings to compare
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    spawned = []
    real = parallel._shared
    monkeypatch.setattr(parallel, "_shared", lambda *a: spawned.append(a[-1]) or real(*a))
    def words(report: Any) -> list[Any]:  # (a blank-node shape is named anew by each run)
        return [(r.severity, r.focus, r.path, r.value, r.message, r.shape if r.shape.startswith("urn:") else "_")
                for r in report.results]

    for workers in (2, 3):
        shared = validate(store, workers=workers)
        assert spawned[-1] == workers  # the work really was shared out
        assert words(shared) == words(one) and shared.focus_nodes == one.focus_nodes
        assert shared.conforms == one.conforms and shared.ok == one.ok
        assert isomorphic(shared.graph, one.graph)  # the Turtle report too, one copy of each shape


def test_a_small_graph_is_validated_in_one_process(store: Any, monkeypatch: Any) -> None:
    import konbini_ld.query.shacl_parallel as parallel

    store.load([SEED, NEWER, VIDEOS])
    monkeypatch.setattr(parallel, "_shared", lambda *a: (_ for _ in ()).throw(AssertionError("shared out")))
    assert validate(store, workers=4).conforms


def test_ctrl_c_during_a_shared_out_validation_ends_it_cleanly(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from konbini_ld.sources.konbini.corpus import workload_lines

    store = tmp_path / "s"
    (tmp_path / "w.jsonl").write_text("".join(workload_lines(200, 0)))  # over 5,000 nodes: shared out
    runner = CliRunner()
    assert runner.invoke(main, ["--store", str(store), "load", str(tmp_path / "w.jsonl")]).exit_code == 0
    proc = subprocess.Popen([sys.executable, "-m", "konbini_ld", "--store", str(store), "validate", "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (a background
    # job starts with Ctrl-C ignored; a terminal's command does not)
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while len(children) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            children = {int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()}
        except OSError:
            break
    assert len(children) >= 2, "the validation was not shared out"
    started = {pid: _started(pid) for pid in children}
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "Interrupted" in err, err
    for pid in children:  # (a worker that ended early may have left its pid to another process since)
        state = _started(pid)
        assert state is None or state != started[pid] or "zombie" in Path(f"/proc/{pid}/status").read_text()


def _started(pid: int) -> str | None:
    """When process ``pid`` started (its ``/proc`` stat's start time), or ``None`` if there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def test_a_validating_process_that_dies_or_fails_ends_the_validation_with_one_error(store: Any, tmp_path: Path,
                                                                                    monkeypatch: Any) -> None:
    import os
    import signal

    import pytest

    import konbini_ld.query.shacl_parallel as parallel
    from konbini_ld.errors import ValidationError

    store.load([SEED, NEWER, VIDEOS])
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    real = parallel._validate_share
    before = _children()

    def killed(k: int) -> Any:  # (runs in the forked worker)
        if k == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        return real(k)

    monkeypatch.setattr(parallel, "_validate_share", killed)
    with pytest.raises(ValidationError, match="ended unexpectedly .signal 9"):
        validate(store, workers=3)

    def failing(k: int) -> Any:
        raise RuntimeError("pySHACL broke")

    monkeypatch.setattr(parallel, "_validate_share", failing)
    with pytest.raises(ValidationError, match="RuntimeError: pySHACL broke"):
        validate(store, workers=2)
    assert _children() <= before  # every worker ended and reaped


def test_workers_end_with_a_validating_process_killed_outright(store: Any, tmp_path: Path) -> None:
    """``kill -9`` of validate (or of the notebook running it) leaves no worker computing for nobody."""
    import os
    import signal
    import subprocess
    import sys
    import time

    store.load([SEED, NEWER, VIDEOS])
    store.close()
    script = (
        "import sys, time\n"
        "import konbini_ld.query.shacl_parallel as parallel\n"
        "from konbini_ld import open_store\n"
        "from konbini_ld.query.validate import validate\n"
        "parallel.PARALLEL_FROM = 1\n"
        "parallel._validate_share = lambda k: time.sleep(120)  # a long share\n"
        "with open_store(sys.argv[1], read_only=True) as s:\n"
        "    validate(s, workers=2)\n"
    )
    log = tmp_path / "stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", script, str(store.location)], stderr=err)
    children: set[int] = set()
    deadline = time.monotonic() + 60
    while len(children) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        children = {int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()}
    assert len(children) == 2, log.read_text() if proc.poll() is not None else "not shared out"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _children() -> set[str]:
    import os

    return set(Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split())


def test_shapes_that_name_other_shapes_give_the_same_results_with_workers(store: Any, tmp_path: Path,
                                                                          monkeypatch: Any) -> None:
    import konbini_ld.query.shacl_parallel as parallel

    shapes = tmp_path / "nested.ttl"
    shapes.write_text("""@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix as: <https://www.w3.org/ns/activitystreams#> .
@prefix ks: <https://konbiniapi.com/ns/social#> .
@prefix ex: <http://example.org/shapes#> .
ex:Audio a sh:NodeShape ; sh:targetClass as:Audio ; sh:property [ sh:path as:attributedTo ; sh:node ex:Small ] .
ex:Small a sh:NodeShape ; sh:property [ sh:path ks:followerCount ; sh:maxInclusive 5 ] .
""")
    store.load([SEED, NEWER, VIDEOS])
    one = validate(store, shapes=shapes, workers=1)
    assert one.results and not one.ok  # the named shape's violations
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    shared = validate(store, shapes=shapes, workers=2)
    assert [(r.focus, r.message) for r in shared.results] == [(r.focus, r.message) for r in one.results]
    assert not shared.ok


def test_the_summary_names_the_shapes_the_graph_was_checked_against(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    CliRunner().invoke(main, ["--store", store, "load", str(SEED)], catch_exceptions=False)
    mine = tmp_path / "mine.ttl"
    mine.write_text("@prefix sh: <http://www.w3.org/ns/shacl#> .\n"
                    "@prefix as: <https://www.w3.org/ns/activitystreams#> .\n"
                    "<http://example.org/A> a sh:NodeShape ; sh:targetClass as:Audio ;\n"
                    "  sh:property [ sh:path as:name ; sh:minCount 1 ] .\n")
    r = CliRunner().invoke(main, ["--store", store, "validate", "--shapes", str(mine)])
    assert r.exit_code == 0 and "checked against the shapes of mine.ttl" in r.stderr, r.stderr
    assert "Person" not in r.stderr
    r = CliRunner().invoke(main, ["--store", store, "validate"])
    assert "checked against Audio, Person, Video and Image shapes" in r.stderr, r.stderr
    strict = tmp_path / "strict.ttl"
    strict.write_text(mine.read_text().replace("sh:path as:name ; sh:minCount 1", "sh:path as:name ; sh:minCount 2"))
    r = CliRunner().invoke(main, ["--store", store, "validate", "--shapes", str(strict)])
    assert r.exit_code == 1 and r.stderr.splitlines()[-1] == \
        "does not conform: 1 violation on 1 of the 1 node checked against the shapes of strict.ttl", r.stderr


AS = "https://www.w3.org/ns/activitystreams#"


def _audios_by(creator: str, count: int) -> list[str]:
    """N-Triples of ``count`` audios attributed to ``creator`` (a blank node: results of the bundled shapes)."""
    lines = []
    for i in range(count):
        a = f"<https://www.tiktok.com/music/a{i}>"
        lines += [f"{a} <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{AS}Audio> .\n", f'{a} <{AS}name> "n{i}" .\n',
                  f'{a} <https://konbiniapi.com/ns/social#videoCount> "1"^^<http://www.w3.org/2001/XMLSchema#integer> .\n',
                  f"{a} <{AS}attributedTo> {creator} .\n"]
    return lines


def _in_one_and_shared(store: Any, monkeypatch: Any) -> tuple[Any, Any]:
    """The store validated in one process, then shared out between two (however small the graph)."""
    import konbini_ld.query.shacl_parallel as parallel

    one = validate(store, workers=1)
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 1)
    return one, validate(store, workers=2)


def test_a_blank_node_of_the_data_in_several_workers_results_is_one_node_of_the_report(
        store: Any, monkeypatch: Any) -> None:
    """pySHACL copies a blank-node value, and what the data says of it, into its report: the
    workers' copies are one node, as in one process's report."""
    from rdflib import BNode, URIRef
    from rdflib.compare import isomorphic

    write_data(store, ['_:p <urn:x:note> "hello" .\n', *_audios_by("_:p", 6)])
    one, two = _in_one_and_shared(store, monkeypatch)
    assert len(one.results) == len(two.results) >= 6
    notes = [list(r.graph.triples((None, URIRef("urn:x:note"), None))) for r in (one, two)]
    assert len(notes[0]) == len(notes[1]) == 1
    values = [{o for o in r.graph.objects(None, SH.value) if isinstance(o, BNode)} for r in (one, two)]
    assert len(values[0]) == len(values[1]) == 1
    assert isomorphic(one.graph, two.graph)


def test_blank_nodes_of_the_data_named_as_a_worker_would_name_its_own_stay_apart(store: Any, monkeypatch: Any) -> None:
    """A worker names its report's own blank nodes: no blank node of the data can take such a name."""
    import pyoxigraph as ox
    from rdflib.compare import isomorphic

    from konbini_ld.vocab import DATA_GRAPH

    g = ox.NamedNode(DATA_GRAPH)  # (written as quads: the blank nodes keep these names)
    quads = [ox.Quad(ox.BlankNode("w0n0"), ox.NamedNode("urn:x:note"), ox.Literal("hello"), g)]
    for i in range(4):
        a = ox.NamedNode(f"https://www.tiktok.com/music/a{i}")
        quads += [ox.Quad(a, ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"), ox.NamedNode(AS + "Audio"), g),
                  ox.Quad(a, ox.NamedNode(AS + "name"), ox.Literal(f"n{i}"), g),
                  ox.Quad(a, ox.NamedNode(AS + "attributedTo"), ox.BlankNode(f"w{i % 2}n0"), g)]
    store.engine.store.extend(quads)
    one, two = _in_one_and_shared(store, monkeypatch)
    assert len(one.results) == len(two.results) >= 4
    assert len(one.graph) == len(two.graph) and isomorphic(one.graph, two.graph)


def test_a_blank_node_nested_in_a_blank_node_value_is_one_node_of_the_report(store: Any, monkeypatch: Any) -> None:
    """pySHACL names the blank nodes nested in a blank-node value's description anew: shared out,
    they are still one copy, as in one process's report."""
    from rdflib import Literal, URIRef
    from rdflib.compare import isomorphic

    write_data(store, ['_:p <urn:x:in> _:n .\n', '_:n <urn:x:v> "deep" .\n', '_:n <urn:x:next> _:m .\n',
                       '_:m <urn:x:v> "deeper" .\n', *_audios_by("_:p", 6)])
    one, two = _in_one_and_shared(store, monkeypatch)
    assert len(one.results) == len(two.results) >= 6
    for r in (one, two):
        assert len(list(r.graph.triples((None, URIRef("urn:x:v"), Literal("deep"))))) == 1
    assert len(one.graph) == len(two.graph) and isomorphic(one.graph, two.graph)
