"""Opening a store whose graph cannot be opened the usual way: :func:`rebuild_store`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import LoadReport

__all__ = ["rebuild_store"]


def rebuild_store(location: str | os.PathLike[str], *, archive: str | os.PathLike[str] | None = None,
                  update_url: str | None = None, gsp_url: str | None = None, remote_timeout: float | None = None,
                  accept_damage: bool = False,
                  progress: Callable[[int], None] | None = None) -> LoadReport:
    """Re-derive the graph at ``location`` from its archive (see :meth:`.store.KonbiniStore.rebuild`).

    Unlike opening the store, this works when its graph is damaged or missing, or its
    ``state.json`` is: the graph is rebuilt beside the old one and replaces it.
    """
    from .store import KonbiniStore

    with KonbiniStore(location, archive=archive, update_url=update_url, gsp_url=gsp_url, remote_timeout=remote_timeout,
                      _rebuilding=True) as store:
        return store.rebuild(progress=progress, accept_damage=accept_damage)
