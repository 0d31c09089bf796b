"""The jobs ``serve``'s workers run besides queries: an entity's description (``/resource``, as
HTML or RDF) and the dataset's figures (``/void``). They run where queries run, under the same
time and memory limits (:mod:`.query_workers`).

A job is a query job (:class:`~konbini_ld.apps.protocol.Job`) whose name starts with
:data:`PREFIX`; its parameters are plain strings (the IRI asked for, already checked, the page,
the server's base URL, the format).
"""

from __future__ import annotations

import io
import json
from typing import Any

from ..errors import NotInFormatError, UsageError
from ..io.formats import Format
from ..io.xmlsafe import writable_in, xml_guarded
from .protocol import Job

__all__ = ["FIGURES", "PREFIX", "RESOURCE", "figures_job", "resource_job", "run_job"]

PREFIX = "konbini-ld:"
RESOURCE = PREFIX + "resource"
FIGURES = PREFIX + "void-figures"
HTML = "html"


def resource_job(iri: str, page: int, base: str, fmt: Format | None, limit: int) -> Job:
    """The job describing ``iri`` (``fmt`` ``None``: its HTML page)."""
    params = {"iri": iri, "page": str(page), "base": base, "format": fmt.label if fmt is not None else HTML,
              "limit": str(limit)}
    return Job(f"# {RESOURCE}", params, None, [], RESOURCE, None, True)


def figures_job() -> Job:
    return Job(f"# {FIGURES}", {}, None, [], FIGURES, None, False)


def run_job(store: Any, job: Job) -> tuple[str, Any]:
    """Run one of these jobs on an open store: ``("ok", (status, media, body))`` or
    ``("error", (status, message))``."""
    name, params = job.name, job.params
    if name == FIGURES:
        from ..query.dataset import dataset_figures

        body = json.dumps(dataset_figures(store.engine).to_json()).encode()
        return "ok", (200, "application/json", body)
    if name == RESOURCE:
        return _resource(store, params)
    return "error", (400, f"unknown job {name!r}")


def _resource(store: Any, params: dict[str, str]) -> tuple[str, Any]:
    from ..query.entity import describe_entity
    from .pages import ServedLinks, entity_page
    from .protocol import media_type

    iri, base = params["iri"], params["base"]
    page, limit = int(params["page"]), int(params["limit"])
    try:
        d = describe_entity(store.engine, iri, page=page, limit=limit)
    except UsageError as exc:
        return "error", (400, f"Bad request: {exc}")
    if d is None:
        return "error", (404, f"Not found: the store holds nothing about {iri[:300]}")
    if params["format"] == HTML:
        return "ok", (200, "text/html; charset=utf-8", entity_page(d, ServedLinks()).encode("utf-8"))
    fmt = Format.lookup(params["format"], "graph")
    links = ServedLinks()
    document = f"{base}/{links.page(iri, page)}"
    following = f"{base}/{links.page(iri, page + 1)}"
    triples = list(d.triples(document, next_page=following, dataset=f"{base}/void#dataset"))
    out = io.BytesIO()
    try:
        write_triples(triples, out, fmt)
    except NotInFormatError as exc:  # (the description exists, in another format: say which)
        return "error", (406, f"Not Acceptable: {exc}")
    return "ok", (200, media_type(fmt), out.getvalue())


def write_triples(triples: list[Any], out: io.BytesIO, fmt: Format) -> None:
    """A description in ``fmt``: JSON-LD stands alone (its contexts inline), the others with our prefixes."""
    import pyoxigraph as ox

    from ..vocab import PREFIXES

    if fmt is Format.JSONLD:
        from ..io.export import write_jsonld_triples

        write_jsonld_triples(triples, out, inline_context=True)
        return
    prefixes = {**PREFIXES, "foaf": "http://xmlns.com/foaf/0.1/", "hydra": "http://www.w3.org/ns/hydra/core#"}
    with xml_guarded(out, fmt) as guarded:
        ox.serialize(writable_in(triples, fmt), guarded, fmt.ox_format(), prefixes=prefixes)
