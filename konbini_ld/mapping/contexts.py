"""The bundled JSON-LD contexts and the offline document loader that serves them.

Only the ActivityStreams 2.0 context and the konbini social context can be
loaded, under their URLs with or without the trailing ``#``. Any other URL is
refused with :class:`~konbini_ld.errors.ContextError`; nothing is ever fetched
over the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..errors import ContextError
from ..resources import resource_dir
from ..vocab import AS, KS, XSD

__all__ = [
    "API_CONTEXT",
    "AS_CONTEXT_URL",
    "KS_CONTEXT_URL",
    "OfflineDocumentLoader",
    "Term",
    "bundled_context",
    "document_loader",
    "is_bundled_context_url",
    "terms",
]

AS_CONTEXT_URL = "https://www.w3.org/ns/activitystreams"
KS_CONTEXT_URL = "https://konbiniapi.com/ns/social"
#: The ``@context`` every API response carries, in the API's own spelling.
API_CONTEXT: list[str] = [AS_CONTEXT_URL + "#", KS_CONTEXT_URL + "#"]

_FILES = {AS_CONTEXT_URL: "activitystreams.jsonld", KS_CONTEXT_URL: "konbini-social.jsonld"}


def _canonical_url(url: str) -> str | None:
    """Map a context URL to its bundled key, tolerating a trailing ``#`` and http/https."""
    if not isinstance(url, str):
        return None
    bare = url.rstrip("#")
    if bare.startswith("http://"):
        bare = "https://" + bare[len("http://") :]
    return bare if bare in _FILES else None


def is_bundled_context_url(url: object) -> bool:
    """True if ``url`` names one of the two bundled contexts.

    >>> is_bundled_context_url("https://konbiniapi.com/ns/social#")
    True
    >>> is_bundled_context_url("https://example.org/context.jsonld")
    False
    """
    return isinstance(url, str) and _canonical_url(url) is not None


@cache
def bundled_context(url: str) -> dict[str, Any]:
    """Return the parsed context document bundled for ``url``.

    :raises ContextError: if ``url`` is not one of the bundled contexts.
    """
    key = _canonical_url(url)
    if key is None:
        raise ContextError(f"refusing to load remote JSON-LD context {url!r}: only the bundled contexts are allowed")
    path = resource_dir("contexts") / _FILES[key]
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


class OfflineDocumentLoader:
    """A pyld document loader that serves the bundled contexts and refuses every other URL.

    pyld's own ``FrozenDocumentLoader`` matches URLs exactly; the API writes its
    context URLs with a trailing ``#``, so this loader normalises them first.
    """

    def __call__(self, url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        from pyld.jsonld import JsonLdError

        try:
            document = bundled_context(url)
        except ContextError as exc:
            raise JsonLdError(
                str(exc), "jsonld.LoadDocumentError", {"url": url}, code="loading remote context failed"
            ) from exc
        # "tag": "static" lets pyld keep the processed context between documents instead of
        # re-canonicalising it for every one (a third of pyld's time on small documents)
        return {
            "contentType": "application/ld+json",
            "contextUrl": None,
            "documentUrl": url,
            "document": document,
            "tag": "static",
        }


@cache
def document_loader() -> OfflineDocumentLoader:
    """The process-wide offline loader."""
    return OfflineDocumentLoader()


@dataclass(frozen=True, slots=True)
class Term:
    """What the two API contexts say about one JSON key.

    :ivar iri: the property IRI the key expands to.
    :ivar type: the coerced datatype IRI, ``"@id"`` for references, or ``None``.
    :ivar container: ``"@list"``, ``"@language"``… or ``None``.
    """

    iri: str
    type: str | None
    container: str | None


def _expand_curie(value: str, prefixes: dict[str, str]) -> str:
    if ":" in value and not value.startswith(("http://", "https://")):
        prefix, _, local = value.partition(":")
        if prefix in prefixes:
            return prefixes[prefix] + local
    return value


@cache
def prefixes() -> dict[str, str]:
    """Prefix declarations of the two API contexts (``as`` → the ActivityStreams namespace…)."""
    out: dict[str, str] = {}
    for url in (AS_CONTEXT_URL, KS_CONTEXT_URL):
        for key, value in bundled_context(url)["@context"].items():
            if isinstance(value, str) and value.endswith(("#", "/")) and not key.startswith("@"):
                out[key] = value
    return out


@cache
def terms() -> dict[str, Term]:
    """The merged term definitions of the API's two contexts, later context winning.

    Used to check value types before expansion and to compact exports.
    """
    merged: dict[str, Term] = {}
    prefixes = {"as": AS, "ks": KS, "xsd": XSD}
    for url in (AS_CONTEXT_URL, KS_CONTEXT_URL):
        ctx = bundled_context(url)["@context"]
        for key, value in ctx.items():
            if key.startswith("@"):
                continue
            if isinstance(value, str):
                if value.startswith("@") or value.endswith(("#", "/")):
                    continue  # keyword alias (id, type) or prefix declaration
                merged[key] = Term(_expand_curie(value, prefixes), None, None)
            elif isinstance(value, dict) and "@id" in value:
                typ = value.get("@type")
                merged[key] = Term(
                    _expand_curie(value["@id"], prefixes),
                    _expand_curie(typ, prefixes) if typ else None,
                    value.get("@container"),
                )
    return merged
