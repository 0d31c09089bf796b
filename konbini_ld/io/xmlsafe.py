"""What XML 1.0 cannot carry as it is: RDF/XML and the SPARQL XML results write a carriage return
as a character reference, and refuse the characters XML 1.0 has no room for rather than write them.

JSON and RDF hold any character but the surrogates. XML 1.0 has no room, even as a character
reference, for the C0 controls but tab, line feed and carriage return, nor for U+FFFE and
U+FFFF: Oxigraph's serialisers write them as they are, and every XML parser then refuses the
whole document. And a parser reads a carriage return written as it is as a line feed (a caption
typed on Windows, ``\r\n``, came back as ``\n\n``): written ``&#13;``, it is read back exactly.
:class:`XmlChecked` stands between a serialiser and its output: the bytes that would make the
document unreadable never reach it, and the error names the character, what comes before it and
the formats that carry it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, cast

import pyoxigraph as ox

from ..errors import NotInFormatError
from .formats import Format

__all__ = ["XML_FORMATS", "XmlChecked", "check_xml", "rdfxml_writable", "writable_in", "xml_guarded"]

#: The formats written as XML 1.0.
XML_FORMATS = frozenset({Format.XML, Format.RDFXML})

#: (as UTF-8 bytes: U+FFFE and U+FFFF are EF BF BE and EF BF BF)
_NOT_XML = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|\xef\xbf[\xbe\xbf]")
_OTHERS = {Format.XML: "json, csv or tsv", Format.RDFXML: "turtle, nt, nq, trig or jsonld"}


def check_xml(data: bytes, fmt: Format, before: bytes = b"") -> bytes:
    """``data`` (UTF-8, a part of a document in ``fmt`` following ``before``) with its carriage
    returns as character references (serialisers write none in markup).

    :raises NotInFormatError: it holds a character XML 1.0 cannot carry.
    """
    found = _NOT_XML.search(data)
    if found is not None:
        char = found.group().decode("utf-8")
        text = (before[-200:] + data[:found.start()]).decode("utf-8", "replace").rsplit(">", 1)[-1][-40:]
        near = f" after {text!r}" if text.strip() else ""
        raise NotInFormatError(
            f"the data holds U+{ord(char):04X}{near}, a character XML 1.0 cannot carry: {fmt.label} cannot be "
            f"written; use {_OTHERS.get(fmt, 'another format')}"
        )
    return data.replace(b"\r", b"&#13;") if b"\r" in data else data


class XmlChecked:
    """A binary output for an XML serialiser: what it writes, its carriage returns as character
    references, refusing the characters XML 1.0 cannot carry before they are written
    (:func:`check_xml`); :meth:`close` writes what it held back (the first bytes of a character
    that may be U+FFFE or U+FFFF, to be seen whole)."""

    def __init__(self, output: IO[bytes], fmt: Format) -> None:
        self.output = output
        self.fmt = fmt
        self._held = b""
        self._before = b""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        size = len(data)
        chunk = self._held + bytes(data)
        keep = 2 if chunk.endswith(b"\xef\xbf") else 1 if chunk.endswith(b"\xef") else 0
        chunk, self._held = (chunk[:-keep], chunk[-keep:]) if keep else (chunk, b"")
        self.output.write(check_xml(chunk, self.fmt, self._before))
        self._before = (self._before + chunk)[-200:]
        return size

    def flush(self) -> None:
        self.output.flush()

    def close(self) -> None:
        """Write what was held back (the output itself stays open)."""
        if self._held:
            self.output.write(check_xml(self._held, self.fmt, self._before))
            self._held = b""
        self.output.flush()


_START = ("A-Z_a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
          "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff")
#: The longest end of an IRI made of what an XML name may hold, and where in it a name may start.
_NAME_END = re.compile(f"[{_START}\\-.0-9\u00b7\u0300-\u036f\u203f-\u2040]*\\Z")
_NAME_START = re.compile(f"[{_START}]")
_RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"


#: What RDF/XML reserves for its own syntax: never a property.
_RESERVED = frozenset(f"http://www.w3.org/1999/02/22-rdf-syntax-ns#{name}" for name in (
    "RDF", "ID", "about", "parseType", "resource", "nodeID", "datatype", "Description", "li", "aboutEach",
    "aboutEachPrefix", "bagID"))


def _named(iri: str) -> bool:
    """Whether RDF/XML can name ``iri`` as an element an XML parser reads: it ends with an XML name
    (a namespace prefix is made for what comes before it), one expat takes too (it reads names as
    XML 1.0 did before its fifth edition: not U+2C00–U+2FEF, nor past U+FFFF)."""
    end = _NAME_END.search(iri)
    start = _NAME_START.search(end.group()) if end is not None else None
    if end is None or start is None:
        return False
    local = end.group()[start.start():]
    if local.isascii():
        return True
    import xml.parsers.expat

    try:
        xml.parsers.expat.ParserCreate().Parse(f"<{local}/>", True)
    except xml.parsers.expat.ExpatError:
        return False
    return True


def rdfxml_writable(triples: Iterable[Any]) -> Iterator[Any]:
    """``triples`` (pyoxigraph triples) as they are, refusing a predicate (or a class ``rdf:type``
    names) that RDF/XML cannot write as an element: one ending with no XML name, such as
    ``…#9``, ``…/1`` or ``…/a/``. Oxigraph's writer would write an element named ``oxprefix:``,
    and XML parsers refuse the document.

    :raises NotInFormatError: naming the IRI.
    """
    seen: set[str] = set()
    for triple in triples:
        if isinstance(triple.subject, ox.Triple) or isinstance(triple.object, ox.Triple):
            raise NotInFormatError(f"the graph holds a triple term ({triple}): RDF/XML 1.1, which parsers read, "
                                   f"cannot carry it; use {_OTHERS[Format.RDFXML]}")
        predicate = triple.predicate.value
        if predicate in _RESERVED:
            raise NotInFormatError(f"the property <{predicate}> is RDF/XML's own syntax: rdfxml cannot be "
                                   f"written; use {_OTHERS[Format.RDFXML]}")
        for what, iri in (("property", predicate), ("class", triple.object.value if predicate == _RDF_TYPE
                                                     and isinstance(triple.object, ox.NamedNode) else None)):
            if iri is None or iri in seen:
                continue
            if not _named(iri):
                raise NotInFormatError(
                    f"the {what} <{iri}> does not end with a name XML can hold (a letter or _ , then letters, digits, "
                    f"-, . or _): rdfxml cannot be written; use {_OTHERS[Format.RDFXML]}"
                )
            seen.add(iri)
        yield triple


@contextmanager
def xml_guarded(output: IO[bytes], fmt: Format) -> Iterator[IO[bytes]]:
    """What a serialiser of ``fmt`` writes to: ``output`` itself, or for the XML formats an
    :class:`XmlChecked` over it, closed once the serialiser is done (not after a failure)."""
    if fmt not in XML_FORMATS:
        yield output
        return
    checked = XmlChecked(output, fmt)
    yield cast(IO[bytes], checked)
    checked.close()


def writable_in(triples: Iterable[Any], fmt: Format) -> Iterable[Any]:
    """``triples`` as a serialiser of ``fmt`` takes them: checked by :func:`rdfxml_writable` for RDF/XML."""
    return rdfxml_writable(triples) if fmt is Format.RDFXML else triples
