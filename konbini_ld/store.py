"""The konbini-ld graph: ingest with upsert and provenance, query, export, rebuild.

Layout of a store directory::

    <store>/
      oxigraph/     the embedded Oxigraph database (RocksDB)
      archive/      every raw response ingested (gzip JSON Lines, append-only)
      state.json    how far into the archive the graph is applied

Graphs: mapped data in ``urn:konbini-ld:graph:data``, PROV-O provenance in
``urn:konbini-ld:graph:provenance``; queries see their union as the default graph.

The upsert rule, per batch of responses: for every entity (a subject with a
real IRI) and every property a response carries for it, the stored values are
replaced by the new ones; properties it does not carry keep their values;
skolemised objects (images, links…) hanging off a replaced value are removed
with it, so nothing is orphaned. Reloading identical data writes nothing new.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyoxigraph as ox

from .archive import Archive, ArchiveRecord
from .backends import Backend, OxigraphBackend
from .errors import InputError, StoreError
from .ingest import Prepared, Response, body_sha256, iter_sources, prepare, source_iri, text_stream
from .namespaces import DATA_GRAPH, GENID, KS, OBSERVATION, PROV, PROV_GRAPH, RDF, XSD, is_genid

__all__ = ["KonbiniStore", "LoadReport", "Stats", "open_store", "push"]

_DATA = ox.NamedNode(DATA_GRAPH)
_PROV = ox.NamedNode(PROV_GRAPH)
_RDF_TYPE = ox.NamedNode(RDF + "type")
_GENERATED_BY = ox.NamedNode(PROV + "wasGeneratedBy")
_ACTIVITY = ox.NamedNode(PROV + "Activity")
_USED = ox.NamedNode(PROV + "used")
_ENDED = ox.NamedNode(PROV + "endedAtTime")
_SHA = ox.NamedNode(KS + "responseSha256")
_LINE = ox.NamedNode(KS + "sourceLine")
_CREDITS_USED = ox.NamedNode(KS + "creditsUsed")
_CREDITS_REMAINING = ox.NamedNode(KS + "creditsRemaining")
_STATUS = ox.NamedNode(KS + "httpStatus")
_REQUESTED = ox.NamedNode(KS + "requested")
_NEXT_CURSOR = ox.NamedNode(KS + "nextCursor")
_MAPPING_FAILED = ox.NamedNode(KS + "mappingFailed")
_XSD_BOOL = ox.NamedNode(XSD + "boolean")
_XSD_INT = ox.NamedNode(XSD + "integer")
_XSD_DATETIME = ox.NamedNode(XSD + "dateTime")

DEFAULT_BATCH = 500


@dataclass(slots=True)
class LoadReport:
    """What an ingest did.

    :ivar loaded: responses loaded into the graph.
    :ivar failed: one :class:`InputError` per response or file that could not be loaded.
    :ivar triples: triples produced by the loaded responses (before de-duplication).
    :ivar unknown_keys: keys no context defines, ``"Type.key"`` → IRI they were kept under.
    :ivar added: quads added to the store; ``removed``: quads removed by the upsert.
    """

    loaded: int = 0
    failed: list[InputError] = field(default_factory=list)
    triples: int = 0
    unknown_keys: dict[str, str] = field(default_factory=dict)
    added: int = 0
    removed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def merge(self, other: LoadReport) -> None:
        self.loaded += other.loaded
        self.failed.extend(other.failed)
        self.triples += other.triples
        self.added += other.added
        self.removed += other.removed
        for k, v in other.unknown_keys.items():
            self.unknown_keys.setdefault(k, v)


@dataclass(slots=True)
class Stats:
    """A summary of the graph (``konbini-ld stats``)."""

    audios: int
    persons: int
    videos: int
    triples: int
    responses: int
    archived: int
    last_observed: str | None
    last_fetch: str | None
    credits_spent: int

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def _observation_iri(source: str, line: int | None, sha: str) -> str:
    import hashlib

    return OBSERVATION + hashlib.sha256(f"{source}\x00{line}\x00{sha}".encode()).hexdigest()[:32]


def _int(value: int) -> ox.Literal:
    return ox.Literal(str(value), datatype=_XSD_INT)


class _Planner:
    """Collects a batch's triples and turns them into the deletes and inserts of the upsert rule."""

    def __init__(self, graph: ox.NamedNode) -> None:
        self.graph = graph
        self.final: dict[tuple[ox.NamedNode, ox.NamedNode], list[ox.Term]] = {}
        self.owned: dict[ox.NamedNode, list[ox.Triple]] = {}

    def add_document(self, triples: Iterable[ox.Triple]) -> set[ox.NamedNode]:
        """Record one response's triples (later responses win per entity and property)."""
        carried: dict[tuple[ox.NamedNode, ox.NamedNode], list[ox.Term]] = {}
        for t in triples:
            s = t.subject
            if s.value.startswith(GENID):
                self.owned.setdefault(s, []).append(t)
            else:
                carried.setdefault((s, t.predicate), []).append(t.object)
        self.final.update(carried)
        return {s for s, _ in carried}

    def plan(self, backend: Backend) -> tuple[list[ox.Quad], list[ox.Quad]]:
        g = self.graph
        inserts: dict[ox.Quad, None] = {}
        stack: list[ox.NamedNode] = []
        for (s, p), objects in self.final.items():
            for o in objects:
                inserts[ox.Quad(s, p, o, g)] = None
                if isinstance(o, ox.NamedNode) and o.value.startswith(GENID):
                    stack.append(o)
        seen: set[ox.NamedNode] = set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            for t in self.owned.get(node, ()):
                inserts[ox.Quad(t.subject, t.predicate, t.object, g)] = None
                o = t.object
                if isinstance(o, ox.NamedNode) and o.value.startswith(GENID):
                    stack.append(o)

        subjects = list({s for s, _ in self.final})
        present = backend.existing_subjects(subjects, g) if subjects else set()
        deletes: dict[ox.Quad, None] = {}
        old_owned: list[ox.NamedNode] = []
        if present:
            for q in backend.quads_for_subjects(list(present), g):
                if (q.subject, q.predicate) in self.final:
                    deletes[q] = None
                    o = q.object
                    if isinstance(o, ox.NamedNode) and o.value.startswith(GENID):
                        old_owned.append(o)
        done: set[ox.NamedNode] = set()
        while old_owned:
            batch = [n for n in dict.fromkeys(old_owned) if n not in done]
            old_owned = []
            done.update(batch)
            for q in backend.quads_for_subjects(batch, g):
                deletes[q] = None
                o = q.object
                if isinstance(o, ox.NamedNode) and o.value.startswith(GENID) and o not in done:
                    old_owned.append(o)
        return [q for q in deletes if q not in inserts], [q for q in inserts if q not in deletes]


