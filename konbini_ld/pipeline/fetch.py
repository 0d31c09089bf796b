"""``fetch``: collect audios (and the pages of videos using them) from KonbiniAPI into a store.

This is the orchestration above the store: the client (a source) asks, the store's
archive keeps each answer the moment it arrives, and the store's pipeline applies what
was archived (:meth:`konbini_ld.store.store.KonbiniStore.apply_archived`).


Requests run concurrently on a thread pool. Each answer is archived (written
and fsynced, concurrent answers sharing one fsync) by the thread that received
it, before anything else happens to it: a kill at any moment loses no paid
response. A separate thread maps what was archived into the graph, in archive
order; what it has not applied when the run stops is applied when the store is
next opened. What the store already holds is not bought again unless
``refresh`` is set; 404s are remembered as "not found", and the videos of an
audio are asked for only once the audio itself answered. A 402, a refused key,
``max_credits``, Ctrl-C or SIGTERM stop the run cleanly: no new request is
sent, retries stop, requests in flight are awaited (they are paid for) and
archived, so the next run resumes where this one stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import (
    AuthError,
    CreditsExhaustedError,
    FetchError,
    KonbiniError,
    NotFoundError,
    StoreError,
    Terminated,
    UsageError,
    settled,
)
from ..model import FetchReport, LedgerEntry, Response
from ..sources.konbini.client import ApiResponse, Budget, BudgetSpent, KonbiniClient
from ..sources.konbini.endpoints import audio_key, parse_audio_ids, usable_cursor, videos_key
from ..store.log.archive import ArchiveRecord
from ..units import check_duration, format_time
from .collection import KonbiniStore
from .feed import GraphFeed
from .ingest import DEFAULT_BATCH, DEFAULT_BATCH_BYTES

__all__ = ["APPLY_GRACE_SECONDS", "DEFAULT_CONCURRENCY", "FetchReport", "Terminated", "fetch"]

DEFAULT_CONCURRENCY = 32
_WAIT_SECONDS = 0.5
#: After an interrupt, how long the graph may keep taking archived responses before the run
#: exits (the rest is applied when the store is next opened).
APPLY_GRACE_SECONDS = 2.0
#: After an interrupt, how long requests in flight (paid for) may take to finish before they
#: are abandoned (a second interrupt abandons them at once).
DRAIN_GRACE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class _Job:
    audio_id: str
    kind: str  # "audio" | "videos"
    cursor: str | None = None
    page: int = 0

    @property
    def key(self) -> str:
        return audio_key(self.audio_id) if self.kind == "audio" else videos_key(self.audio_id, self.cursor)


def fetch(
    store: KonbiniStore,
    client: KonbiniClient | None,
    ids: Iterable[str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    refresh: bool = False,
    refresh_older_than: timedelta | None = None,
    retry_not_found: bool = False,
    dry_run: bool = False,
    max_credits: int | None = None,
    videos: bool = False,
    max_pages: int = 1,
    page_size: int = 30,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    on_graph: Callable[[int], None] | None = None,
    graph_progress: Callable[[int], None] | None = None,
    batch_size: int = DEFAULT_BATCH,
    batch_bytes: int | None = DEFAULT_BATCH_BYTES,
    workers: int | None = None,
) -> FetchReport:
    """Fetch audios by id or TikTok music URL (and with ``videos`` their pages of videos) into ``store``.

    :param client: who asks the API (``None`` for a dry run).
    :param ids: audio ids or TikTok music URLs; all are checked before any request is made.
    :param concurrency: requests in flight at once.
    :param refresh: buy again what the store already has (not-found answers included).
    :param refresh_older_than: buy again only what was last bought longer ago than this (a
        watch list kept current at the lowest cost: every purchase adds a point to the series).
        An audio the API said does not exist stays not found (see ``retry_not_found``).
    :param retry_not_found: ask again for what the API said does not exist.
    :param dry_run: buy nothing; report what would be bought (:attr:`FetchReport.planned`): what
        the run would send if every answer says what the last purchase of it said.
    :param max_credits: send at most this many requests in this run (one credit each, retries
        included), whatever the answers' credit headers say.
    :param max_pages: pages of videos per audio (``videos`` only), counting pages already stored.
    :param progress: called with 1 for every request finished or skipped.
    :param on_total: called with the number of requests known so far (it grows as pages name
        their next ones).
    :param on_graph: called once the last answer is in, with the number of answers the graph
        has yet to take; ``graph_progress`` then with each number it took.
    :param batch_size: answers one write to the graph takes at most.
    :param batch_bytes: answer text one write to the graph takes at most (``None``: no bound but
        the count); what the writer holds in memory follows it.
    :param workers: processes preparing answers for the graph beside the writer (``None``: one
        per CPU beyond one, see :func:`.feed.default_workers`; ``0``: all on the writer's thread).
    :raises InvalidIdError: an id is neither digits nor a TikTok music URL (nothing was requested).
    :raises UsageError: ``max_credits`` or ``max_pages`` is negative, ``concurrency`` below 1.
    """
    _check_counts(concurrency=(concurrency, 1), max_pages=(max_pages, 0), max_credits=(max_credits, 0),
                  page_size=(page_size, 1), batch_size=(batch_size, 1),
                  batch_bytes=(batch_bytes if batch_bytes is not None else 1, 1),
                  workers=(workers if workers is not None else 0, 0))
    if refresh_older_than is not None:
        check_duration(refresh_older_than)
    audio_ids = parse_audio_ids(ids)
    if client is None and not dry_run:
        raise UsageError("fetch needs a client, except for a dry run")
    if store.read_only and not dry_run:  # (refused before anything is bought: it could not be kept)
        raise StoreError("this store was opened read-only: a fetch needs to write what it buys (a dry run does not)")
    report = FetchReport(dry_run=dry_run)
    if not dry_run:  # what a stopped run of this process archived goes first, and counts as bought
        store.catch_up()
    known = store.fetch_ledger()  # what each request's last purchase answered
    if dry_run:  # (what a stopped run archived is applied before a real run buys: bought already)
        known.update(store.unapplied_ledger())
    bought = {} if refresh else {k: e for k, e in known.items() if not (retry_not_found and e.status == 404)}
    if refresh_older_than is not None:
        try:
            cutoff = format_time(datetime.now(UTC) - refresh_older_than)
        except OverflowError:
            cutoff = ""  # older than anything: everything is bought again
        # a not-found stays not found: the API said so, and asking again costs a credit
        bought = {k: e for k, e in bought.items()
                  if e.status == 404 or (e.observed_at is not None and e.observed_at >= cutoff)}
    runner = _Runner(store, client, report, bought, known, concurrency, max_credits, videos, max_pages, page_size,
                     progress)
    jobs = []
    for aid in dict.fromkeys(audio_ids):
        jobs.extend(runner.first_jobs(aid))
    if dry_run:
        runner.plan(jobs)
        return report
    runner.on_total = on_total
    runner.on_graph = on_graph
    runner.feed.progress = graph_progress
    runner.feed.batch_size, runner.feed.batch_bytes, runner.feed.workers = batch_size, batch_bytes, workers
    runner.total = len(jobs) + report.skipped
    if on_total:
        on_total(runner.total)
    runner.run(jobs)
    return report


def _check_counts(**values: tuple[int | None, int]) -> None:
    """Refuse an option that is not a whole number at least its least value (``None``: not given)."""
    for name, (value, least) in values.items():
        if value is None and name == "max_credits":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"{name} must be a whole number of at least {least}, not {value!r}")


class _Runner:
    def __init__(
        self,
        store: KonbiniStore,
        client: KonbiniClient | None,
        report: FetchReport,
        bought: dict[str, LedgerEntry],
        known: dict[str, LedgerEntry],
        concurrency: int,
        max_credits: int | None,
        videos: bool,
        max_pages: int,
        page_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        if store.archive is None:
            raise StoreError("fetch needs a store with an archive (paid responses are kept there)")
        self.store = store
        self.archive = store.archive
        self.client = client
        self.report = report
        self.ledger = bought
        self.known = known
        self.concurrency = max(1, concurrency)
        self.budget = Budget(max_credits)
        self.videos = videos
        self.max_pages = max(0, max_pages)
        self.page_size = page_size
        self.progress = progress or (lambda n: None)
        self.on_total: Callable[[int], None] | None = None
        self.on_graph: Callable[[int], None] | None = None
        self.total = 0
        self.stop = threading.Event()
        self.run_id = "fetch:" + format_time(datetime.now(UTC))
        #: cursors of each audio's pages met in this run: a cycle of cursors is followed once
        self.visited: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        #: paid answers the archive could not take (written elsewhere at the end, never lost)
        self.unarchived: list[Response] = []
        # archived records reach the graph on their own thread, in archive order
        self.feed = GraphFeed(store, report, self._halt)

    # -- planning --------------------------------------------------------------

    def _skip(self, n: int = 1) -> None:
        self.report.skipped += n
        self.progress(n)

    def _grow_total(self, n: int) -> None:
        self.total += n
        if self.on_total:
            self.on_total(self.total)

    def first_jobs(self, audio_id: str) -> list[_Job]:
        """The audio, unless bought before; its videos only once the audio is known to exist."""
        entry = self.ledger.get(audio_key(audio_id))
        if entry is None:
            return [_Job(audio_id, "audio")]
        self._skip()
        if entry.status == 200:
            job = self._videos_of(audio_id)
            return [job] if job is not None else []
        return []

    def _videos_of(self, audio_id: str) -> _Job | None:
        if self.videos and self.max_pages:
            return self._next_page(audio_id, "0", 0)
        return None

    def _next_page(self, audio_id: str, cursor: str | None, page: int) -> _Job | None:
        """The first page of the chain not bought yet (walking pages earlier runs stored); none
        past ``max_pages``, and none whose cursor this run already met (a cycle of cursors)."""
        seen = self.visited.setdefault(audio_id, set())
        while cursor is not None and page < self.max_pages:
            if cursor in seen:
                return None
            seen.add(cursor)
            entry = self.ledger.get(videos_key(audio_id, cursor))
            if entry is None:
                return _Job(audio_id, "videos", cursor, page)
            self._skip()
            if entry.status != 200:
                return None
            cursor, page = entry.next_cursor, page + 1
        return None

    def _follow(self, job: _Job, status: int, next_cursor: str | None) -> _Job | None:
        """What an answer to ``job`` leads to: an audio that exists, to its first page of videos;
        a page, to the next one it names."""
        if status != 200:
            return None
        if job.kind == "audio":
            return self._videos_of(job.audio_id)
        if next_cursor is not None and next_cursor != job.cursor:
            return self._next_page(job.audio_id, next_cursor, job.page + 1)
        return None

    def plan(self, jobs: list[_Job]) -> None:
        """What a run would send, sending nothing: the run's own decisions, each answer taken to
        say what the last purchase of it said (``planned``: exact when nothing new is found);
        ``planned_max`` adds the pages that answers never bought before could lead to."""
        certain = more = 0
        todo = list(reversed(jobs))
        while todo:
            job = todo.pop()
            if self.budget.limit is not None and certain >= self.budget.limit:
                break
            certain += 1
            last = self.known.get(job.key)
            if last is None:  # never bought: what it leads to is unknown
                if job.kind == "audio":
                    more += self.max_pages if self.videos else 0
                else:
                    more += max(0, self.max_pages - job.page - 1)
                continue
            follow = self._follow(job, last.status, last.next_cursor)
            if follow is not None:
                todo.append(follow)
        self.report.planned = certain
        self.report.planned_max = certain + more
        if self.budget.limit is not None:
            self.report.planned_max = min(self.report.planned_max, self.budget.limit)
        self.progress(len(jobs))

    # -- running ---------------------------------------------------------------

    def run(self, jobs: list[_Job]) -> None:
        assert self.client is not None
        self.archive.on_written = self._archived
        self.client.cancel = self.stop
        try:
            self.feed.start()
            self._run(jobs)
        finally:
            self.archive.on_written = None
            self.client.cancel = None
            self._rescue()
            pending = self.feed.pending()
            if pending and self.on_graph is not None and self.feed.deadline is None:
                self.on_graph(pending)
            self.feed.end()
            self._finish_applying()
        error = self.feed.error
        if error is not None:  # the graph could not take what was bought: said in the report, with the rest
            if not isinstance(error, KonbiniError):
                raise error
            if not any(e is error for e in self.report.errors):
                self.report.errors.append(error)

    def _finish_applying(self) -> None:
        """Wait for the graph to take what was archived. Ctrl-C or SIGTERM meanwhile gives it
        :data:`APPLY_GRACE_SECONDS` more (a second one: none); the rest is applied when the store
        is next opened, and the run still ends with its summary."""
        feed = self.feed
        if feed.thread.ident is None:  # (never started: stopped while starting)
            if feed.pool is not None:
                feed.pool.close()
            return
        while not feed.finished.is_set():
            try:
                feed.wait()
            except KeyboardInterrupt as exc:
                now = time.monotonic()
                self._halt("terminated" if isinstance(exc, Terminated) else "interrupted")
                feed.deadline = now if feed.deadline is not None and feed.deadline > now else now + APPLY_GRACE_SECONDS

    def _run(self, jobs: list[_Job]) -> None:
        todo = list(reversed(jobs))
        running: dict[Future[ApiResponse], _Job] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="konbini-fetch")
        try:
            while todo or running:
                # (answers waiting for the graph past two batches' worth: none asked for until it takes some)
                while todo and len(running) < self.concurrency and not self.stop.is_set() and not self.feed.full():
                    if not self.budget.take():  # one credit a request: the cap counts what is sent
                        self._halt("max-credits")
                        break
                    job = todo.pop()
                    future: Future[ApiResponse] = Future()
                    running[future] = job  # (known before it can run: an interrupt in submit leaves it waited for)
                    pool.submit(self._answer_into, future, job)
                if not running:
                    if todo and not self.stop.is_set() and self.feed.full():
                        self.feed.wait_room(_WAIT_SECONDS)
                        continue
                    break
                done, _ = wait(running, timeout=_WAIT_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    follow = self._collect(job, future)
                    if follow is not None and not self.stop.is_set():
                        self._grow_total(1)
                        todo.append(follow)
            self.report.not_requested += len(todo)
        except KeyboardInterrupt as exc:
            self._halt("terminated" if isinstance(exc, Terminated) else "interrupted")
            self.feed.deadline = time.monotonic() + DRAIN_GRACE_SECONDS + APPLY_GRACE_SECONDS
            self.report.not_requested += len(todo)
            self._drain(running)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _drain(self, running: dict[Future[ApiResponse], _Job]) -> None:
        """After Ctrl-C, wait a little for requests in flight: they are paid for, and archived as
        they arrive. Past :data:`DRAIN_GRACE_SECONDS`, or at a second Ctrl-C, they are abandoned
        (their connections closed), so the run ends within seconds whatever the server does."""
        assert self.client is not None
        for future in list(running):
            if future.cancel():
                running.pop(future)
                self.report.not_requested += 1
        try:
            wait(running, timeout=DRAIN_GRACE_SECONDS)
        except KeyboardInterrupt:
            pass
        self.client.abort()
        try:
            wait(running, timeout=DRAIN_GRACE_SECONDS)
        except KeyboardInterrupt:
            pass
        for future, job in list(running.items()):
            if future.done():
                self._collect(job, future)
            else:
                self.report.not_requested += 1

    def _halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self.report.stopped = reason

    def _answer_into(self, future: Future[ApiResponse], job: _Job) -> None:
        """(On a request thread.) Ask for ``job`` and settle ``future`` with the answer, unless
        the run cancelled it first: then nothing is sent."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(self._request(job))
        except BaseException as exc:  # noqa: BLE001 - the run's, through the future
            future.set_exception(exc)

    def _request(self, job: _Job) -> ApiResponse:
        """Ask (the request's credit is taken already), then archive every answer received before
        returning (on the requesting thread): the answer bought, and as evidence any other answer
        that may have been billed."""
        assert self.client is not None
        answers: list[ApiResponse] = []
        budget = self.budget.prepaid()
        accepted: ApiResponse | None = None
        failure: FetchError | None = None
        try:
            if job.kind == "audio":
                accepted = self.client.get_audio(job.audio_id, budget=budget, on_answer=answers.append)
            else:
                accepted = self.client.get_videos(job.audio_id, job.cursor, self.page_size, budget=budget,
                                                  on_answer=answers.append)
            return accepted
        except NotFoundError as exc:
            accepted = exc.answer
            raise
        except FetchError as exc:
            failure = exc
            raise
        finally:
            self._keep(job, answers, accepted, failure)
            failure = None  # (going on up, the error's frames include this one: it must not hold it)

    def _keep(self, job: _Job, answers: list[ApiResponse], accepted: ApiResponse | None,
              failure: FetchError | None) -> None:
        kept = []
        for i, answer in enumerate(answers):
            if answer is accepted:
                note = None
            elif answer.billed or answer.status in (200, 404):
                last = i == len(answers) - 1 and failure is not None
                note = failure.message if last and failure is not None else f"HTTP {answer.status}, asked again"
            else:
                continue  # not billed, nothing to keep
            kept.append(Response(body=answer.body, source=answer.url, status=answer.status, key=job.key,
                                 observed_at=answer.received_at, observed_given=True, credits_used=answer.billed,
                                 credits_remaining=answer.credits_remaining, note=note,
                                 evidence=answer.header_evidence, run=self.run_id))
        for answer in answers:
            self._account(answer)
        if not kept:
            return
        try:
            self.store.archive_responses(kept)
        except Exception as exc:  # paid for: kept in memory, written elsewhere at the end, never lost
            with self._lock:
                self.unarchived.extend(kept)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"the archive could not take an answer ({type(exc).__name__}: {exc})") from exc

    def _rescue(self) -> None:
        """Paid answers the archive could not take: try once more, else write them beside it
        (the store adopts them when next opened for writing), so none is ever bought again."""
        if not self.unarchived:
            return
        answers, self.unarchived = self.unarchived, []
        try:
            self.store.archive_responses(answers)
            return
        except Exception:  # (the archive still cannot take them: they go beside it)
            pass
        where = self.store.spill(answers)
        self.report.errors.append(StoreError(
            f"{len(answers)} paid answers could not be archived; they are kept in {where} and are "
            "archived when the store is next opened for writing on this machine (elsewhere: move the file into "
            "the store's unarchived/ folder first)"))

    def _archived(self, records: list[ArchiveRecord]) -> None:
        for record in records:
            self.feed.put(record)

    def _account(self, answer: ApiResponse) -> None:
        with self._lock:
            self.report.credits_used += answer.billed
            if answer.credits_remaining is not None:
                current = self.report.credits_remaining
                self.report.credits_remaining = (answer.credits_remaining if current is None
                                                 else min(current, answer.credits_remaining))

    def _failed(self, exc: BaseException) -> None:
        """A request that ended in ``exc``: counted, and the run stopped where it must."""
        if isinstance(exc, NotFoundError):
            self.report.not_found += 1
        elif isinstance(exc, CreditsExhaustedError):
            if exc.credits_remaining is None:
                self.report.credits_remaining = 0
            self._stop_with(exc, "credits-exhausted")
        elif isinstance(exc, AuthError):
            self._stop_with(exc, "auth")
        elif isinstance(exc, BudgetSpent):
            self._halt("max-credits")
            self.report.not_requested += 1
        elif isinstance(exc, FetchError):
            self.report.failed.append(exc)
        elif isinstance(exc, StoreError):  # the archive cannot be written: buying more would waste credits
            self._stop_with(exc, "store-error")
        else:
            raise exc

    def _stop_with(self, exc: KonbiniError, reason: str) -> None:
        if not any(type(e) is type(exc) and str(e) == str(exc) for e in self.report.errors):
            self.report.errors.append(exc)
        self._halt(reason)
        self.report.not_requested += 1

    def _collect(self, job: _Job, future: Future[ApiResponse]) -> _Job | None:
        self.progress(1)
        error = future.exception()
        if error is not None:  # (kept in the report: without the frames it passed through; a defect keeps them)
            self._failed(settled(error) if isinstance(error, KonbiniError) else error)
            return None
        answer = future.result()
        self.report.fetched += 1
        next_cursor = None
        if job.kind == "videos":
            nxt = answer.next_cursor  # (read when it was judged the answer asked for)
            if isinstance(nxt, (str, int)) and not isinstance(nxt, bool):
                next_cursor = str(nxt)
                if not usable_cursor(next_cursor):  # (it would go into a URL and the ledger)
                    self.report.failed.append(FetchError(
                        f"the page names a next cursor that cannot be asked for ({next_cursor[:40]!r}…): "
                        "its later pages are not fetched", url=answer.url))
                    next_cursor = None
        return self._follow(job, 200, next_cursor)
