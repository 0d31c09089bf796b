"""Collect audios (and the pages of videos using them) from KonbiniAPI into the store.

Requests run concurrently on a thread pool; results are archived the moment
they arrive (durable before anything else happens to them) and streamed into
the graph in batches on the calling thread. What the store already holds is
not bought again unless ``refresh`` is set; 404s are remembered as "not
found". A 402, a refused key, ``max_credits`` or Ctrl-C stop the run cleanly:
requests in flight are awaited (they are paid for) and everything received is
kept, so the next run resumes where this one stopped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .client import ApiResponse, KonbiniClient, parse_audio_ids
from .errors import AuthError, CreditsExhaustedError, FetchError, KonbiniError, NotFoundError
from .ingest import Response
from .store import KonbiniStore, LoadReport

__all__ = ["DEFAULT_CONCURRENCY", "FetchReport", "fetch"]

DEFAULT_CONCURRENCY = 32
_WAIT_SECONDS = 0.5
_MAX_BATCH = 500


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
        ``interrupted``, or ``None``.
    :ivar not_requested: requests left undone because the run stopped early.
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
    error: KonbiniError | None = None

    @property
    def exit_code(self) -> int:
        """SPEC §4: 3 refused key, 4 credits exhausted, 1 when something failed, else 0."""
        if self.stopped == "auth":
            return 3
        if self.stopped == "credits-exhausted":
            return 4
        if self.stopped == "interrupted":
            return 130
        return 1 if self.failed else 0

    def summary(self) -> str:
        """The one-line summary printed at the end of ``konbini-ld fetch``."""
        remaining = "?" if self.credits_remaining is None else str(self.credits_remaining)
        line = (
            f"fetched {self.fetched}, skipped {self.skipped}, not found {self.not_found}, "
            f"failed {len(self.failed)}; credits used {self.credits_used}, remaining {remaining}"
        )
        if self.stopped:
            line += f" (stopped: {self.stopped}; {self.not_requested} requests left for the next run)"
        return line


@dataclass(frozen=True, slots=True)
class _Job:
    audio_id: str
    kind: str  # "audio" | "videos"
    cursor: str | None = None
    page: int = 0

    @property
    def key(self) -> str:
        return f"audio:{self.audio_id}" if self.kind == "audio" else f"videos:{self.audio_id}:{self.cursor}"


def fetch(
    store: KonbiniStore,
    client: KonbiniClient,
    ids: Iterable[str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    refresh: bool = False,
    max_credits: int | None = None,
    videos: bool = False,
    max_pages: int = 1,
    page_size: int = 30,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> FetchReport:
    """Fetch audios by id or TikTok music URL (and with ``videos`` their pages of videos) into ``store``.

    :param ids: audio ids or TikTok music URLs; all are checked before any request is made.
    :param concurrency: requests in flight at once.
    :param refresh: buy again what the store already has.
    :param max_credits: spend at most this many credits in this run.
    :param max_pages: pages of videos per audio (``videos`` only), counting pages already stored.
    :param progress: called with 1 for every request finished or skipped.
    :raises InvalidIdError: an id is neither digits nor a TikTok music URL (nothing was requested).
    """
    audio_ids = parse_audio_ids(ids)
    report = FetchReport()
    ledger = {} if refresh else store.fetch_ledger()
    runner = _Runner(store, client, report, ledger, concurrency, max_credits, videos, max_pages, page_size, progress)
    jobs = []
    for aid in audio_ids:
        jobs.extend(runner.first_jobs(aid))
    if on_total:
        on_total(len(jobs) + report.skipped)
    runner.run(jobs)
    return report


class _Runner:
    def __init__(
        self,
        store: KonbiniStore,
        client: KonbiniClient,
        report: FetchReport,
        ledger: dict[str, Any],
        concurrency: int,
        max_credits: int | None,
        videos: bool,
        max_pages: int,
        page_size: int,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.store = store
        self.client = client
        self.report = report
        self.ledger = ledger
        self.concurrency = max(1, concurrency)
        self.max_credits = max_credits
        self.videos = videos
        self.max_pages = max(0, max_pages)
        self.page_size = page_size
        self.progress = progress or (lambda n: None)
        self.stop = threading.Event()
        # responses are archived and written on their own thread, so that never holds up requests;
        # the writer takes everything that arrived while it was busy as its next batch
        self.intake: queue.Queue[Response | None] = queue.Queue()
        self.writer_error: BaseException | None = None
        self.writer = threading.Thread(target=self._write_loop, name="konbini-writer", daemon=True)

    # -- planning --------------------------------------------------------------

    def _skip(self, n: int = 1) -> None:
        self.report.skipped += n
        self.progress(n)

    def first_jobs(self, audio_id: str) -> list[_Job]:
        jobs = []
        if f"audio:{audio_id}" in self.ledger:
            self._skip()
        else:
            jobs.append(_Job(audio_id, "audio"))
        if self.videos and self.max_pages:
            job = self._next_page(audio_id, "0", 0)
            if job is not None:
                jobs.append(job)
        return jobs

    def _next_page(self, audio_id: str, cursor: str | None, page: int) -> _Job | None:
        """The first page of the chain not bought yet (walking pages earlier runs stored)."""
        while cursor is not None and page < self.max_pages:
            entry = self.ledger.get(f"videos:{audio_id}:{cursor}")
            if entry is None:
                return _Job(audio_id, "videos", cursor, page)
            self._skip()
            if entry.status != 200:
                return None
            cursor, page = entry.next_cursor, page + 1
        return None

    # -- running ---------------------------------------------------------------

    def _credits_left(self, in_flight: int) -> bool:
        return self.max_credits is None or self.report.credits_used + in_flight < self.max_credits

    def run(self, jobs: list[_Job]) -> None:
        self.writer.start()
        try:
            self._run(jobs)
        finally:
            self.intake.put(None)
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
                        todo.append(follow)
            self.report.not_requested += len(todo)
        except KeyboardInterrupt:
            self._halt("interrupted")
            self.report.not_requested += len(todo)
            self._drain(running)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _drain(self, running: dict[Future[ApiResponse], _Job]) -> None:
        """Wait for requests in flight after Ctrl-C: they are paid for. A second Ctrl-C abandons them."""
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
        if job.kind == "audio":
            return self.client.get_audio(job.audio_id)
        return self.client.get_videos(job.audio_id, job.cursor, self.page_size)

    def _account(self, used: int | None, remaining: int | None, billed: bool) -> None:
        self.report.credits_used += used if used is not None else (1 if billed else 0)
        if remaining is not None:
            current = self.report.credits_remaining
            self.report.credits_remaining = remaining if current is None else min(current, remaining)

    def _collect(self, job: _Job, future: Future[ApiResponse]) -> _Job | None:
        self.progress(1)
        try:
            answer = future.result()
        except NotFoundError as exc:
            self._account(exc.credits_used, exc.credits_remaining, billed=True)
            self.report.not_found += 1
            self.intake.put(
                Response(body=_error_body(exc), source=exc.url or "", status=404, key=job.key,
                         credits_used=exc.credits_used, credits_remaining=exc.credits_remaining)
            )
            return None
        except CreditsExhaustedError as exc:
            self._account(None, 0 if exc.credits_remaining is None else exc.credits_remaining, billed=False)
            self.report.error = exc
            self._halt("credits-exhausted")
            self.report.not_requested += 1
            return None
        except AuthError as exc:
            self.report.error = exc
            self._halt("auth")
            self.report.not_requested += 1
            return None
        except FetchError as exc:
            self.report.failed.append(exc)
            return None
        self._account(answer.credits_used, answer.credits_remaining, billed=True)
        response = Response(
            body=answer.body, source=answer.url, status=200, key=job.key,
            credits_used=answer.credits_used, credits_remaining=answer.credits_remaining,
        )
        self.intake.put(response)
        if job.kind == "videos":
            from .ingest import parse_documents

            try:
                docs = parse_documents(answer.body).documents
            except KonbiniError:
                return None
            nxt = next((d.get("nextCursor") for d in docs if isinstance(d, dict)), None)
            if isinstance(nxt, (str, int)) and not isinstance(nxt, bool) and str(nxt) != job.cursor:
                return self._next_page(job.audio_id, str(nxt), job.page + 1)
        return None

    def _write_loop(self) -> None:
        done = False
        while not done:
            batch: list[Response] = []
            item = self.intake.get()
            while True:
                if item is None:
                    done = True
                else:
                    batch.append(item)
                if done or len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = self.intake.get_nowait()
                except queue.Empty:
                    break
            if not batch or self.writer_error is not None:
                continue  # keep draining so the fetching side never blocks
            try:
                records = self.store.archive_responses(batch)  # durable before anything else
                load = self.store.apply_archived(records, batch)
            except BaseException as exc:  # surfaced by run(); archived responses replay on next open
                self.writer_error = exc
                self._halt("store-error")
                continue
            self.report.load.merge(load)
            self.report.fetched += sum(1 for r in batch if r.status == 200) - len(load.failed)
            self.report.failed.extend(load.failed)


def _error_body(exc: FetchError) -> str:
    import json

    return json.dumps({"errors": [{"code": exc.code or "not_found", "message": exc.message}], "data": None})
