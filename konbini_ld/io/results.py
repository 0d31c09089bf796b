"""Writing query results in the SPARQL results formats: with a row cap (for ``serve``), and as
CSV and TSV that a spreadsheet opens without evaluating a formula a value carries.

Oxigraph's own serialisers write whole results; an endpoint must stop at its
result-size cap, so these writers take an already capped list of rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox

from .formats import Format
from .text import escape_formula, starts_formula
from .xmlsafe import check_xml

__all__ = ["TsvFormulaEscaper", "write_boolean", "write_csv", "write_solutions"]

_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


def _json_term(term: Any) -> dict[str, str]:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
    elif term.datatype.value != _XSD_STRING:
        out["datatype"] = term.datatype.value
    return out


def _xml_term(term: Any) -> str:
    if isinstance(term, ox.NamedNode):
        return f"<uri>{escape(term.value)}</uri>"
    if isinstance(term, ox.BlankNode):
        return f"<bnode>{escape(term.value)}</bnode>"
    if term.language:
        return f"<literal xml:lang={quoteattr(term.language)}>{escape(term.value)}</literal>"
    if term.datatype.value != _XSD_STRING:
        return f"<literal datatype={quoteattr(term.datatype.value)}>{escape(term.value)}</literal>"
    return f"<literal>{escape(term.value)}</literal>"


def write_solutions(variables: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str) -> bytes:
    """Serialise SELECT rows (pyoxigraph terms, ``None`` when unbound) as ``json``, ``xml``, ``csv`` or ``tsv``.

    :raises NotInFormatError: ``xml`` of rows holding a character XML 1.0 cannot carry.
    """
    if fmt == "json":
        bindings = [{v: _json_term(t) for v, t in zip(variables, row) if t is not None} for row in rows]
        return json.dumps({"head": {"vars": list(variables)}, "results": {"bindings": bindings}},
                          ensure_ascii=False).encode("utf-8")
    if fmt == "xml":
        parts = ['<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#">\n<head>']
        parts += [f"<variable name={quoteattr(v)}/>" for v in variables]
        parts.append("</head>\n<results>")
        for row in rows:
            parts.append("<result>")
            parts += [f"<binding name={quoteattr(v)}>{_xml_term(t)}</binding>" for v, t in zip(variables, row) if t is not None]
            parts.append("</result>")
        parts.append("</results>\n</sparql>\n")
        return check_xml("".join(parts).encode("utf-8"), Format.XML)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(variables)
        for row in rows:
            writer.writerow(["" if t is None else t.value for t in row])
        return buf.getvalue().encode("utf-8")
    if fmt == "tsv":
        lines = ["\t".join(f"?{v}" for v in variables)]
        lines += ["\t".join("" if t is None else str(t) for t in row) for row in rows]
        return ("\n".join(lines) + "\n").encode("utf-8")
    raise ValueError(fmt)


def _csv_cell(text: str, escape_formulas: bool) -> str:
    if escape_formulas:
        text = escape_formula(text)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_value(term: Any) -> str:
    if term is None:
        return ""
    if isinstance(term, ox.BlankNode):
        return f"_:{term.value}"
    return str(term.value)


def write_csv(variables: Sequence[str], rows: Iterable[Sequence[Any]], out: IO[bytes], *,
              escape_formulas: bool = True) -> None:
    """SELECT rows as SPARQL 1.1 CSV, streamed (what Oxigraph writes, byte for byte), with every
    cell a spreadsheet would evaluate as a formula (``=HYPERLINK(…)``, ``@SUM(…)``, ``-1+1``) given a
    leading ``'`` when ``escape_formulas`` (OWASP's advice against CSV injection)."""
    out.write((",".join(_csv_cell(v, False) for v in variables) + "\r\n").encode("utf-8"))
    lines: list[str] = []
    for row in rows:
        lines.append(",".join(_csv_cell(_csv_value(t), escape_formulas) for t in row) + "\r\n")
        if len(lines) >= 1000:
            out.write("".join(lines).encode("utf-8"))
            lines = []
    out.write("".join(lines).encode("utf-8"))


class TsvFormulaEscaper:
    """A binary stream that passes SPARQL 1.1 TSV through to ``out``, giving a ``'`` to every cell a
    spreadsheet would evaluate: a literal whose text starts a formula (``"=1+1"`` → ``"'=1+1"``);
    numbers, IRIs and blank nodes never do. TSV keeps one row on one line (line breaks and tabs in
    values are escaped), so each line is read as it comes."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self._pending = b""
        self._header = True

    def write(self, data: bytes) -> int:
        self._pending += bytes(data)
        if b"\n" in self._pending:
            complete, _, self._pending = self._pending.rpartition(b"\n")
            self.out.write(b"".join(self._line(line) + b"\n" for line in complete.split(b"\n")))
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        if self._pending:
            self.out.write(self._line(self._pending))
            self._pending = b""

    def _line(self, line: bytes) -> bytes:
        if self._header:
            self._header = False
            return line
        return b"\t".join(_tsv_cell(cell) for cell in line.split(b"\t"))


def _tsv_cell(cell: bytes) -> bytes:
    if cell.startswith(b'"'):
        end = cell.rfind(b'"')
        text = cell[1:end].decode("utf-8", "replace") if end > 0 else ""
        return b"\"'" + cell[1:] if starts_formula(text) else cell
    if starts_formula(cell.decode("utf-8", "replace")):
        return b"'" + cell
    return cell


def write_boolean(value: bool, fmt: str) -> bytes:
    """Serialise an ASK answer."""
    if fmt == "json":
        return json.dumps({"head": {}, "boolean": value}).encode()
    if fmt == "xml":
        return (
            '<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#">'
            f"<head/><boolean>{'true' if value else 'false'}</boolean></sparql>\n"
        ).encode()
    return b"true\n" if value else b"false\n"
