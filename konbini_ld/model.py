"""The typed units that cross stages: a raw :class:`Response`, its mapped
:class:`Observation`, and the reports of what ingest, fetch and the archive did.

Nothing here imports an RDF library at module level: the command line starts fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import AuthError, CreditsExhaustedError, InputError, KonbiniError

if TYPE_CHECKING:
    from pyoxigraph import Literal, NamedNode, Triple

    Term = NamedNode | Literal

__all__ = ["Damage", "FetchReport", "LedgerEntry", "LoadReport", "Observation", "Response", "Stats"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Response:
    """One raw response as received or read from a file.

    :ivar body: the raw text.
    :ivar source: request URL, file path, or ``-`` for standard input.
    :ivar line: 1-based line for JSON Lines input.
    :ivar observed_at: when it was observed, as :func:`konbini_ld.units.format_time` spells it;
        ``None`` until known (ingest then uses a recorded exchange's ``Date`` header, else the
        time the load started).
    :ivar observed_given: ``observed_at`` is what the caller said (set with it, received,
        ``--observed-at``, or read back from the archive); when ``False``, a recorded exchange's
        ``Date`` header replaces it.
    :ivar status: HTTP status for API responses.
    :ivar credits_used: ``X-Credits-Used`` for API responses.
    :ivar credits_remaining: ``X-Credits-Remaining`` for API responses.
    :ivar key: what was asked for (an audio id…), for fetch bookkeeping.
    :ivar note: set on an answer kept only as evidence (not the answer asked for, a 404 that is
        not the API's, a billed failure): why it is not applied. Its credits count; its key is
        not bought.
    :ivar evidence: credit header values that were not believed, as received.
    :ivar run: the run that observed it (one run observes each counter of an entity once).
    """

    body: str
    source: str
    line: int | None = None
    observed_at: str | None = None
    status: int | None = None
    credits_used: int | None = None
    credits_remaining: int | None = None
    key: str | None = None
    observed_given: bool = False
    note: str | None = None
    evidence: dict[str, str] | None = None
    run: str | None = None

    def __post_init__(self) -> None:
        if self.observed_at is not None:
            self.observed_given = True

    @property
    def observed(self) -> str:
        """``observed_at``, or now when it is not known yet."""
        return self.observed_at or _now()

    @property
    def where(self) -> str:
        """``source`` or ``source:line``, for messages."""
        return f"{self.source}:{self.line}" if self.line is not None else self.source


@dataclass(slots=True)
class Observation:
    """What one response says, mapped: the unit that crosses from mapping to the store.

    :ivar response: the response it was read from.
    :ivar unknown_keys: keys no context defines, ``"Type.key"`` → the IRI they were kept under.
    :ivar error: why the response cannot be loaded, or ``None``.
    :ivar source_url: the request URL a recorded exchange names, if any.
    :ivar credits_used: credits the response cost (header or recorded exchange).
    :ivar credits_remaining: credits left after it.
    :ivar next_cursor: the cursor of the next page of a collection page.
    :ivar groups: the statements, grouped by what the upsert replaces: per (entity,
        property), the N-Triples lines of its values and of the skolemised objects those
        values own. Text is the fast path between the stages; read it typed with
        :meth:`triples`, :attr:`entities` and :meth:`values`.
    :ivar count: how many statements (lines) it holds.
    :ivar summary: what the store asked to have worked out where it was prepared (off the writer's
        thread: the upsert's digests of each entity, see :class:`~konbini_ld.mapping.prepare.PreparePool`),
        or ``None``.
    :ivar body_sha256: hex SHA-256 of the response's body (its identity in provenance), taken where
        it is prepared (a worker process, off the writer's thread); see :meth:`body_digest`.
    """

    response: Response
    unknown_keys: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  #: values kept as sent that cannot be right, located
    error: InputError | None = None
    source_url: str | None = None
    credits_used: int | None = None
    credits_remaining: int | None = None
    next_cursor: str | None = None
    #: the triples as N-Triples lines grouped by (entity, property), each group carrying the
    #: lines of the skolemised objects it owns: the unit the upsert replaces
    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    count: int = 0
    summary: Any = None
    body_sha256: str | None = None

    def body_digest(self) -> str:
        """Hex SHA-256 of the response's body (taken once)."""
        if self.body_sha256 is None:
            import hashlib

            self.body_sha256 = hashlib.sha256(self.response.body.encode("utf-8", "surrogatepass")).hexdigest()
        return self.body_sha256

    @property
    def ok(self) -> bool:
        return self.error is None

    def lines(self) -> set[str]:
        """Every N-Triples line of the response (empty on error)."""
        return {line for lines in self.groups.values() for line in lines}

    @property
    def entities(self) -> set[str]:
        """IRIs of the entities the response describes (not the skolemised objects they own)."""
        return {s[1:-1] for s, _ in self.groups}

    def triples(self) -> Iterator[Triple]:
        """Every statement, as pyoxigraph triples."""
        import pyoxigraph as ox

        text = "".join(sorted(self.lines())).encode("utf-8")
        return (q.triple for q in ox.parse(text, ox.RdfFormat.N_TRIPLES))

    def values(self, entity: str, prop: str) -> list[Term]:
        """The values the response gives ``entity``'s property ``prop`` (IRIs, unbracketed)."""
        import pyoxigraph as ox

        lines = self.groups.get((f"<{entity}>", f"<{prop}>"), [])
        head = f"<{entity}> <{prop}> "
        text = "".join(line for line in lines if line.startswith(head)).encode("utf-8")
        return [q.object for q in ox.parse(text, ox.RdfFormat.N_TRIPLES)]

    @property
    def not_found(self) -> bool:
        """A recorded 404: nothing to map, but worth remembering (it was paid for)."""
        return self.response.status == 404 and self.response.note is None

    @property
    def evidence(self) -> bool:
        """An answer kept only as evidence (:attr:`Response.note`): nothing to map."""
        return self.response.note is not None

    @property
    def mappable(self) -> bool:
        """It carries data for the graph (not a 404, not evidence)."""
        return self.response.status != 404 and self.response.note is None


@dataclass(slots=True)
class Damage:
    """A span of the archive that does not read back.

    :ivar segment: the segment file name (or ``HEAD``).
    :ivar offset: byte offset of the damage in the segment.
    :ivar reason: what was wrong.
    :ivar lost: how many records could not be read because of it.
    :ivar seqs: the first and last sequence numbers among them.
    """

    segment: str
    offset: int
    reason: str
    lost: int = 0
    seqs: tuple[int, int] | None = None

    def add_lost(self, first: int, last: int) -> None:
        self.lost += last - first + 1
        self.seqs = (first, last) if self.seqs is None else (min(self.seqs[0], first), max(self.seqs[1], last))

    def __str__(self) -> str:
        lost = ""
        if self.seqs is not None:
            first, last = self.seqs
            span = f"seq {first}" if first == last else f"seq {first}-{last}"
            lost = f"; {self.lost} record{'s' if self.lost != 1 else ''} lost ({span})"
        return f"archive {self.segment} at byte {self.offset}: {self.reason}{lost}"


MAX_WARNINGS = 100  #: warnings a :class:`LoadReport` keeps word for word (the rest are counted)


@dataclass(slots=True)
class LoadReport:
    """What an ingest did.

    :ivar loaded: responses loaded into the graph.
    :ivar failed: one :class:`InputError` per response or file that could not be loaded.
    :ivar triples: triples produced by the loaded responses (before de-duplication).
    :ivar unknown_keys: keys no context defines, ``"Type.key"`` → IRI they were kept under.
    :ivar added: data triples added to the graph; ``removed``: data triples the upsert removed
        (a reload that changes nothing adds and removes none).
    :ivar observations: provenance records written (one per response, reloads included).
    :ivar points: counter values the responses carried, each a point of the history graph (a
        point already there, from the same response at the same time, is not added twice).
    :ivar damage: damaged archive spans met while replaying or rebuilding.
    :ivar unchanged: responses left out because they were already there (a body already
        archived, taken again without a newer explicit time: the same observation).
    :ivar warnings: values kept as sent that cannot be right (a negative count), the first 100; ``warned``: all.
    """

    loaded: int = 0
    failed: list[InputError] = field(default_factory=list)
    triples: int = 0
    unknown_keys: dict[str, str] = field(default_factory=dict)
    added: int = 0
    removed: int = 0
    observations: int = 0
    points: int = 0
    damage: list[Damage] = field(default_factory=list)
    unchanged: int = 0
    warnings: list[str] = field(default_factory=list)
    warned: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def warn(self, message: str) -> None:
        """Note a value kept as sent that cannot be right (the first :data:`MAX_WARNINGS` are kept)."""
        self.warned += 1
        self.warnings.extend([message] if len(self.warnings) < MAX_WARNINGS else [])

    def merge(self, other: LoadReport) -> None:
        self.loaded += other.loaded
        self.failed.extend(other.failed)
        self.triples += other.triples
        self.added += other.added
        self.removed += other.removed
        self.observations += other.observations
        self.points += other.points
        self.unchanged += other.unchanged
        self.damage.extend(other.damage)
        self.warnings.extend(other.warnings[: max(0, MAX_WARNINGS - len(self.warnings))])
        self.warned += other.warned
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
    #: counter values kept in the history graph
    points: int = 0
    #: responses archived that the graph has not taken yet (a run stopped before it caught up;
    #: applied when the store is next opened for writing); their credits are in ``credits_spent``
    unapplied: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One request an earlier fetch paid for (the latest purchase, when it was bought again).

    :ivar status: its HTTP status (404: not found).
    :ivar next_cursor: the cursor of the next page, for a page of videos.
    :ivar observed_at: when it was received (:func:`konbini_ld.units.format_time` spelling).
    """

    status: int
    next_cursor: str | None
    observed_at: str | None = None


@dataclass(slots=True)
class FetchReport:
    """What a fetch did.

    :ivar fetched: responses received and stored (audios and pages of videos).
    :ivar skipped: requests not made because an earlier run already paid for them.
    :ivar not_found: 404 answers (recorded so they are not bought again).
    :ivar failed: errors of requests that failed, and of responses that could not be mapped.
    :ivar credits_used: credits this run spent (from ``X-Credits-Used``).
    :ivar credits_remaining: the last ``X-Credits-Remaining`` seen.
    :ivar stopped: why the run stopped early: ``credits-exhausted``, ``max-credits``, ``auth``,
        ``interrupted`` (Ctrl-C), ``terminated`` (SIGTERM), ``store-error``, or ``None``.
    :ivar not_requested: requests left undone because the run stopped early.
    :ivar errors: every error that stopped the run or would have (a 401 beside a 402…).
    :ivar unapplied: responses archived but not yet in the graph when the run ended (applied
        when the store is next opened).
    :ivar dry_run: nothing was bought; ``planned`` says what would have been.
    :ivar planned: requests a run would make for certain (audios, and first pages of videos
        whose audio is already stored); ``planned_max``: at most, counting the later pages
        of videos a run would discover.
    """

    fetched: int = 0
    skipped: int = 0
    not_found: int = 0
    failed: list[KonbiniError] = field(default_factory=list)
    credits_used: int = 0
    credits_remaining: int | None = None
    stopped: str | None = None
    not_requested: int = 0
    load: LoadReport = field(default_factory=LoadReport)
    errors: list[KonbiniError] = field(default_factory=list)
    unapplied: int = 0
    dry_run: bool = False
    planned: int = 0
    planned_max: int = 0

    @property
    def error(self) -> KonbiniError | None:
        """The first error that stopped the run."""
        return self.errors[0] if self.errors else None

    @property
    def exit_code(self) -> int:
        """SPEC §4: 3 refused key, 4 credits exhausted, 130/143 interrupted/terminated,
        1 when something failed, else 0. A refused key wins over the rest: it needs the user."""
        if any(isinstance(e, AuthError) for e in self.errors):
            return 3
        if any(isinstance(e, CreditsExhaustedError) for e in self.errors):
            return 4
        if self.stopped == "interrupted":
            return 130
        if self.stopped == "terminated":
            return 143
        return 1 if self.failed or self.errors else 0

    def summary(self) -> str:
        """The one-line summary printed at the end of ``konbini-ld fetch``."""
        if self.dry_run:
            line = (f"dry run: would make {_counted(self.planned, 'request')}, costing "
                    f"{_counted(self.planned, 'credit')} at one per request")
            if self.planned_max > self.planned:
                line += f" (up to {self.planned_max} with the later pages of videos found on the way)"
            return line + f"; {self.skipped} already bought, skipped; nothing was bought"
        remaining = "?" if self.credits_remaining is None else str(self.credits_remaining)
        line = (
            f"fetched {self.fetched}, skipped {self.skipped}, not found {self.not_found}, "
            f"failed {len(self.failed)}; credits used {self.credits_used}, remaining {remaining}"
        )
        if self.stopped:
            line += f" (stopped: {self.stopped}; {_counted(self.not_requested, 'request')} left for the next run)"
        if self.unapplied:
            line += f"; {self.unapplied} archived responses reach the graph when the store is next opened"
        return line


def _counted(n: int, word: str) -> str:
    """``1 request``, ``2 requests``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
