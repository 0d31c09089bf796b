"""Skolem IRIs: the deterministic names that replace blank nodes.

An object without an ``id`` (an image, a link, a place…) is named after the entity that
owns it, the key it hangs from and its content; a cell of an ``rdf:List`` after the
triple that points at it. Loading the same response twice therefore names everything
the same way, and nothing is ever a blank node.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..vocab import GENID

__all__ = ["genid", "list_cell_iri"]

#: the one spelling of an object's content (an encoder made once: ``json.dumps`` makes one a call)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def genid(owner: str, key: str, content: Any) -> str:
    """Deterministic skolem IRI for an object without ``id``.

    >>> genid("https://www.tiktok.com/@khaby.lame", "icon", {"url": "https://x/y.jpeg"})[:21]
    'urn:konbini-ld:genid:'
    """
    payload = _CANONICAL.encode(content)
    digest = hashlib.sha256(f"{owner}\x00{key}\x00{payload}".encode()).hexdigest()[:32]
    return GENID + digest


def list_cell_iri(parent: str, predicate: str) -> str:
    """The skolem IRI of the ``rdf:List`` cell that ``parent``'s ``predicate`` points at.

    >>> list_cell_iri("https://x/page", "https://www.w3.org/ns/activitystreams#orderedItems")[:21]
    'urn:konbini-ld:genid:'
    """
    return GENID + hashlib.sha256(f"{parent}\x00{predicate}\x00list".encode()).hexdigest()[:32]
