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

import queue
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from .errors import AuthError, CreditsExhaustedError, FetchError, KonbiniError, NotFoundError, StoreError, UsageError
from .mapping.envelope import parse_documents
from .model import FetchReport, Response
from .sources.konbini.client import ApiResponse, KonbiniClient
from .sources.konbini.endpoints import audio_key, parse_audio_ids, videos_key
from .store.archive import ArchiveRecord
from .store.store import KonbiniStore
from .units import check_duration, format_time

__all__ = ["APPLY_GRACE_SECONDS", "DEFAULT_CONCURRENCY", "FetchReport", "Terminated", "fetch"]

DEFAULT_CONCURRENCY = 32
_WAIT_SECONDS = 0.5
_MAX_BATCH = 500
#: After an interrupt, how long the graph may keep taking archived responses before the run
#: exits (the rest is applied when the store is next opened).
APPLY_GRACE_SECONDS = 2.0


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C (``konbini-ld fetch`` installs the handler)."""


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
    dry_run: bool = False,
    max_credits: int | None = None,
    videos: bool = False,
    max_pages: int = 1,
    page_size: int = 30,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> FetchReport:
    """Fetch audios by id or TikTok music URL (and with ``videos`` their pages of videos) into ``store``.

    :param client: who asks the API (``None`` for a dry run).
    :param ids: audio ids or TikTok music URLs; all are checked before any request is made.
    :param concurrency: requests in flight at once.
    :param refresh: buy again what the store already has.
    :param refresh_older_than: buy again only what was last bought longer ago than this (a
        watch list kept current at the lowest cost: every purchase adds a point to the series).
    :param dry_run: buy nothing; report what would be bought (:attr:`FetchReport.planned`).
    :param max_credits: spend at most this many credits in this run.
    :param max_pages: pages of videos per audio (``videos`` only), counting pages already stored.
    :param progress: called with 1 for every request finished or skipped.
    :raises InvalidIdError: an id is neither digits nor a TikTok music URL (nothing was requested).
    """
    _check_counts(concurrency=(concurrency, 1), max_pages=(max_pages, 0), max_credits=(max_credits, 0),
                  page_size=(page_size, 1))
    if refresh_older_than is not None:
        check_duration(refresh_older_than)
    audio_ids = parse_audio_ids(ids)
    report = FetchReport(dry_run=dry_run)
    ledger = {} if refresh else store.fetch_ledger()
    if refresh_older_than is not None:
        cutoff = format_time(datetime.now(UTC) - refresh_older_than)
        ledger = {k: e for k, e in ledger.items() if e.observed_at is not None and e.observed_at >= cutoff}
    if client is None and not dry_run:
        raise UsageError("fetch needs a client, except for a dry run")
    runner = _Runner(store, client, report, ledger, concurrency, max_credits, videos, max_pages, page_size, progress)
    jobs = []
    for aid in dict.fromkeys(audio_ids):
        jobs.extend(runner.first_jobs(aid))
    if dry_run:
        runner.plan(jobs)
        return report
    runner.on_total = on_total
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
        ledger: dict[str, Any],
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
        self.ledger = ledger
        self.concurrency = max(1, concurrency)
        self.max_credits = max_credits
        self.videos = videos
        self.max_pages = max(0, max_pages)
        self.page_size = page_size
        self.progress = progress or (lambda n: None)
        self.on_total: Callable[[int], None] | None = None
        self.total = 0
        self.stop = threading.Event()
        # archived records reach the graph on their own thread, in archive order
        self.applying: queue.Queue[ArchiveRecord | None] = queue.Queue()
        self.apply_deadline: float | None = None
        self.writer_error: BaseException | None = None
        self.writer = threading.Thread(target=self._apply_loop, name="konbini-apply", daemon=True)

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
        """The first page of the chain not bought yet (walking pages earlier runs stored)."""
        while cursor is not None and page < self.max_pages:
            entry = self.ledger.get(videos_key(audio_id, cursor))
            if entry is None:
                return _Job(audio_id, "videos", cursor, page)
            self._skip()
            if entry.status != 200:
                return None
            cursor, page = entry.next_cursor, page + 1
        return None

    # -- running ---------------------------------------------------------------

    def plan(self, jobs: list[_Job]) -> None:
        """What a run would buy, bought by nobody: each job for certain, and for each the pages of
        videos it could lead to (up to ``max_pages`` per audio)."""
        self.report.planned = len(jobs)
        more = 0
        for job in jobs:
            if job.kind == "audio":
                more += self.max_pages if self.videos else 0
            else:
                more += max(0, self.max_pages - job.page - 1)
        self.report.planned_max = len(jobs) + more
        if self.max_credits is not None:
            self.report.planned = min(self.report.planned, self.max_credits)
            self.report.planned_max = min(self.report.planned_max, self.max_credits)
        self.progress(len(jobs))

    def _credits_left(self, in_flight: int) -> bool:
        return self.max_credits is None or self.report.credits_used + in_flight < self.max_credits

    def run(self, jobs: list[_Job]) -> None:
        assert self.client is not None
        self.archive.on_written = self._archived
        self.client.cancel = self.stop
        self.writer.start()
        try:
            self._run(jobs)
        finally:
            self.archive.on_written = None
            self.client.cancel = None
            self.applying.put(None)
            self.writer.join()
        if self.writer_error is not None:
            raise self.writer_error

    def _run(self, jobs: list[_Job]) -> None:
        todo = list(reversed(jobs))
        running: dict[Future[ApiResponse], _Job] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="konbini-fetch")
        try:
            while todo or running:
                while todo and len(running) < self.concurrency and not self.stop.is_set():
                    if not self._credits_left(len(running)):
                        self._halt("max-credits")
                        break
                    job = todo.pop()
                    running[pool.submit(self._request, job)] = job
                if not running:
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
            self.apply_deadline = time.monotonic() + APPLY_GRACE_SECONDS
            self.report.not_requested += len(todo)
            self._drain(running)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _drain(self, running: dict[Future[ApiResponse], _Job]) -> None:
        """Wait for requests in flight after Ctrl-C: they are paid for, and archived as they
        arrive. A second Ctrl-C abandons them."""
        try:
            for future in list(running):
                if future.cancel():
                    self.report.not_requested += 1
                    continue
                job = running.pop(future)
                wait([future])
                self._collect(job, future)
        except KeyboardInterrupt:
            pass

    def _halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.stop.set()
            self.report.stopped = reason

    def _request(self, job: _Job) -> ApiResponse:
        """Ask, then archive the answer before returning it (on the requesting thread)."""
        assert self.client is not None
        try:
            if job.kind == "audio":
                answer = self.client.get_audio(job.audio_id)
            else:
                answer = self.client.get_videos(job.audio_id, job.cursor, self.page_size)
        except NotFoundError as exc:
            self.store.archive_responses([
                Response(body=_error_body(exc), source=exc.url or "", status=404, key=job.key, observed_given=True,
                         credits_used=exc.credits_used, credits_remaining=exc.credits_remaining)
            ])
            raise
        self.store.archive_responses([
            Response(body=answer.body, source=answer.url, status=200, key=job.key, observed_at=answer.received_at,
                     observed_given=True, credits_used=answer.credits_used,
                     credits_remaining=answer.credits_remaining)
        ])
        return answer

    def _archived(self, records: list[ArchiveRecord]) -> None:
        for record in records:
            self.applying.put(record)

    def _account(self, used: int | None, remaining: int | None, billed: bool) -> None:
        self.report.credits_used += used if used is not None else (1 if billed else 0)
        if remaining is not None:
            current = self.report.credits_remaining
            self.report.credits_remaining = remaining if current is None else min(current, remaining)

    def _stop_with(self, exc: KonbiniError, reason: str) -> None:
        if not any(type(e) is type(exc) and str(e) == str(exc) for e in self.report.errors):
            self.report.errors.append(exc)
        self._halt(reason)
        self.report.not_requested += 1

    def _collect(self, job: _Job, future: Future[ApiResponse]) -> _Job | None:
        self.progress(1)
        try:
            answer = future.result()
        except NotFoundError as exc:
            self._account(exc.credits_used, exc.credits_remaining, billed=True)
            self.report.not_found += 1
            return None
        except CreditsExhaustedError as exc:
            self._account(None, 0 if exc.credits_remaining is None else exc.credits_remaining, billed=False)
            self._stop_with(exc, "credits-exhausted")
            return None
        except AuthError as exc:
            self._stop_with(exc, "auth")
            return None
        except FetchError as exc:
            self.report.failed.append(exc)
            return None
        except StoreError as exc:  # the archive cannot be written: buying more would waste credits
            self._stop_with(exc, "store-error")
            return None
        self._account(answer.credits_used, answer.credits_remaining, billed=True)
        self.report.fetched += 1
        if job.kind == "audio":
            return self._videos_of(job.audio_id)
        try:
            docs = parse_documents(answer.body).documents
        except KonbiniError:
            return None
        nxt = next((d.get("nextCursor") for d in docs if isinstance(d, dict)), None)
        if isinstance(nxt, (str, int)) and not isinstance(nxt, bool) and str(nxt) != job.cursor:
            return self._next_page(job.audio_id, str(nxt), job.page + 1)
        return None

    def _apply_loop(self) -> None:
        done = False
        while not done:
            batch: list[ArchiveRecord] = []
            item = self.applying.get()
            while True:
                if item is None:
                    done = True
                else:
                    batch.append(item)
                if done or len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = self.applying.get_nowait()
                except queue.Empty:
                    break
            if not batch:
                continue
            late = self.apply_deadline is not None and time.monotonic() > self.apply_deadline
            if self.writer_error is not None or late:
                self.report.unapplied += len(batch)  # archived: applied when the store is next opened
                continue
            try:
                load = self.store.apply_archived(batch)
            except BaseException as exc:  # surfaced by run(); archived responses replay on next open
                self.writer_error = exc
                self.report.unapplied += len(batch)
                self._halt("store-error")
                continue
            self.report.load.merge(load)
            self.report.fetched -= len(load.failed)
            self.report.failed.extend(load.failed)


def _error_body(exc: FetchError) -> str:
    import json

    return json.dumps({"errors": [{"code": exc.code or "not_found", "message": exc.message}], "data": None})
