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
from .export import ExportFormat
from .ingest import Response, text_stream
from .queries import QueryResult, ResultFormat, named_queries
from .store import KonbiniStore, LoadReport, Stats, open_store

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
