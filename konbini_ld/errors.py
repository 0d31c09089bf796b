"""The one exception hierarchy of konbini-ld.

Every error the library raises on purpose is a :class:`KonbiniError`; each class
carries the process exit code the command line maps it to (SPEC §4)::

    KonbiniError (1)
    ├── UsageError (2)                 bad arguments: unknown query, missing parameter
    │   └── InvalidIdError (2)         not an audio id or TikTok music URL
    ├── InputError (1)                 one input item could not be ingested
    │   ├── ContextError (1)           a JSON-LD context outside the bundled ones
    │   └── ExpandError (1)            the document does not map to valid RDF
    ├── StoreError (1)                 the store cannot be opened, read or written
    │   ├── StoreDamagedError (1)      the graph's files do not read back (rebuild re-derives it)
    │   ├── StoreBusyError (1)         another process is writing the store
    │   ├── StaleViewError (1)         a read-only view a writer's compaction outran (open a fresh one)
    │   └── ArchiveDamageError (1)     the archive does not read back whole (rebuild refuses)
    ├── QueryError (1)                 a SPARQL query is malformed, unsafe or failed
    ├── ExportError (1)                an export could not be written
    │   └── NotInFormatError (1)       the data holds what the format cannot carry (XML 1.0)
    ├── ValidationError (1)            SHACL shapes could not be evaluated
    └── FetchError (1)                 an API request failed (url, status)
        ├── NotFoundError (1)          404: the audio does not exist (billed)
        ├── AuthError (3)              401 / 403: the key was refused
        └── CreditsExhaustedError (4)  402: no credits left; terminal for the run

Foreign exceptions (pyld, pyoxigraph, requests) are translated where they are
raised and chained with ``from``. Beside the tree, :class:`Terminated` is SIGTERM delivered
as a ``KeyboardInterrupt`` (an interruption, not an error: exit 143).
"""

from __future__ import annotations

TYPE_CHECKING = False  # (not typing's: the program imports this module before its signal handlers)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    E = TypeVar("E", bound=BaseException)
del TYPE_CHECKING

__all__ = [
    "ArchiveDamageError",
    "AuthError",
    "ContextError",
    "CreditsExhaustedError",
    "ExpandError",
    "ExportError",
    "FetchError",
    "InputError",
    "InvalidIdError",
    "KonbiniError",
    "NotFoundError",
    "NotInFormatError",
    "QueryError",
    "StaleViewError",
    "StoreBusyError",
    "StoreDamagedError",
    "StoreError",
    "UsageError",
    "ValidationError",
]


class KonbiniError(Exception):
    """Base class of every konbini-ld error."""

    exit_code: int = 1


