"""Text from the graph or the API made safe for where it is shown: a terminal, one line of a
message, a spreadsheet cell.

Values come from the API (and from any file given to ``load``): they can hold terminal escape
sequences, bidirectional overrides or a spreadsheet formula. What is shown on a terminal never
carries a control character; a CSV or TSV cell meant for a spreadsheet never starts a formula.
"""

from __future__ import annotations

import re

__all__ = ["FORMULA_TRIGGERS", "escape_formula", "one_line", "printable", "starts_formula"]

#: C0 controls, DEL, C1 controls; the bidirectional embeddings, overrides, isolates and marks
#: (U+061C, U+200E/F, U+202A-U+202E, U+2066-U+2069), which reorder what a terminal shows; the
#: line and paragraph separators (U+2028/U+2029), which some terminals break lines on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def printable(text: str, *, newlines: str | None = " ") -> str:
    """``text`` with every control character made visible as an escape (``\\x1b``, ``\\u202e``),
    so that it cannot move the cursor, recolour, retitle or reorder a terminal.

    Tabs, line feeds and carriage returns become ``newlines`` (a space) unless it is ``None``.

    >>> printable("red \\x1b[31mtext\\x1b[0m")
    'red \\\\x1b[31mtext\\\\x1b[0m'
    >>> printable("abc\\u202edef\\nnext")
    'abc\\\\u202edef next'
    """
    if newlines is not None:
        text = text.replace("\r\n", newlines).replace("\n", newlines).replace("\r", newlines).replace("\t", newlines)
    return _CONTROL.sub(_escape, text)


def one_line(text: str) -> str:
    """A message as one printable line: line breaks (and the indentation after them) become
    one space; other control characters are made visible.

    >>> one_line("Bad syntax at line 1:\\n    not rdf\\n")
    'Bad syntax at line 1: not rdf'
    """
    return printable(re.sub(r"\s*[\r\n]+\s*", " ", text).strip())


#: What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"): ``=``, ``+``,
#: ``-``, ``@``, a tab or a carriage return at its start.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def starts_formula(value: str) -> bool:
    """Whether a spreadsheet would evaluate ``value`` as a formula: it starts with one of
    :data:`FORMULA_TRIGGERS` and is not a plain number (``-5``, ``+1.5e3`` stay numbers).

    >>> starts_formula("=HYPERLINK(\\"http://x\\")"), starts_formula("-5"), starts_formula("-1+cmd")
    (True, False, True)
    """
    return value.startswith(FORMULA_TRIGGERS) and not _NUMBER.fullmatch(value)


def escape_formula(value: str) -> str:
    """``value`` with a ``'`` in front when a spreadsheet would evaluate it (OWASP's advice);
    anything else unchanged.

    >>> escape_formula("=1+1"), escape_formula("@SUM(A1)"), escape_formula("plain"), escape_formula("-3.5")
    ("'=1+1", "'@SUM(A1)", 'plain', '-3.5')
    """
    return "'" + value if starts_formula(value) else value
