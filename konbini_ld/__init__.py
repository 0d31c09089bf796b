"""konbini-ld: TikTok audio data from KonbiniAPI as a linked-data graph.

>>> import konbini_ld
>>> with konbini_ld.open_store(None) as store:
...     report = store.load({"data": {"type": "Audio", "id": "https://www.tiktok.com/music/a-1", "duration": 23}})
...     store.query("SELECT ?d WHERE { ?a <https://konbiniapi.com/ns/social#durationSeconds> ?d }").records()
[{'d': 23}]

The names below are the public API (checked by ``tests/test_api.py``). They are imported on
first use, so that ``konbini-ld --help`` stays light and the program's signal handlers are in place
within milliseconds of its start; type checkers see them directly.
"""

from __future__ import annotations

import importlib as _importlib

TYPE_CHECKING = False  # (not typing's: importing typing is a third of this package's start-up)
if TYPE_CHECKING:
    import typing as _typing

    from .errors import (
        ArchiveDamageError,
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
    from .model import Damage, FetchReport, LedgerEntry, LoadReport, Observation, Response, Stats
    from .apps.publish import PublishReport, publish
    from .io.formats import Format
    from .pipeline.collection import KonbiniStore, open_store, rebuild_store
    from .pipeline.fetch import fetch
    from .query.catalog import NamedQuery, named_queries
    from .query.plot import plot
    from .query.run import QueryResult
    from .query.validate import ValidationReport, validate
    from .sources.files import text_stream
    from .sources.konbini.client import KonbiniClient
    from .store.transfer import push
del TYPE_CHECKING

_LAZY = {
    **dict.fromkeys(["ArchiveDamageError", "AuthError", "ContextError", "CreditsExhaustedError", "ExpandError",
                     "ExportError", "FetchError", "InputError", "InvalidIdError", "KonbiniError", "NotFoundError",
                     "QueryError", "StoreError", "UsageError", "ValidationError"], "errors"),
    **dict.fromkeys(["Damage", "FetchReport", "LedgerEntry", "LoadReport", "Observation", "Response", "Stats"], "model"),
    "Format": "io.formats",
    "fetch": "pipeline.fetch",
    "NamedQuery": "query.catalog",
    "named_queries": "query.catalog",
    "plot": "query.plot",
    "publish": "apps.publish",
    "PublishReport": "apps.publish",
    "QueryResult": "query.run",
    "ValidationReport": "query.validate",
    "validate": "query.validate",
    "text_stream": "sources.files",
    "KonbiniClient": "sources.konbini.client",
    "KonbiniStore": "pipeline.collection",
    "open_store": "pipeline.collection",
    "rebuild_store": "pipeline.collection",
    "push": "store.transfer",
}


def __getattr__(name: str) -> "_typing.Any":
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'konbini_ld' has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ArchiveDamageError",
    "AuthError",
    "ContextError",
    "CreditsExhaustedError",
    "Damage",
    "ExpandError",
    "ExportError",
    "FetchError",
    "FetchReport",
    "Format",
    "InputError",
    "InvalidIdError",
    "KonbiniClient",
    "KonbiniError",
    "KonbiniStore",
    "LedgerEntry",
    "LoadReport",
    "NamedQuery",
    "NotFoundError",
    "Observation",
    "PublishReport",
    "QueryError",
    "QueryResult",
    "Response",
    "Stats",
    "StoreError",
    "UsageError",
    "ValidationError",
    "ValidationReport",
    "fetch",
    "named_queries",
    "open_store",
    "plot",
    "publish",
    "push",
    "rebuild_store",
    "text_stream",
    "validate",
]
