"""URLs as konbini-ld shows and records them: never with credentials in them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact"]


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
