"""URLs as konbini-ld shows and records them: never with credentials in them."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact", "source_iri"]


def redact(url: str) -> str:
    """``url`` without any user:password part, for messages, logs and records.

    >>> redact("http://admin:secret@127.0.0.1:3030/ds/sparql")
    'http://127.0.0.1:3030/ds/sparql'
    >>> redact("https://key@api.konbiniapi.com/v1/tiktok/audios/1")
    'https://api.konbiniapi.com/v1/tiktok/audios/1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: drop anything that looks like userinfo
        return re.sub(r"(?<=://)[^/@]*@", "", url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


@functools.lru_cache(maxsize=4096)
def source_iri(source: str, line: int | None = None) -> str:
    """The IRI provenance records for a response's origin.

    >>> source_iri("https://api.konbiniapi.com/v1/tiktok/audios/1")
    'https://api.konbiniapi.com/v1/tiktok/audios/1'
    >>> source_iri("-")
    'urn:konbini-ld:stdin'
    """
    if source.startswith(("http://", "https://", "file:", "urn:")):
        return source
    if source == "-":
        return "urn:konbini-ld:stdin"
    return Path(source).resolve().as_uri()
