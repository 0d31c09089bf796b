"""The collection as a static site: the pages ``serve`` shows at ``/resource``, written as files
any web server can host.

::

    DIR/index.html              the entities by kind, the dumps, the dataset's description
    DIR/void.ttl                the dataset's description (VoID, DCAT), the dumps as distributions
    DIR/app.css                 the pages' style
    DIR/dumps/konbini-ld.EXT    the whole graph in each format asked for (``export``'s output)
    DIR/r/NAME.html, NAME.ttl   one page and one Turtle description per entity (NAME-p2.html … for
                                the further pages of links to an entity with many)

Links between files are relative, so the folder can be moved or hosted under any path; with
``base_url`` the Turtle files name their documents by absolute URL instead.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io.formats import Format
from ..query.dataset import dataset_figures
from ..query.entity import DEFAULT_LIMIT, describe_entity, known_entities
from .describe import list_dumps, void_description
from .pages import SiteLinks, entity_page, index_page
from .resource_jobs import write_triples

__all__ = ["DUMP_FORMATS", "PublishReport", "entity_file_name", "publish"]

#: The dumps written unless others are asked for.
DUMP_FORMATS = (Format.TURTLE, Format.NQ)
#: The placeholder the Turtle files are written against before their links are made relative.
_PLACEHOLDER = "http://konbini-ld-publish.invalid/"
#: Pages of links written at most per entity (the dumps hold all of them).
MAX_PAGES = 1000


@dataclass(slots=True)
class PublishReport:
    """What :func:`publish` wrote."""

    folder: Path
    entities: int = 0
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0


def entity_file_name(iri: str) -> str:
    """A file name for an entity's page: readable, and unique by a digest of the IRI.

    >>> entity_file_name("https://www.tiktok.com/@khaby.lame")
    'khaby.lame-c6104a76cd7f'
    """
    path = re.sub(r"^[a-z][a-z0-9+.-]*:(//[^/]*)?", "", iri, flags=re.IGNORECASE)
    path = path.replace("/music/", "/").strip("/@")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", path).strip("-.")[:80] or "entity"
    return f"{slug}-{hashlib.sha256(iri.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


def publish(store: Any, folder: str | Path, *, base_url: str | None = None,
            dump_formats: Sequence[Format | str] = DUMP_FORMATS, limit: int = DEFAULT_LIMIT,
            progress: Callable[[int, int], None] | None = None) -> PublishReport:
    """Write the static site of ``store`` into ``folder`` (created; files of an earlier run are replaced).

    :param base_url: where the site will be hosted (``https://example.org/sounds/``): the Turtle
        files then name documents by absolute URL; without it their links are relative.
    :param dump_formats: the formats of the dumps (none: no dumps).
    :param limit: links to an entity listed per page.
    :param progress: called with (entities written, entities in all) as the pages are written.
    :raises UsageError: ``base_url`` is not an http(s) URL.
    """
    started = time.perf_counter()
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise UsageError(f"the base URL must be an http(s) URL, not {base_url[:100]!r}")
    root = Path(folder)
    pages_dir, dumps_dir = root / "r", root / "dumps"
    for sub in (pages_dir, dumps_dir):
        if sub.exists():
            shutil.rmtree(sub)
        sub.mkdir(parents=True)
    report = PublishReport(root)
    base = (base_url.rstrip("/") + "/") if base_url else None
    engine = store.engine

    def write(path: Path, data: bytes) -> None:
        path.write_bytes(data)
        report.files += 1
        report.bytes += len(data)

    def turtle(triples: list[Any], *, inside: bool) -> bytes:
        out = io.BytesIO()
        write_triples(triples, out, Format.TURTLE)
        text = out.getvalue().decode("utf-8")
        if base is not None:
            return text.replace(f"<{_PLACEHOLDER}", f"<{base}").encode("utf-8")
        if inside:
            text = text.replace(f"<{_PLACEHOLDER}r/", "<")
        return text.replace(f"<{_PLACEHOLDER}", "<../" if inside else "<").encode("utf-8")

    entities = list(known_entities(engine))
    links = SiteLinks(names={iri: entity_file_name(iri) for iri, _ in entities})
    listed: list[tuple[str, str, tuple[str, ...]]] = []
    for done, (iri, types) in enumerate(entities, 1):
        name = links.names[iri]
        page = 1
        while page <= MAX_PAGES:
            d = describe_entity(engine, iri, page=page, limit=limit)
            if d is None:
                break
            if page == 1:
                listed.append((iri, d.label(), types))
            suffix = "" if page == 1 else f"-p{page}"
            write(pages_dir / f"{name}{suffix}.html", entity_page(d, links).encode("utf-8"))
            document = f"{_PLACEHOLDER}r/{name}{suffix}.ttl"
            following = f"{_PLACEHOLDER}r/{name}-p{page + 1}.ttl" if page < MAX_PAGES else None
            triples = list(d.triples(document, next_page=following, dataset=f"{_PLACEHOLDER}void.ttl#dataset"))
            write(pages_dir / f"{name}{suffix}.ttl", turtle(triples, inside=True))
            if not d.has_next:
                break
            page += 1
        report.entities += 1
        if progress is not None:
            progress(done, len(entities))
    for fmt in (Format.lookup(f, "graph") for f in dump_formats):
        target = dumps_dir / f"konbini-ld.{fmt.extension}"
        store.export(target, fmt, inline_context=True)
        report.files += 1
        report.bytes += target.stat().st_size
    dumps = [(f"dumps/{d.name}", d.name) for d in list_dumps(dumps_dir)]
    write(root / "index.html", index_page(listed, SiteLinks(names=links.names, folder="r/", asset="",
                                                              home="index.html", dataset="void.ttl"), dumps=dumps).encode("utf-8"))
    for asset in ("app.css",):
        write(root / asset, resources.files("konbini_ld.apps").joinpath(f"web/{asset}").read_bytes())
    void = void_description(dataset_figures(engine), _PLACEHOLDER.rstrip("/"), Format.TURTLE,
                            dumps=list_dumps(dumps_dir), sparql=False).decode("utf-8")
    void = void.replace(f"{_PLACEHOLDER}void#", f"{_PLACEHOLDER}void.ttl#").replace(
        f"<{_PLACEHOLDER}>", f"<{_PLACEHOLDER}index.html>")
    out = void.replace(f"<{_PLACEHOLDER}", f"<{base}" if base is not None else "<")
    write(root / "void.ttl", out.encode("utf-8"))
    report.seconds = time.perf_counter() - started
    return report
