"""konbini-ld: TikTok audio data from KonbiniAPI as a linked-data graph.

>>> import konbini_ld
>>> with konbini_ld.open_store(None) as store:
...     report = store.load([konbini_ld.text_stream(
...         '{"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1", "name": "a", "duration": 23}}')])
...     [row[0].value for row in store.query("SELECT ?d WHERE { ?a <https://konbiniapi.com/ns/social#durationSeconds> ?d }").rows()]
['23']
"""

from __future__ import annotations

from .errors import (
    AuthError,
    ContextError,
    CreditsExhaustedError,
    ExpandError,
    ExportError,
    FetchError,
    InputError,
    InvalidIdError,
    KonbiniError,
    NotFoundError,
    QueryError,
    StoreError,
    UsageError,
    ValidationError,
)
# Everything but the errors is imported on first use, so `konbini-ld --help` stays light.
_LAZY = {
    "ExportFormat": "export",
    "Response": "ingest",
    "text_stream": "ingest",
    "QueryResult": "queries",
    "ResultFormat": "queries",
    "named_queries": "named",
    "KonbiniStore": "store",
    "LoadReport": "store",
    "Stats": "store",
    "open_store": "store",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'konbini_ld' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AuthError",
    "ContextError",
    "CreditsExhaustedError",
    "ExpandError",
    "ExportError",
    "ExportFormat",
    "FetchError",
    "InputError",
    "InvalidIdError",
    "KonbiniError",
    "KonbiniStore",
    "LoadReport",
    "NotFoundError",
    "QueryError",
    "QueryResult",
    "Response",
    "ResultFormat",
    "Stats",
    "StoreError",
    "UsageError",
    "ValidationError",
    "named_queries",
    "open_store",
    "text_stream",
]
