"""From a raw response to an :class:`~konbini_ld.model.Observation`: the mapping stage.

The pipeline for one response is::

    raw text ──envelope──▶ API objects ──normalize──▶ JSON-LD ──pyld to_rdf──▶ grouped statements

:func:`prepare` runs it and never raises for bad input: the returned observation
carries either the statements or the :class:`~konbini_ld.errors.InputError`.
Expansion goes through shape templates (:mod:`.templates`) unless told to run plain
pyld; :class:`PreparePool` prepares batches in worker processes on machines with the
cores for it. Both are switchable, and the differential test holds them to plain pyld.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..errors import ExpandError, InputError, KonbiniError, UsageError, settled
from ..lexical import observation_time
from ..model import Observation, Response
from ..units import check_not_future
from ..vocab import AS, KS
from .envelope import MAX_DOCUMENT_BYTES, parse_documents
from .grouping import group_lines, merge_groups
from .normalize import check_iri, could_hold_bad_text, normalize
from .templates import default_cache
from .to_rdf import expand, to_lines

__all__ = ["Abandoned", "PreparePool", "Prepared", "body_sha256", "prepare"]

log = logging.getLogger(__name__)

_DURATION_NT = f"<{AS}duration>"
#: derived from ``duration`` (:mod:`.normalize`): a duration with no fixed number of seconds has
#: none, and the value an older duration gave must not stay beside it
_SECONDS_NT = f"<{KS}durationSeconds>"


def _seconds_after_durations(groups: dict[tuple[str, str], list[str]]) -> dict[tuple[str, str], list[str]]:
    """``groups`` with a group of seconds, empty where it has none, right after each duration's:
    seconds derived from a duration, and none now (a month has no fixed number of seconds) means
    none is kept, not the value an older duration gave."""
    out: dict[tuple[str, str], list[str]] = {}
    for key, lines in groups.items():
        held = out.get(key)
        if held is None:
            out[key] = lines
        else:  # (an empty group of seconds made for a duration before it)
            held.extend(lines)
        if key[1] == _DURATION_NT:
            out.setdefault((key[0], _SECONDS_NT), [])
    return out


def prepare(response: Response, *, shape_cache: bool = True) -> Observation:
    """Run the whole pipeline on one response. Bad input is returned, not raised.

    :param shape_cache: re-use pyld's expansion for documents shaped like earlier ones
        (:mod:`konbini_ld.shapes_cache`); ``False`` runs plain pyld on every document.
    """
    out = Observation(response, credits_used=response.credits_used, credits_remaining=response.credits_remaining,
                      body_sha256=body_sha256(response.body))
    response.observed_at = response.observed  # now, when nobody said when
    if response.status == 404 or response.note is not None:
        return out  # nothing to map (not found, or kept as evidence), but billed: its credits count
    try:
        if len(response.body) > MAX_DOCUMENT_BYTES:
            raise InputError(f"response is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB; refusing it")
        parsed = parse_documents(response.body)
        check_text = could_hold_bad_text(response.body)
        response.observed_at = observation_time(response.observed)  # the one spelling of times
        if response.key is None and parsed.source_url is not None:  # (a fetched answer's source is its request)
            out.source_url = recorded_url(parsed.source_url)
        if parsed.observed_at is not None and not response.observed_given:
            response.observed_at = parsed.observed_at  # the recorded exchange says when (archived so)
            response.observed_given = True
        try:
            check_not_future(response.observed_at)
        except UsageError as exc:  # one wrong time would freeze every entity it describes
            raise InputError(f"{exc}: a wrong --observed-at or Date header? Load it again with the right "
                             "--observed-at") from None
        out.credits_used = parsed.credits_used if response.credits_used is None else response.credits_used
        out.credits_remaining = (
            parsed.credits_remaining if response.credits_remaining is None else response.credits_remaining
        )
        if not parsed.documents:
            raise InputError("no documents in input")
        for document in parsed.documents:
            cursor = document.get("nextCursor")
            if isinstance(cursor, (str, int)) and not isinstance(cursor, bool):
                out.next_cursor = str(cursor)
            normalized = normalize(document, check_text=check_text)
            if shape_cache:
                groups = default_cache().groups(normalized.document)
            else:
                groups = group_lines(to_lines(expand(normalized.document)))
            # (groups are made for this document alone: the first document's are taken as they are)
            durations = [entity for entity, p in groups if p == _DURATION_NT]
            if not out.groups:
                out.groups = groups
            else:
                merge_groups(out.groups, groups)
            if any((entity, _SECONDS_NT) not in out.groups for entity in durations):
                out.groups = _seconds_after_durations(out.groups)
            for key, iri in normalized.unknown_keys.items():
                out.unknown_keys.setdefault(key, iri)
            out.warnings.extend(f"{response.where}: {warning}" for warning in normalized.warnings)
        out.count = sum(map(len, out.groups.values()))
    except InputError as exc:
        out.groups = {}
        out.error = settled(exc.located(response.source, response.line))  # (kept: without its frames)
    except KonbiniError as exc:  # pragma: no cover - defensive: every input failure is an InputError
        out.groups = {}
        out.error = ExpandError(str(exc), source=response.source, line=response.line)
    except RecursionError:
        out.groups = {}
        out.error = ExpandError("document is nested too deeply", source=response.source, line=response.line)
    except Exception as exc:  # a mapping defect must cost one response, never the run or the store
        log.debug("mapping %s failed", response.where, exc_info=True)
        out.groups = {}
        out.error = ExpandError(
            f"could not be mapped ({type(exc).__name__}: {exc}); it is kept in the archive for `rebuild`",
            source=response.source, line=response.line,
        )
    return out


def recorded_url(url: str) -> str:
    """A recorded exchange's request URL as provenance keeps it: an http(s) IRI without
    credentials (a user:password part, or query parameters named like secrets).

    :raises InputError: it is not one (it would be the IRI of the observation's source).
    """
    from ..urls import redact

    shown = redact(url)
    if (not shown.lower().startswith(("http://", "https://")) or check_iri(shown) is not None
            or not _valid_iri(shown)):
        raise InputError(f"the recorded request URL {shown[:200]!r} is not an http(s) IRI")
    return shown


def _valid_iri(iri: str) -> bool:
    import pyoxigraph as ox

    try:
        ox.NamedNode(iri)
    except ValueError:
        return False
    return True


def body_sha256(body: str) -> str:
    """Hex SHA-256 of a response body (its identity in provenance)."""
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()


def _start_worker(templates: dict[Any, Any], parent: int) -> None:
    """A preparing process: the templates its parent learned; Ctrl-C and SIGTERM sent to the
    whole process group are its parent's to handle (the parent decides what is prepared still,
    and ends its workers), and it ends with its parent."""
    import signal

    from ..engines.sandbox import end_with_parent
    from .templates import default_cache

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if end_with_parent(parent):
        os._exit(0)
    default_cache().seed(templates)


def _prepare_all(batch: list[Response], templates: bool) -> list[Observation]:
    return [prepare(r, shape_cache=templates) for r in batch]


#: What a worker sends back for one response: its observation without the response (its caller
#: has it) and without its groups; when the response was observed, as :func:`prepare` set it;
#: and the groups as their keys, their sizes and every line in one UTF-8 text.
_Shipped = tuple[Observation, "str | None", bool, list[tuple[str, str]], list[int], bytes]

#: Lines joined at a time on their way to a worker's answer (:func:`_lines_bytes`).
_JOIN_LINES = 2048


def _lines_bytes(groups: dict[tuple[str, str], list[str]]) -> bytes:
    """Every line of ``groups`` as one UTF-8 text, holding about twice its size while it runs.

    Joined whole as a string first, one character outside Latin-1 (an emoji in a caption) would
    make Python hold every character of it in four bytes: 120 MB for the 30 MB of a page of
    8,000 videos. Joined a few thousand lines at a time, only those few are ever wide.
    """
    lines = [line for group in groups.values() for line in group]
    return b"".join("".join(lines[i:i + _JOIN_LINES]).encode("utf-8", "surrogatepass")
                    for i in range(0, len(lines), _JOIN_LINES))


def _prepare_shipped(batch: list[Response], templates: bool,
                     summarise: Callable[[dict[tuple[str, str], list[str]]], Any] | None = None) -> list[_Shipped]:
    """(In a worker.) :func:`_prepare_all`, packed for the way back: one text crosses the pipe
    where a list of strings would be thousands of objects to rebuild on the other side, and
    the responses' text does not cross it again. ``summarise`` is run on each observation's
    groups (its result is the observation's ``summary``)."""
    out: list[_Shipped] = []
    for response in batch:
        observation = prepare(response, shape_cache=templates)
        groups = observation.groups
        if summarise is not None and observation.ok:
            observation.summary = summarise(groups)
        observation.groups = {}
        observation.response = None  # type: ignore[assignment]  # (the caller's is put back)
        out.append((observation, response.observed_at, response.observed_given, list(groups),
                    [len(lines) for lines in groups.values()], _lines_bytes(groups)))
    return out


def _unship(response: Response, shipped: _Shipped) -> Observation:
    """The observation :func:`_prepare_shipped` packed, back on ``response`` (the caller's own)."""
    observation, observed_at, observed_given, keys, sizes, text = shipped
    response.observed_at, response.observed_given = observed_at, observed_given
    observation.response = response
    # (decoded as it is read: decoded whole, one emoji would make it four bytes a character)
    lines = io.TextIOWrapper(io.BytesIO(text), encoding="utf-8", errors="surrogatepass", newline="\n").readlines()
    if len(lines) != sum(sizes):  # (a line break inside a line: N-Triples escapes them, so never)
        raise ValueError("a prepared line holds a line break")
    groups: dict[tuple[str, str], list[str]] = {}
    at = 0
    for key, size in zip(keys, sizes, strict=True):
        groups[key] = lines[at:at + size]
        at += size
    observation.groups = groups
    return observation


#: Response text below which a batch is prepared in line (moving it to a worker costs more).
_POOLED_BYTES = 128 * 1024


class Abandoned(Exception):
    """A batch's preparation was given up (its caller's time ran out while a worker held it)."""


class Prepared:
    """A batch being prepared in worker processes: :meth:`get` waits for its observations (a
    worker that died, whatever killed it, costs time, never responses: its share is prepared
    in line)."""

    def __init__(self, pool: PreparePool, parts: list[tuple[list[Response], Any]]) -> None:
        self.pool = pool
        self.parts = parts

    def get(self, give_up: Callable[[], bool] | None = None) -> list[Observation]:
        """The observations, in order.

        :param give_up: asked every quarter second while a worker holds a part (a worker that
            was stopped, SIGSTOP, or hangs): when it says so, :class:`Abandoned` is raised.
        """
        from concurrent.futures import TimeoutError as Waited
        from concurrent.futures.process import BrokenProcessPool

        out: list[Observation] = []
        for batch, future in self.parts:
            while True:
                try:
                    shipped = future.result(timeout=0.25 if give_up is not None else None)
                    out.extend([_unship(response, one) for response, one in zip(batch, shipped, strict=True)])
                except Waited:
                    if give_up is not None and give_up():
                        raise Abandoned from None
                    continue
                except Exception as exc:  # (a worker killed, or its answer lost on the way back)
                    log.debug("a preparing process failed; its part is prepared in line", exc_info=True)
                    if isinstance(exc, BrokenProcessPool):
                        self.pool.broken()
                    out.extend(_prepare_all(batch, self.pool.templates))
                break
        return out


class PreparePool:
    """Worker processes preparing batches one ahead of the writer; started on the second batch,
    so small inputs never pay for them.

    :param workers: processes (``None``: one per CPU beyond two; ``0``: every batch in line).
    :param eager: every batch to the workers, however small (answers arriving a few at a
        time, as ``fetch`` applies them).
    """

    def __init__(self, workers: int | None, *, templates: bool = True, eager: bool = False,
                 summarise: Callable[[dict[tuple[str, str], list[str]]], Any] | None = None) -> None:
        self.templates = templates
        #: worked out in the workers for each observation they prepare (its ``summary``): a
        #: module-level function of its groups, sent to them by name
        self.summarise = summarise
        # one core plans and writes, one runs Oxigraph's bulk loads: preparing in other processes
        # only pays beyond that (on two cores, moving documents between processes costs what it saves)
        self.workers = max(0, (os.cpu_count() or 1) - 2) if workers is None else workers
        self.eager = eager
        self.pool: Any = None
        self.batches = 0

    def start(self) -> None:
        """Start the workers now rather than on the first batch sent to them."""
        if self.workers > 0:
            self._pool()

    def _pool(self) -> Any:
        """The executor, its processes started: from the main thread, with Ctrl-C ignored, which
        they keep, so a terminal's Ctrl-C reaching the whole process group finds none still
        starting (importing, unpickling) to print a traceback."""
        if self.pool is not None:
            return self.pool
        import multiprocessing as mp
        import signal
        import threading
        from concurrent.futures import ProcessPoolExecutor

        from .templates import default_cache

        main = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            # workers start with the templates this process learned so far
            self.pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                            initializer=_start_worker,
                                            initargs=(default_cache().snapshot(), os.getpid()))
            for _ in range(self.workers):  # (a process is started for each task submitted, up to the number)
                self.pool.submit(int)
        except Exception:  # (processes that cannot be started: everything is prepared in line)
            log.debug("preparing processes could not be started", exc_info=True)
            self.broken()
        finally:
            if main:  # (a handler not set from Python reads as None: Python's own is put back)
                signal.signal(signal.SIGINT, before if before is not None else signal.default_int_handler)
        return self.pool

    def in_line(self, batch: list[Response]) -> bool:
        """Whether :meth:`prepare` would prepare ``batch`` in this process (sent next)."""
        return self.workers <= 0 or not batch or (
            not self.eager and (self.batches < 1 or sum(len(r.body) for r in batch) < _POOLED_BYTES))

    def prepare(self, batch: list[Response]) -> list[Observation] | Prepared:
        """Observations of ``batch``: a list, or (from the workers) a :class:`Prepared` to ``get()``."""
        in_line = self.in_line(batch)
        self.batches += 1
        if in_line:
            return _prepare_all(batch, self.templates)
        pool = self._pool()
        if pool is None:
            return _prepare_all(batch, self.templates)
        step = max(1, -(-len(batch) // (self.workers * 4)))
        parts = [batch[i:i + step] for i in range(0, len(batch), step)]
        try:
            return Prepared(self, [(part, pool.submit(_prepare_shipped, part, self.templates, self.summarise))
                                   for part in parts])
        except RuntimeError:  # (the pool broke: a worker was killed)
            self.broken()
            return _prepare_all(batch, self.templates)

    def broken(self) -> None:
        """A worker died: prepare in line from now on."""
        self.close()
        self.workers = 0

    def close(self, *, wait: bool = False) -> None:
        """End the workers: asked to finish (``wait``: given two seconds for it), then killed, so that
        none is left behind, not even one that was stopped (SIGSTOP) or hangs."""
        if self.pool is None:
            return
        pool, self.pool = self.pool, None
        # (the executor's own processes: it has no public way to end one that will not finish)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        until = time.monotonic() + (2.0 if wait else 0.0)
        for process in processes:
            process.join(max(0.0, until - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