class UsageError(KonbiniError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = 2


class InvalidIdError(UsageError):
    """A value is neither a decimal audio id nor a TikTok music URL."""


class InputError(KonbiniError):
    """One input item (file, JSON Lines line, API response) could not be ingested.

    :param message: what is wrong.
    :param source: the file name or request URL the item came from.
    :param line: the 1-based line for JSON Lines input, else ``None``.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line

    def __str__(self) -> str:
        where = self.source or ""
        if where and self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}" if where else self.message

    def located(self, source: str | None, line: int | None = None) -> InputError:
        """Return this error with its input location filled in (if it had none)."""
        if self.source is None:
            self.source = source
        if self.line is None:
            self.line = line
        return self


class ContextError(InputError):
    """A document names a JSON-LD context that is not bundled (nothing is fetched)."""


class ExpandError(InputError):
    """A document has values of the wrong type or does not expand to valid RDF."""


class StoreError(KonbiniError):
    """The store cannot be opened, read or written."""


class StoreDamagedError(StoreError):
    """The graph's files do not read back (damaged or deleted); ``rebuild`` re-derives it."""


class StoreBusyError(StoreError):
    """Another process is writing the store (it holds the engine's lock)."""


class StaleViewError(StoreError):
    """A read-only view whose files a writer's compaction removed: a fresh view reads on."""


class ArchiveDamageError(StoreError):
    """The archive does not read back whole; ``rebuild`` stops before changing anything.

    :ivar scan: what was read and the damaged spans (:class:`konbini_ld.store.log.archive.Scan`).
    """

    def __init__(self, scan: Any) -> None:
        spans = "; ".join(str(d) for d in scan.damage[:5])
        more = f" (and {len(scan.damage) - 5} more)" if len(scan.damage) > 5 else ""
        super().__init__(
            f"the archive is damaged: {spans}{more}. {scan.read} records read back, {scan.lost} lost. "
            "Nothing was changed; `rebuild --accept-damage` rebuilds from the readable records"
        )
        self.scan = scan


class QueryError(KonbiniError):
    """A SPARQL query is malformed, refused as unsafe, or failed to run.

    :param name: the named query or file, when there is one.
    :param line: 1-based line of a syntax error, when known.
    :param column: 1-based column of a syntax error, when known.
    """

    def __init__(
        self, message: str, *, name: str | None = None, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.name or ""
        if self.line is not None:
            where += f"{':' if where else 'line '}{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}" if where else self.message


class ExportError(KonbiniError):
    """An export could not be produced or written."""


class NotInFormatError(ExportError):
    """The data holds what the format asked for cannot carry (a character XML 1.0 has no room
    for, in RDF/XML or the SPARQL XML results): another format can."""


class ValidationError(KonbiniError):
    """SHACL validation could not run (bad shapes, engine failure)."""


class FetchError(KonbiniError):
    """An API request failed.

    :param url: the request URL (never carries the API key, which travels in a header).
    :param status: the HTTP status, or ``None`` for connection errors and timeouts.
    :param code: the API's error code (``not_found``, ``credits_exhausted``…), when given.
    :param answer: the answer received, when there was one (kept as evidence of what was billed).
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        code: str | None = None,
        credits_used: int | None = None,
        credits_remaining: int | None = None,
        answer: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status
        self.code = code
        self.credits_used = credits_used
        self.credits_remaining = credits_remaining
        self.answer = answer

    def __str__(self) -> str:
        status = f"HTTP {self.status}: " if self.status is not None else ""
        where = f" ({self.url})" if self.url else ""
        return f"{status}{self.message}{where}"


class NotFoundError(FetchError):
    """The API answered 404: the audio does not exist. Recorded so it is not bought again."""


class AuthError(FetchError):
    """The API refused the key (401 missing/invalid, 403 disabled/expired)."""

    exit_code = 3


class CreditsExhaustedError(FetchError):
    """The API answered 402: no credits left. Terminal for the run."""

    exit_code = 4


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C (the command line installs the handler): not an error of
    konbini-ld's, but a request to stop cleanly (exit 143)."""


#: the exit code of the first signal the program's handlers raised (130 Ctrl-C, 143 SIGTERM)
_FIRST_SIGNAL: list[int] = []


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: the signal becomes :class:`Terminated` wherever the program is."""
    if not _FIRST_SIGNAL:
        _FIRST_SIGNAL.append(143)
    raise Terminated()


def raise_interrupted(signum: int, frame: object) -> None:
    """A SIGINT handler: Python's own (a ``KeyboardInterrupt``), noting that it came first."""
    if not _FIRST_SIGNAL:
        _FIRST_SIGNAL.append(130)
    raise KeyboardInterrupt


def forget_signals() -> None:
    """A command begins (in a program that runs several): no signal has come yet."""
    _FIRST_SIGNAL.clear()


def signal_within(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM an exception was raised in place of, if any: Python wraps what a
    signal handler raises in some places (a class being made while a lazy import runs becomes
    ``RuntimeError: Error calling __set_name__``), and the signal is then its cause."""
    seen: set[int] = set()
    at: BaseException | None = exc
    while at is not None and id(at) not in seen:
        if isinstance(at, KeyboardInterrupt):
            return at
        seen.add(id(at))
        at = at.__cause__ or at.__context__
    return None


def raise_pending_signal() -> None:
    """Raise again a Ctrl-C or SIGTERM the handlers raised that never reached the program: Python
    swallows what a handler raises in some places (importlib's module-lock callback, a finaliser,
    printing "Exception ignored"), and the command would run on to its end as if asked nothing.

    :raises KeyboardInterrupt: (:class:`Terminated` for SIGTERM) one came and was swallowed.
    """
    code = first_signal_code()
    if code is not None:
        raise Terminated() if code == 143 else KeyboardInterrupt()


def first_signal_code() -> int | None:
    """The exit code the first signal the program's handlers raised stands for (``None``: none
    yet, or the handlers are not installed: a program of the caller's own)."""
    return _FIRST_SIGNAL[0] if _FIRST_SIGNAL else None


def settled(exc: E) -> E:
    """``exc``, and every exception chained to it, without the frames it passed through: an
    error kept as a value (in a report, handed to another thread) then holds nothing of the
    code that raised it. A frame it held would hold its callers' variables in a reference
    cycle, for the garbage collector to break later on whichever thread runs it, and some
    objects (pyoxigraph's query answers) may only be dropped by the thread that made them.

    >>> try:
    ...     raise QueryError("boom")
    ... except QueryError as caught:
    ...     kept = settled(caught)
    >>> kept.__traceback__ is None
    True
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        link = todo.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        link.__traceback__ = None
        todo += (link.__cause__, link.__context__)
    return exc
