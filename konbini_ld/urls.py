"""URLs as konbini-ld shows and records them: never with credentials in them."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact", "source_iri"]


_SECRET_PARAM = re.compile(r"(?i)(?:api[_-]?key|apikey|key|token|access[_-]?token|secret|password|passwd|sig|"
                           r"signature|auth|authorization|credentials?)")


def redact(url: str) -> str:
    """``url`` without any user:password part, and without the values of query parameters named
    like secrets, for messages, logs and records.

    >>> redact("http://admin:secret@127.0.0.1:3030/ds/sparql")
    'http://127.0.0.1:3030/ds/sparql'
    >>> redact("https://key@api.konbiniapi.com/v1/tiktok/audios/1?api_key=abc&count=30")
    'https://api.konbiniapi.com/v1/tiktok/audios/1?api_key=REDACTED&count=30'
    """
    try:
        parts = urlsplit(url)
        parts.port  # (raises on a port that is not a number)
    except ValueError:  # not parseable as a URL: drop anything that looks like userinfo
        return re.sub(r"(?<=://)[^/@]*@", "", url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    if parts.query:
        fields = []
        for field in parts.query.split("&"):
            name, eq, _ = field.partition("=")
            fields.append(f"{name}=REDACTED" if eq and _SECRET_PARAM.fullmatch(name) else field)
        parts = parts._replace(query="&".join(fields))
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
