"""The one flow above the store: source → prepare → archive → apply, for ``load``
(:mod:`.ingest`), ``fetch`` (:mod:`.fetch`), replay after a crash (:mod:`.replay`) and
``rebuild`` (:mod:`.rebuild`); :mod:`.collection` gives users a store with those verbs."""

from __future__ import annotations

from ..errors import Terminated
from ..model import FetchReport
from .collection import KonbiniStore, open_store, rebuild_store
from .fetch import APPLY_GRACE_SECONDS, DEFAULT_CONCURRENCY, fetch

__all__ = ["APPLY_GRACE_SECONDS", "DEFAULT_CONCURRENCY", "FetchReport", "KonbiniStore", "Terminated", "fetch",
           "open_store", "rebuild_store"]
