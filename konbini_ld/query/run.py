"""Running a query: safety check, parameters bound as terms, native evaluation by the engine,
and a typed :class:`QueryResult` (terms, Python values, a DataFrame, or any result format).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import IO, TYPE_CHECKING, Any, cast

import pyoxigraph as ox

from ..engines.base import Dataset
from ..errors import QueryError, UsageError
from ..io.formats import Format
from ..vocab import PREFIXES, XSD
from .guard import check_safe_query
from .terms import to_term

if TYPE_CHECKING:
    import pandas

    from ..engines.base import Engine

__all__ = ["QueryResult", "Value", "python_value", "run_query"]

#: A result cell as a Python value.
Value = int | float | bool | str | Decimal | datetime | date | None

_INTEGER_TYPES = frozenset(XSD + t for t in (
    "integer", "int", "long", "short", "byte", "nonNegativeInteger", "positiveInteger", "nonPositiveInteger",
    "negativeInteger", "unsignedLong", "unsignedInt", "unsignedShort", "unsignedByte",
))


def python_value(term: Any) -> Value:
    """A term as the Python value it stands for.

    IRIs (and blank nodes, as ``_:label``) become ``str``; ``xsd:integer`` and its kin
    ``int``; ``xsd:decimal`` an exact ``Decimal``; ``xsd:double``/``xsd:float`` ``float``;
    ``xsd:boolean`` ``bool``; ``xsd:dateTime`` ``datetime`` (aware when the literal has a
    timezone); ``xsd:date`` ``date``; every other literal its lexical form.

    >>> python_value(ox.Literal("42", datatype=ox.NamedNode(XSD + "integer")))
    42
    >>> python_value(ox.Literal("2026-03-01T12:00:00Z", datatype=ox.NamedNode(XSD + "dateTime")))
    datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
    >>> python_value(ox.NamedNode("https://www.tiktok.com/@khaby.lame"))
    'https://www.tiktok.com/@khaby.lame'
    """
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        return term.value
    if isinstance(term, ox.BlankNode):
        return f"_:{term.value}"
    if not isinstance(term, ox.Literal):
        return str(term)
    datatype = term.datatype.value
    text = term.value
    try:
        if datatype in _INTEGER_TYPES:
            return int(text)
        if datatype == XSD + "decimal":
            return Decimal(text)
        if datatype in (XSD + "double", XSD + "float"):
            return float(text.replace("INF", "inf"))
        if datatype == XSD + "boolean":
            return text in ("true", "1")
        if datatype == XSD + "dateTime":
            return datetime.fromisoformat(text)
        if datatype == XSD + "date":
            return date.fromisoformat(text)
    except (ValueError, InvalidOperation):
        return text  # an ill-typed literal (never one konbini-ld wrote) stays text
    return text


#: the engine's answers of results dropped on another thread than the one that made them, kept
#: for that thread to drop (pyoxigraph's answers may only be dropped, or read, by their own
#: thread); keyed by a token each thread draws once (a thread's ident may be reused, not a token)
_GRAVEYARD: dict[int, list[Any]] = {}
_GRAVEYARD_LOCK = threading.Lock()
_LIVE: set[int] = set()  # the tokens of threads that have not ended
_THREAD = threading.local()
_TOKENS = itertools.count()


class _ThreadEnd:
    """Held by a thread's local data, which the thread itself lets go of as it ends: the answers
    left to it are dropped there, by it, and none is left to it afterwards."""

    def __init__(self, token: int) -> None:
        self.token = token

    def __del__(self) -> None:
        try:
            with _GRAVEYARD_LOCK:
                _LIVE.discard(self.token)
                own = _GRAVEYARD.pop(self.token, None)
            del own
        except Exception:  # noqa: BLE001 - (the interpreter shutting down: nothing is left to drop)
            pass


def _thread_token() -> int:
    end: _ThreadEnd | None = getattr(_THREAD, "end", None)
    if end is None:
        end = _THREAD.end = _ThreadEnd(next(_TOKENS))
        with _GRAVEYARD_LOCK:
            _LIVE.add(end.token)
    return end.token


def _bury_own(token: int) -> None:
    """Drop, on this thread, the answers of its results that were dropped elsewhere."""
    if _GRAVEYARD:
        with _GRAVEYARD_LOCK:
            own = _GRAVEYARD.pop(token, None)
        del own


class QueryResult:
    """The answer to a query, evaluated natively by the engine.

    ``SELECT`` answers are rows; ``ASK`` a :attr:`boolean`; ``CONSTRUCT``/``DESCRIBE``
    triples. Rows can be read as terms (:meth:`rows`), as Python values (:meth:`records`)
    or as a DataFrame (:meth:`to_pandas`), as many times as needed.

    :ivar kind: ``SELECT``, ``ASK`` or ``CONSTRUCT`` (also for ``DESCRIBE``).
    :ivar variables: projected variable names (``SELECT``).
    :ivar boolean: the answer of an ``ASK``.
    :ivar index: the column :meth:`to_pandas` indexes by default (a named query's ``# index:``).
    """

    def __init__(self, kind: str, variables: list[str] | None = None, native: Any = None,
                 boolean: bool | None = None, index: str | None = None) -> None:
        self.kind = kind
        self.index = index if index in (variables or []) else None
        self.variables: list[str] = variables or []
        self.boolean = boolean
        self._native = native
        self._seen: list[Any] = []  # rows or triples read so far (so results can be read again)
        self._source: Iterator[Any] | None = None
        self._done = kind == "ASK"  # (an ASK answer holds nothing of the engine to let go of)
        self._thread = _thread_token()
        _bury_own(self._thread)

    def __del__(self) -> None:
        # A result dropped unread on another thread (the garbage collector breaks a cycle holding
        # it on whichever thread allocates) leaves the engine's answer to its own thread.
        # (A thread that has ended cannot take it back: pyoxigraph then reports the answer it
        # cannot free, as it would have.)
        try:
            if not self._done and _thread_token() != self._thread:
                with _GRAVEYARD_LOCK:
                    if self._thread in _LIVE:
                        _GRAVEYARD.setdefault(self._thread, []).extend((self._native, self._source))
                        self._native = self._source = None
        except Exception:  # noqa: BLE001 - (the interpreter shutting down: nothing is left to keep)
            pass

    def _own_thread(self) -> None:
        """Reading the engine's answer from another thread than the one that made it would end
        the process (pyoxigraph's answers may only be used by their own thread)."""
        if not self._done and self._native is not None and _thread_token() != self._thread:
            raise QueryError("a query result is read on the thread that ran the query, or read in full there "
                             "first (records(), rows() to the end, detach()); after that any thread may read it")

    @classmethod
    def from_rows(cls, variables: list[str], rows: list[tuple[Any, ...]], index: str | None = None) -> QueryResult:
        """A ``SELECT`` result made of rows of pyoxigraph terms (``None`` where unbound)."""
        result = cls("SELECT", variables, rows, index=index)
        result._source = iter(())
        result._seen, result._done = rows, True
        return result

    def __repr__(self) -> str:
        return f"<QueryResult {self.kind} {self.variables if self.kind == 'SELECT' else ''}>".replace(" >", ">")

    def _require(self, kind: str) -> None:
        if self.kind != kind:
            raise QueryError(f"a {self.kind} query has no {'rows' if kind == 'SELECT' else 'triples'}")

    def _items(self) -> Iterator[Any]:
        """Rows (or triples), read from the engine as they are asked for and kept for another read."""
        self._own_thread()
        if self._source is None:
            variables = self.variables
            # (the engine's iterator is held by the source alone, so detach() lets go of it)
            self._source = (tuple(s[v] for v in variables) for s in iter(self._native)) \
                if self.kind == "SELECT" else iter(self._native)
        i = 0
        while True:
            if i < len(self._seen):
                yield self._seen[i]
                i += 1
                continue
            if self._done:
                return
            self._own_thread()  # (a generator made on one thread may be advanced on another)
            try:
                item = next(self._source)
            except StopIteration:
                self._release()
                return
            self._seen.append(item)

    def _release(self) -> None:
        """(Read in full.) Let go of the engine's result: its objects may only be dropped by the
        thread that made them, and a result kept past that thread (or caught in a reference
        cycle the garbage collector breaks on another one) must hold none."""
        self._done = True
        self._native = None
        self._source = iter(())

    def detach(self) -> None:
        """Read the rest of the answer now and let go of the engine's result (a store being
        rewritten in place, ``Store.repack``, must have no reader left on its old files)."""
        if self.kind == "ASK":
            return
        for _ in self._items():
            pass
        self._release()

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """``SELECT`` rows as tuples of pyoxigraph terms (``None`` where unbound), read lazily."""
        self._require("SELECT")
        return self._items()

    def records(self) -> list[dict[str, Value]]:
        """``SELECT`` rows as dicts of Python values (see :func:`python_value`; unbound is ``None``)."""
        return [dict(zip(self.variables, map(python_value, row))) for row in self.rows()]

    def to_pandas(self, *, index: str | bool | None = None) -> pandas.DataFrame:
        """``SELECT`` rows as a :class:`pandas.DataFrame` with typed columns.

        Integers become ``Int64`` (nullable), doubles ``float64``, booleans ``boolean``,
        times ``datetime64`` (UTC when the values carry a timezone), text and IRIs
        ``string``; exact decimals stay ``Decimal`` objects. Needs the ``pandas`` extra.

        :param index: a column to use as the index (a time column gives a time series); by
            default the query's own (``history`` is indexed by ``time``); ``False`` for none.
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - the extra is installed for tests
            raise UsageError("to_pandas needs pandas: pip install 'konbini-ld[pandas]'") from exc
        records = self.records()
        frame = pd.DataFrame.from_records(records, columns=self.variables)
        for column in self.variables:
            values = [r[column] for r in records if r[column] is not None]
            kinds = {type(v) for v in values}
            if not kinds:
                frame[column] = frame[column].astype("string")
            elif kinds == {bool}:
                frame[column] = frame[column].astype("boolean")
            elif kinds == {int}:
                frame[column] = frame[column].astype("Int64")
            elif kinds <= {int, float}:
                frame[column] = frame[column].astype("float64")
            elif kinds == {datetime}:
                aware = any(isinstance(v, datetime) and v.tzinfo is not None for v in values)
                frame[column] = pd.to_datetime(frame[column], utc=aware, format="ISO8601")
            elif kinds == {str}:
                frame[column] = frame[column].astype("string")
        by: str | None = self.index if index is None or index is True else index or None
        if by is not None:
            frame = frame.set_index(by)
        return frame

    def triples(self) -> Iterator[ox.Triple]:
        """``CONSTRUCT``/``DESCRIBE`` triples, read lazily."""
        self._require("CONSTRUCT")
        return self._items()

    def write(self, output: IO[bytes], fmt: Format | str = Format.TABLE, *, inline_context: bool = False,
              escape_formulas: bool = False) -> None:
        """Serialise the result to a binary stream in ``fmt`` (a :class:`Format` or its name).

        :param inline_context: JSON-LD: embed the API's contexts instead of naming their URLs.
        :param escape_formulas: CSV and TSV for spreadsheets: a value that would be evaluated as a
            formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, and is
            not a number) gets a leading ``'``. Off, every value is written exactly.
        :raises UsageError: the format cannot hold this kind of result.
        :raises NotInFormatError: the result holds a character XML 1.0 cannot carry and ``fmt`` is
            ``xml`` or ``rdfxml`` (what was written before it stands; the rest is not written).
        """
        from ..io.xmlsafe import xml_guarded

        chosen = Format.TURTLE if self.kind == "CONSTRUCT" and fmt in (Format.TABLE, "table") else Format.lookup(fmt)
        with xml_guarded(output, chosen) as guarded:
            self._write(guarded, fmt, inline_context=inline_context, escape_formulas=escape_formulas)

    def _write(self, output: IO[bytes], fmt: Format | str, *, inline_context: bool = False,
               escape_formulas: bool = False) -> None:
        if self.kind == "CONSTRUCT":
            graph_format = Format.TURTLE if fmt in (Format.TABLE, "table") else Format.lookup(fmt)
            self._write_graph(output, graph_format, inline_context)
            return
        fmt = Format.lookup(fmt)
        if fmt is Format.TABLE:
            from ..io.table import render_table

            text = ("true" if self.boolean else "false") + "\n" if self.kind == "ASK" else \
                render_table(self.variables, self.rows())
            output.write(text.encode("utf-8"))
            return
        if not fmt.can_carry("results"):
            raise UsageError(f"a {self.kind} result is a table: use {', '.join(Format.names('results'))} "
                             f"or table, not {fmt.label}")
        if fmt is Format.PARQUET:
            if self.kind == "ASK":
                raise UsageError("an ASK answer is one boolean: use json, xml, csv or tsv")
            self.to_pandas().to_parquet(output, index=False)
            return
        if self.kind == "ASK":
            if fmt in (Format.CSV, Format.TSV):
                output.write(b"true\n" if self.boolean else b"false\n")
                return
            self._native.serialize(output, fmt.ox_format())
            return
        if escape_formulas and fmt is Format.CSV:
            from ..io.results import write_csv

            write_csv(self.variables, self._stream_rows(), output)
            return
        if escape_formulas and fmt is Format.TSV:
            from ..io.results import TsvFormulaEscaper

            escaper = TsvFormulaEscaper(output)
            self._write(escaper, fmt)  # type: ignore[arg-type]
            escaper.close()
            return
        if self._source is None and hasattr(self._native, "serialize"):
            self._own_thread()
            self._native.serialize(output, fmt.ox_format())  # streamed straight from the engine
            self._release()
            return
        from ..io.results import write_solutions

        output.write(write_solutions(self.variables, list(self.rows()), fmt.label))

    def _stream_rows(self) -> Iterator[tuple[Any, ...]]:
        """The rows, streamed from the engine without keeping them when none was read yet."""
        if self._source is None and self._native is not None and not self._seen:
            self._own_thread()
            native, variables = self._native, self.variables
            self._release()  # (read once: nothing is kept, and the engine's result goes once read)
            return (tuple(s[v] for v in variables) for s in native)
        return self.rows()

    def _write_graph(self, output: IO[bytes], fmt: Format, inline_context: bool = False) -> None:
        if fmt is Format.JSONLD:
            from ..io.export import write_jsonld_triples

            write_jsonld_triples(self.triples(), output, inline_context=inline_context)
            return
        if not fmt.can_carry("graph") or fmt.ox_format() is None:
            raise UsageError(f"a CONSTRUCT/DESCRIBE result is RDF: use {', '.join(Format.names('graph'))}, "
                             f"not {fmt.label}")
        from ..io.export import CanonicalDoubles

        from ..io.xmlsafe import writable_in

        canonical = cast(IO[bytes], CanonicalDoubles(output))
        ox.serialize(writable_in(self.triples(), fmt), canonical, fmt.ox_format(), prefixes=PREFIXES)
        canonical.flush()


def run_query(engine: Engine, sparql: str, params: Mapping[str, Any] | None = None, *,
              name: str | None = None, dataset: Dataset | None = None, index: str | None = None,
              base_iri: str | None = None) -> QueryResult:
    """Check ``sparql`` is safe, bind ``params`` as terms, and let the engine evaluate it natively.

    :raises QueryError: refused, malformed, or failed.
    """
    check_safe_query(sparql, name=name)
    # (evaluated by another function: the check may leave reference cycles of the SPARQL parser's
    # exceptions, whose frames reach this one; an engine's answer held among this frame's variables
    # would then be dropped by the garbage collector on whichever thread it runs, which pyoxigraph
    # refuses for a query's answer)
    return _evaluate(engine, sparql, params, name=name, dataset=dataset, index=index, base_iri=base_iri)


def _evaluate(engine: Engine, sparql: str, params: Mapping[str, Any] | None, *, name: str | None,
              dataset: Dataset | None, index: str | None, base_iri: str | None) -> QueryResult:
    substitutions = {k.lstrip("?$"): to_term(v) for k, v in (params or {}).items()}
    try:
        options: dict[str, Any] = {"substitutions": substitutions}
        if dataset is not None:
            options["dataset"] = dataset
        if base_iri:
            options["base_iri"] = base_iri
        native = engine.query(sparql, **options)
    except QueryError as exc:
        if exc.name is None:
            exc.name = name
        raise
    if isinstance(native, ox.QueryBoolean):
        return QueryResult("ASK", [], native, bool(native))
    if isinstance(native, ox.QuerySolutions):
        return QueryResult("SELECT", [v.value for v in native.variables], native, index=index)
    return QueryResult("CONSTRUCT", [], native)
