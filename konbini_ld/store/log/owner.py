"""Whose archive it is: a store directory names itself in ``store-id`` (a random id its first
writer writes), an archive names its store in ``OWNER``; a store never reads or writes another
store's archive (an ``--archive`` naming the wrong directory, two endpoints given one archive)."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import StoreError
from .safe_files import read_small, write_atomic

__all__ = ["OWNER", "STORE_ID", "check_archive", "check_owner", "store_identity"]

#: The file naming a store directory (a random id written when the store is first written).
STORE_ID = "store-id"
#: The file in an archive naming the store it belongs to (``{"store": id, "location": …}``).
OWNER = "OWNER"


def store_identity(location: Path | None, url: str | None, *, writable: bool) -> str | None:
    """Who a store is: ``endpoint <url>`` for a remote store; for a store directory the id in its
    ``store-id`` file (written by the first writer; ``None`` while there is none)."""
    if url is not None:
        from ...urls import redact

        return f"endpoint {redact(url)}"
    assert location is not None
    path = location / STORE_ID
    try:
        text = read_small(path).strip()
    except FileNotFoundError:
        text = ""
    except ValueError:
        text = ""
    except OSError as exc:
        raise StoreError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    if text:
        return f"store {text}"
    if not writable:
        return None
    import uuid

    text = uuid.uuid4().hex
    write_atomic(path, text + "\n")
    return f"store {text}"


def check_owner(archive_dir: Path, identity: str | None, where: str, *, inside: bool, writable: bool) -> None:
    """Make sure the archive at ``archive_dir`` is this store's own, so that two stores never
    read or write each other's responses (an ``--archive`` naming another store's archive).

    An archive inside its store directory is its store's by construction: a writer (re)writes its
    ``OWNER``. Any other archive is claimed by the first writer that opens it and refused to
    every other store.

    :param where: the store's directory or endpoint, for the message and the record.
    :raises StoreError: the archive belongs to another store.
    """
    path = archive_dir / OWNER
    owner: str | None = None
    owner_where = "?"
    try:
        recorded = json.loads(read_small(path))
        owner, owner_where = str(recorded["store"]), str(recorded.get("location", "?"))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError):
        pass  # damaged: claimed again below
    if identity is None or owner == identity:
        return
    if owner is not None and not inside:
        raise StoreError(
            f"the archive {archive_dir} belongs to another store ({owner_where}): this store ({where}) would "
            "read and apply that store's responses as its own and add its own to them. Give this store its own "
            "--archive directory; if that store is gone and this one is to take its archive over, delete "
            f"{path}"
        )
    if writable:
        archive_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"store": identity, "location": where}))


def check_archive(location: Path | None, state_dir: Path, url: str | None, *, writable: bool) -> None:
    """:func:`check_owner` for a store at ``location`` (or the endpoint ``url``) whose archive and
    state are in ``state_dir``; a writer records that the archive is its own."""
    from ...urls import redact

    identity = store_identity(location, url, writable=writable)
    where = redact(url) if url is not None else str(location)
    inside = location is not None and state_dir.resolve() == location.resolve()
    check_owner(state_dir / "archive", identity, where, inside=inside, writable=writable)