class KonbiniStore:
    """A konbini-ld graph on disk (or in memory), with its archive.

    Open one with :func:`open_store`. Use as a context manager to release the
    store's lock when done.

    :param location: directory of the store; ``None`` for a throwaway in-memory
        store without archive (tests, notebooks).
    :param read_only: open without taking the writer's lock (queries, exports).
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        archive: str | os.PathLike[str] | None = None,
        update_url: str | None = None,
        gsp_url: str | None = None,
    ) -> None:
        self.read_only = read_only
        self.location: Path | None = None
        self._state_dir: Path | None = None
        text = str(location) if location is not None else None
        if text is not None and text.startswith(("http://", "https://")):
            from .remote import SparqlBackend, derive_endpoints

            self.backend: Backend = SparqlBackend(derive_endpoints(text, update=update_url, gsp=gsp_url))
            self._state_dir = Path(archive) if archive is not None else None
        elif location is not None:
            self.location = Path(location)
            if self.location.exists() and not self.location.is_dir():
                raise StoreError(f"--store {self.location} exists and is not a directory")
            if read_only and not (self.location / "oxigraph").is_dir():
                raise StoreError(f"there is no konbini-ld store at {self.location} (load something first)")
            self.backend = OxigraphBackend(self.location / "oxigraph", read_only=read_only)
            self._state_dir = Path(archive) if archive is not None else self.location
        else:
            self.backend = OxigraphBackend(None)
        self.archive: Archive | None = (
            Archive(self._state_dir / "archive") if self._state_dir is not None else None
        )
        self._graph: Any = None
        if not read_only:
            self.recover()

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> KonbiniStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and release the store (its lock is freed for other processes)."""
        self._graph = None
        self.backend.close()

    @property
    def _state_path(self) -> Path | None:
        return self._state_dir / "state.json" if self._state_dir is not None else None

    def _applied(self) -> int:
        path = self._state_path
        if path is None or not path.exists():
            return 0
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["applied_seq"])
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"{path} is unreadable: {exc}") from exc

    def _set_applied(self, seq: int) -> None:
        path = self._state_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"applied_seq": seq}), encoding="utf-8")
        os.replace(tmp, path)

    def recover(self) -> LoadReport:
        """Apply archived responses the graph does not have yet (after a crash or kill)."""
        report = LoadReport()
        if self.archive is None:
            return report
        applied = self._applied()
        if self.archive.last_seq > applied:
            records = self.archive.records(after=applied)
            report = self._ingest_records(records, progress=None)
        return report

    # -- ingest --------------------------------------------------------------

    def load(
        self,
        sources: Iterable[str | os.PathLike[str] | IO[str]],
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """Ingest saved responses from files (JSON or JSON Lines), ``-`` or open text streams.

        Bad items are reported in :attr:`LoadReport.failed`; good items in the same run still load.
        """
        return self.ingest(iter_sources(sources), batch_size=batch_size, progress=progress)

    def ingest(
        self,
        responses: Iterable[Response | InputError],
        *,
        batch_size: int = DEFAULT_BATCH,
        archive_failed: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> LoadReport:
        """Ingest raw responses: prepare, archive, upsert, in batches.

        :param archive_failed: archive responses even when they cannot be mapped (API
            responses that were paid for), so that ``rebuild`` can recover them later.
        :param progress: called with the number of responses handled after each batch.
        """
        self._writable()
        report = LoadReport()
        batch: list[Response] = []
        for item in responses:
            if isinstance(item, InputError):
                report.failed.append(item)
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                report.merge(self._ingest_batch(batch, archive_failed=archive_failed))
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            report.merge(self._ingest_batch(batch, archive_failed=archive_failed))
            if progress:
                progress(len(batch))
        return report

    def _ingest_batch(self, batch: list[Response], *, archive_failed: bool) -> LoadReport:
        prepared = [prepare(r) for r in batch]
        records = self.archive_responses([p.response for p in prepared if p.ok or archive_failed])
        report = self._apply(prepared)
        if records:
            self._set_applied(records[-1].seq)
        return report

    def archive_responses(self, responses: Sequence[Response]) -> list[ArchiveRecord]:
        """Durably append raw responses to the archive (before they reach the graph).

        Responses archived but not yet applied are replayed the next time the store opens.
        """
        if self.archive is None or not responses:
            return []
        return self.archive.append(
            ArchiveRecord(
                seq=0,
                at=r.observed_at,
                source=source_iri(r.source),
                body=r.body,
                line=r.line,
                status=r.status,
                credits_used=r.credits_used,
                credits_remaining=r.credits_remaining,
                key=r.key,
            )
            for r in responses
        )

    def apply_archived(self, records: Sequence[ArchiveRecord], responses: Sequence[Response]) -> LoadReport:
        """Map and upsert responses already archived as ``records`` (same order)."""
        self._writable()
        report = self._apply([prepare(r) for r in responses])
        if records:
            self._set_applied(records[-1].seq)
        return report

    def _ingest_records(self, records: Iterable[ArchiveRecord], progress: Callable[[int], None] | None) -> LoadReport:
        report = LoadReport()
        batch: list[Response] = []
        last = 0

        def flush() -> None:
            report.merge(self._apply([prepare(r) for r in batch]))
            self._set_applied(last)
            if progress:
                progress(len(batch))
            batch.clear()

        for record in records:
            last = record.seq
            if record.status is not None and record.status not in (200, 404):
                continue
            batch.append(
                Response(
                    body=record.body,
                    source=record.source,
                    line=record.line,
                    observed_at=record.at,
                    status=record.status,
                    credits_used=record.credits_used,
                    credits_remaining=record.credits_remaining,
                    key=record.key,
                )
            )
            if len(batch) >= DEFAULT_BATCH:
                flush()
        if batch or last:
            flush()
        return report

    def _apply(self, prepared: Sequence[Prepared]) -> LoadReport:
        report = LoadReport()
        data = _Planner(_DATA)
        prov = _Planner(_PROV)
        for p in prepared:
            if p.not_found:
                prov.add_document(self._provenance(p, set()))
                continue
            if not p.ok:
                assert p.error is not None
                report.failed.append(p.error)
                if p.response.key is not None:
                    prov.add_document(self._provenance(p, set()))
                continue
            report.loaded += 1
            report.triples += len(p.triples)
            for k, v in p.unknown_keys.items():
                report.unknown_keys.setdefault(k, v)
            entities = data.add_document(p.triples)
            prov.add_document(self._provenance(p, entities))
        deletes, inserts = data.plan(self.backend)
        pdeletes, pinserts = prov.plan(self.backend)
        deletes += pdeletes
        inserts += pinserts
        if deletes or inserts:
            self.backend.apply(deletes, inserts)
        report.added, report.removed = len(inserts), len(deletes)
        return report

    def _provenance(self, p: Prepared, entities: set[ox.NamedNode]) -> list[ox.Triple]:
        r = p.response
        used = source_iri(p.source_url or r.source)
        sha = body_sha256(r.body)
        obs = ox.NamedNode(_observation_iri(used, r.line, sha))
        triples = [
            ox.Triple(obs, _RDF_TYPE, _ACTIVITY),
            ox.Triple(obs, _USED, ox.NamedNode(used)),
            ox.Triple(obs, _ENDED, ox.Literal(r.observed_at, datatype=_XSD_DATETIME)),
            ox.Triple(obs, _SHA, ox.Literal(sha)),
        ]
        if r.line is not None:
            triples.append(ox.Triple(obs, _LINE, _int(r.line)))
        if p.credits_used is not None:
            triples.append(ox.Triple(obs, _CREDITS_USED, _int(p.credits_used)))
        if p.credits_remaining is not None:
            triples.append(ox.Triple(obs, _CREDITS_REMAINING, _int(p.credits_remaining)))
        if r.key is not None:
            triples.append(ox.Triple(obs, _REQUESTED, ox.Literal(r.key)))
        if r.status is not None:
            triples.append(ox.Triple(obs, _STATUS, _int(r.status)))
        if not p.ok and not p.not_found:
            triples.append(ox.Triple(obs, _MAPPING_FAILED, ox.Literal("true", datatype=_XSD_BOOL)))
        if p.next_cursor is not None:
            triples.append(ox.Triple(obs, _NEXT_CURSOR, ox.Literal(p.next_cursor)))
        triples.extend(ox.Triple(e, _GENERATED_BY, obs) for e in entities)
        return triples

    def fetch_ledger(self) -> dict[str, LedgerEntry]:
        """What earlier fetches already bought: request key → status and next page cursor.

        Keys are ``audio:<id>`` and ``videos:<id>:<cursor>``. Status 404 means "not found"
        (billed, so not asked again). A response that arrived but could not be mapped is in
        the ledger too (``ks:mappingFailed``): it is in the archive, and ``rebuild`` after an
        upgrade recovers it without buying it again.
        """
        ledger: dict[str, LedgerEntry] = {}
        for row in self.backend.query(_LEDGER_QUERY, union=False):  # type: ignore[union-attr]
            key, status, cursor = row["key"], row["status"], row["next"]
            entry = LedgerEntry(int(status.value) if status is not None else 200, cursor.value if cursor else None)
            previous = ledger.get(key.value)
            if previous is None or previous.status != 200:
                ledger[key.value] = entry
        return ledger

    def rebuild(self, *, progress: Callable[[int], None] | None = None) -> LoadReport:
        """Re-derive the graph from the archive (after a context or mapping change).

        The data and provenance graphs are cleared and every archived response is
        mapped again, in the order it was first ingested, with its original time.
        """
        self._writable()
        if self.archive is None:
            raise StoreError("an in-memory store has no archive to rebuild from")
        self.backend.clear_graph(_DATA)
        self.backend.clear_graph(_PROV)
        self._set_applied(0)
        return self._ingest_records(self.archive.records(), progress=progress)

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError("this store was opened read-only")

    # -- reads ---------------------------------------------------------------

    @property
    def graph(self) -> Any:
        """An :class:`rdflib.Dataset` view of the store (default graph = union of all graphs).

        SPARQL run through it is evaluated by the backend natively.
        """
        if self._graph is None:
            from .rdflib_view import dataset_for

            self._graph = dataset_for(self.backend)
        return self._graph

    def query(
        self, sparql: str, params: Mapping[str, Any] | None = None, *, name: str | None = None
    ) -> Any:
        """Run a SPARQL query; ``params`` are bound as RDF terms (never spliced into the text).

        :returns: a :class:`konbini_ld.queries.QueryResult`.
        """
        from .queries import run_query

        return run_query(self.backend, sparql, params or {}, name=name)

    def run_named(self, name: str, params: Mapping[str, str] | None = None) -> Any:
        """Run a named query from ``queries/`` with string parameters bound by their declared types."""
        from .queries import get_named_query, run_query

        nq = get_named_query(name)
        return run_query(self.backend, nq.text, nq.bind(params or {}), name=nq.name)

    def export(self, fmt: Any, output: IO[bytes]) -> None:
        """Write the whole graph to ``output`` in ``fmt`` (an :class:`~konbini_ld.export.ExportFormat`)."""
        from .export import export

        export(self.backend, fmt, output)

    def __len__(self) -> int:
        return self.backend.count()

    def stats(self) -> Stats:
        """Counts of audios, persons, videos and triples; last observation; credits spent."""
        q = self.backend.query(_STATS_QUERY)
        row = next(iter(q))  # type: ignore[arg-type]

        def num(name: str) -> int:
            v = row[name]
            return int(v.value) if v is not None else 0

        def text(name: str) -> str | None:
            v = row[name]
            return v.value if v is not None else None

        return Stats(
            audios=num("audios"),
            persons=num("persons"),
            videos=num("videos"),
            triples=self.backend.count(),
            responses=num("responses"),
            archived=self.archive.last_seq if self.archive is not None else 0,
            last_observed=text("last"),
            last_fetch=text("lastFetch"),
            credits_spent=num("credits"),
        )


_LEDGER_QUERY = f"""
PREFIX ks: <{KS}>
SELECT ?key ?status ?next WHERE {{
  GRAPH <{PROV_GRAPH}> {{
    ?o ks:requested ?key .
    OPTIONAL {{ ?o ks:httpStatus ?status }}
    OPTIONAL {{ ?o ks:nextCursor ?next }}
  }}
}}
"""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One request an earlier fetch paid for."""

    status: int
    next_cursor: str | None


_STATS_QUERY = f"""
PREFIX as: <https://www.w3.org/ns/activitystreams#>
PREFIX ks: <{KS}>
PREFIX prov: <{PROV}>
SELECT ?audios ?persons ?videos ?responses ?last ?lastFetch ?credits WHERE {{
  {{ SELECT (COUNT(DISTINCT ?a) AS ?audios) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?a a as:Audio }} }} }}
  {{ SELECT (COUNT(DISTINCT ?p) AS ?persons) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?p a as:Person }} }} }}
  {{ SELECT (COUNT(DISTINCT ?v) AS ?videos) WHERE {{ GRAPH <{DATA_GRAPH}> {{ ?v a as:Video
      FILTER(!STRSTARTS(STR(?v), "{GENID}")) }} }} }}
  {{ SELECT (COUNT(?o) AS ?responses) (MAX(?t) AS ?last) (SUM(COALESCE(?c, 0)) AS ?credits)
     WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?o a prov:Activity ; prov:endedAtTime ?t
       OPTIONAL {{ ?o ks:creditsUsed ?c }} }} }} }}
  {{ SELECT (MAX(?ft) AS ?lastFetch) WHERE {{ GRAPH <{PROV_GRAPH}> {{ ?fo a prov:Activity ;
       prov:endedAtTime ?ft ; prov:used ?u FILTER(STRSTARTS(STR(?u), "http")) }} }} }}
}}
"""


def open_store(
    location: str | os.PathLike[str] | None,
    *,
    read_only: bool = False,
    archive: str | os.PathLike[str] | None = None,
    update_url: str | None = None,
    gsp_url: str | None = None,
) -> KonbiniStore:
    """Open (creating if needed) the store at ``location``.

    >>> with open_store(None) as store:
    ...     report = store.load([text_stream('{"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1", "name": "a"}}')])
    ...     report.loaded
    1

    :param location: a directory path; the query endpoint URL of a SPARQL 1.1 server
        (``http://host:7878/query``); or ``None`` for a throwaway in-memory store.
    :param read_only: do not take the writer's lock (several readers and one writer may coexist).
    :param archive: directory of the archive and state (default: inside a store directory;
        for a remote store there is none unless given).
    :param update_url: SPARQL update endpoint of a remote store (derived for known servers).
    :param gsp_url: Graph Store Protocol endpoint of a remote store (derived for known servers).
    :raises StoreError: the store cannot be opened (in use by another writer, unreadable…).
    """
    return KonbiniStore(location, read_only=read_only, archive=archive, update_url=update_url, gsp_url=gsp_url)


def push(
    store: KonbiniStore, to: str, *, update_url: str | None = None, gsp_url: str | None = None
) -> dict[str, int]:
    """Copy ``store``'s graphs into the SPARQL server whose query endpoint is ``to``.

    Each konbini-ld graph replaces the graph of the same name on the target (Graph Store
    ``PUT``; ``CLEAR`` + ``INSERT DATA`` where there is no Graph Store endpoint), so a push
    is idempotent. Returns triples pushed per graph.
    """
    import tempfile

    from .remote import SparqlBackend, derive_endpoints

    target = SparqlBackend(derive_endpoints(to, update=update_url, gsp=gsp_url))
    counts: dict[str, int] = {}
    try:
        for graph in (_DATA, _PROV):
            quads = store.backend.iter_quads(graph)
            with tempfile.TemporaryFile() as fh:
                n = 0
                for q in quads:
                    fh.write(f"{q.subject} {q.predicate} {q.object} .\n".encode())
                    n += 1
                fh.seek(0)
                if target.endpoints.gsp:
                    target.replace_graph(graph, fh)
                else:
                    target.clear_graph(graph)
                    fh.seek(0)
                    target.apply([], [ox.Quad(q.subject, q.predicate, q.object, graph)
                                      for q in ox.parse(fh, ox.RdfFormat.N_TRIPLES)])
            counts[graph.value] = n
    finally:
        target.close()
    return counts


def iter_prepared(responses: Iterable[Response]) -> Iterator[Prepared]:
    """Prepare responses one by one (exposed for differential tests and benchmarks)."""
    for r in responses:
        yield prepare(r)
