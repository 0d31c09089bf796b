"""Entity pages a person can read and follow: one HTML page per entity (its name and image, its
facts with prefixed names, what points to it, its provenance, its counters' history), for
``serve``'s ``/resource`` and for the static site ``publish`` writes.

Everything that comes from the store is escaped; only http(s) IRIs become links out of the
site (a ``javascript:`` or ``data:`` value is text), and those open without a referrer.
Where a link goes is the :class:`Links`' business: the server's ``/resource?iri=…``, or a
static site's files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape
from urllib.parse import quote

import pyoxigraph as ox

from ..io.formats import Format
from ..query.entity import EntityDescription
from ..vocab import AS, GENID, PREFIXES, RDF, XSD
from .chart import chart_svg
from .schema_org import open_graph, schema_org, script_json

__all__ = ["PAGE_CSP", "PAGE_FORMATS", "Links", "ServedLinks", "SiteLinks", "entity_page", "index_page"]

#: The graph formats an entity's description is offered in (besides HTML).
PAGE_FORMATS = (Format.TURTLE, Format.NT, Format.JSONLD, Format.RDFXML)
#: The pages' policy: no script at all; images from https (an entity's picture).
_META_CSP = "default-src 'none'; style-src 'self'; img-src 'self' https:; base-uri 'none'; form-action 'none'"
#: (sent as a header by ``serve``; a static page carries the same in a ``<meta>``, where browsers
#: ignore ``frame-ancestors``)
PAGE_CSP = _META_CSP + "; frame-ancestors 'none'"
_EXTRA_PREFIXES = {"schema": "https://schema.org/", "hydra": "http://www.w3.org/ns/hydra/core#",
                   "foaf": "http://xmlns.com/foaf/0.1/"}
_TYPE = RDF + "type"
_LINKABLE = ("http://", "https://")


@lru_cache(maxsize=4096)
def compact(iri: str) -> str:
    """A prefixed name where a known prefix fits (as the query page shows IRIs).

    >>> compact("https://www.w3.org/ns/activitystreams#name"), compact("https://example.org/x")
    ('as:name', 'https://example.org/x')
    """
    for prefix, ns in {**PREFIXES, **_EXTRA_PREFIXES}.items():
        if iri.startswith(ns):
            local = iri[len(ns):]
            if local and (local[0].isalpha() or local[0] == "_") and all(c.isalnum() or c in "_-" for c in local):
                return f"{prefix}:{local}"
    return iri


def _e(text: str) -> str:
    return escape(text, quote=True)


@dataclass(frozen=True)
class Links:
    """Where a page's links go (the base: a static site's, see :class:`SiteLinks`)."""

    asset: str = ""
    home: str = "./"
    dataset: str = "void"
    sparql: str | None = "sparql"

    def page(self, iri: str, page: int = 1) -> str | None:  # pragma: no cover - overridden
        return None

    def alternate(self, iri: str, fmt: Format, page: int = 1) -> str | None:  # pragma: no cover - overridden
        return None


@dataclass(frozen=True)
class ServedLinks(Links):
    """``serve``'s layout: ``resource?iri=…`` relative to the server's root."""

    def page(self, iri: str, page: int = 1) -> str | None:
        return f"resource?iri={quote(iri, safe='')}" + (f"&page={page}" if page > 1 else "")

    def alternate(self, iri: str, fmt: Format, page: int = 1) -> str | None:
        return f"{self.page(iri, page)}&format={fmt.label}"


@dataclass(frozen=True)
class SiteLinks(Links):
    """A static site's layout: the entity pages side by side in one folder, by file name."""

    names: dict[str, str] = field(default_factory=dict)  # IRI → file name without suffix
    #: the folder of the entity pages, from the page linking to them
    folder: str = ""
    asset: str = "../"
    home: str = "../index.html"
    dataset: str = "../void.ttl"
    sparql: str | None = None

    def page(self, iri: str, page: int = 1) -> str | None:
        name = self.names.get(iri)
        return None if name is None else f"{self.folder}{quote(name)}{'' if page == 1 else f'-p{page}'}.html"

    def alternate(self, iri: str, fmt: Format, page: int = 1) -> str | None:
        name = self.names.get(iri)
        if name is None or fmt is not Format.TURTLE:
            return None
        return f"{self.folder}{quote(name)}{'' if page == 1 else f'-p{page}'}.ttl"


def _out(iri: str, shown: str | None = None) -> str:
    """A link out of the site (http(s) only; anything else is text)."""
    text = _e(shown if shown is not None else iri)
    if iri.lower().startswith(_LINKABLE):
        return f'<a class="out" href="{_e(iri)}" rel="noopener noreferrer nofollow" title="{_e(iri)}">{text}</a>'
    return f'<span class="iri" title="{_e(iri)}">{text}</span>'


def _entity_link(iri: str, d: EntityDescription, links: Links) -> str:
    """An IRI value: a link to its page when it has one (with its name), and out when it is http(s)."""
    known = d.neighbours.get(iri)
    href = links.page(iri) if known is not None or iri == d.iri else None
    if href is None:
        return _out(iri, compact(iri))
    label = known.label if known is not None and known.label else compact(iri)
    kinds = " ".join(compact(t) for t in known.types) if known is not None else ""
    html = f'<a class="entity" href="{_e(href)}" title="{_e(iri)}">{_e(label)}</a>'
    if kinds:
        html += f' <span class="kind">{_e(kinds)}</span>'
    if iri.lower().startswith(_LINKABLE):
        html += (f' <a class="out" href="{_e(iri)}" rel="noopener noreferrer nofollow" title="{_e(iri)}" '
                 f'aria-label="open {_e(iri)}"></a>')
    return html


def _literal(value: ox.Literal) -> str:
    datatype = value.datatype.value
    text = value.value
    if datatype == XSD + "integer" and text.lstrip("-").isdigit():
        text = f"{int(text):,}"
    title = compact(datatype) if datatype not in (XSD + "string", RDF + "langString") else (value.language or "")
    return f'<span class="literal" title="{_e(title)}">{_e(text)}</span>'


def _value(term: object, d: EntityDescription, links: Links, depth: int) -> str:
    if isinstance(term, ox.Literal):
        return _literal(term)
    if isinstance(term, ox.NamedNode):
        if term.value.startswith(GENID) and term.value in d.owned and depth < 4:
            return _facts_table(d.owned[term.value], d, links, depth + 1, nested=True)
        return _entity_link(term.value, d, links)
    return _e(str(term))


def _facts_table(pairs: Sequence[tuple[ox.NamedNode, object]], d: EntityDescription, links: Links, depth: int,
                 *, nested: bool = False) -> str:
    rows: dict[str, list[str]] = {}
    for p, o in sorted(pairs, key=lambda po: (po[0].value != _TYPE, compact(po[0].value), str(po[1]))):
        rows.setdefault(p.value, []).append(_value(o, d, links, depth))
    body = "".join(f'<tr><th title="{_e(p)}">{_e(compact(p))}</th><td>{"<br>".join(values)}</td></tr>'
                   for p, values in rows.items())
    return f'<table class="{"nested" if nested else "facts"}">{body}</table>'


def _head(title: str, links: Links, extra: Iterable[str] = ()) -> str:
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{_e(_META_CSP)}">\n'
            '<meta name="referrer" content="no-referrer">\n'
            f"<title>{_e(title)}</title>\n<link rel=\"stylesheet\" href=\"{_e(links.asset)}app.css\">\n"
            + "".join(f"{line}\n" for line in extra) + "</head>\n")


def _header(links: Links) -> str:
    parts = [f'<a href="{_e(links.home)}">home</a>',
             f'<a href="{_e(links.dataset)}" id="dataset-link" title="the dataset: VoID and DCAT">dataset description</a>']
    if links.sparql is not None:
        parts.append(f'<a href="{_e(links.sparql)}" title="the SPARQL 1.1 endpoint">SPARQL</a>')
    return (f'<header><h1><a href="{_e(links.home)}">konbini-ld</a></h1><span>{" · ".join(parts)}</span>'
            "</header>\n")


def entity_page(d: EntityDescription, links: Links) -> str:
    """The HTML page of the entity ``d`` describes."""
    title = d.label()
    alternates = []
    for fmt in PAGE_FORMATS:
        href = links.alternate(d.iri, fmt, d.page)
        if href is not None:
            alternates.append((fmt, href))
    extra = [f'<link rel="alternate" type="{_e(fmt.media_type)}" href="{_e(href)}">' for fmt, href in alternates]
    extra += [f'<meta property="{_e(p)}" content="{_e(c)}">' for p, c in open_graph(d)]
    extra.append(f'<script type="application/ld+json" id="schema-org">{script_json(schema_org(d))}</script>')
    out = [_head(f"{title} · konbini-ld", links, extra), '<body class="resource">\n', _header(links), "<main>\n"]
    image = d.image()
    kinds = ", ".join(compact(t) for t in d.types) or "no type"
    out.append('<section class="entity-head">')
    if image is not None:
        out.append(f'<img id="picture" src="{_e(image)}" alt="{_e(title)}" referrerpolicy="no-referrer" '
                   'loading="lazy" width="96" height="96">')
    out.append(f'<div><h2 id="name">{_e(title)}</h2><p class="kind">{_e(kinds)}</p>'
               f'<p class="iri-line">{_out(d.iri)}</p>')
    if alternates:
        out.append('<p id="formats">As data: ' + " · ".join(
            f'<a href="{_e(h)}" type="{_e(f.media_type)}">{_e(_FMT[f])}</a>'
            for f, h in alternates) + "</p>")
    out.append("</div></section>\n")
    if d.facts:
        out.append(f'<section id="facts"><h3>Facts</h3>{_facts_table(d.facts, d, links, 0)}</section>\n')
    out.append(_inbound(d, links))
    out.append(_history(d))
    out.append(_provenance(d, links))
    out.append("</main>\n</body>\n</html>\n")
    return "".join(out)


_FMT = {Format.TURTLE: "Turtle", Format.NT: "N-Triples", Format.JSONLD: "JSON-LD", Format.RDFXML: "RDF/XML"}


def _inbound(d: EntityDescription, links: Links) -> str:
    if not d.inbound_total:
        return ""
    groups: dict[str, list[str]] = {}
    for s, p in d.inbound:
        groups.setdefault(p, []).append(f"<li>{_entity_link(s, d, links)}</li>")
    first = (d.page - 1) * d.limit + 1
    last = first + len(d.inbound) - 1
    out = [f'<section id="inbound"><h3>What points here</h3><p class="count">{d.inbound_total:,} link'
           f'{"s" if d.inbound_total != 1 else ""}'
           + (f", {first:,} to {last:,} shown" if d.inbound_total > len(d.inbound) else "") + "</p>"]
    for p, items in groups.items():
        out.append(f'<h4 title="{_e(p)}">{_e(compact(p))}</h4><ul class="links">{"".join(items)}</ul>')
    pager = []
    if d.page > 1 and (href := links.page(d.iri, d.page - 1)) is not None:
        pager.append(f'<a rel="prev" id="prev-page" href="{_e(href)}">previous {d.limit}</a>')
    if d.has_next and (href := links.page(d.iri, d.page + 1)) is not None:
        pager.append(f'<a rel="next" id="next-page" href="{_e(href)}">next {d.limit}</a>')
    if pager:
        out.append(f'<p class="pager">{" · ".join(pager)}</p>')
    out.append("</section>\n")
    return "".join(out)


def _history(d: EntityDescription) -> str:
    if not d.history:
        return ""
    panels, n = chart_svg(d.counters())
    observed = len(d.history)
    text = f"{observed:,} observation{'s' if observed != 1 else ''} of its counters"
    if n:
        return (f'<section id="history"><h3>Counters over time</h3><p class="count">{text}</p>'
                f'<div id="chart">{panels}</div></section>\n')
    latest = d.history[0]
    cells = "".join(f"<tr><th>{_e(name)}</th><td>{_literal(v)}</td></tr>" for name, v in latest[2])
    return (f'<section id="history"><h3>Counters over time</h3><p class="count">{text} (at {_e(latest[1])}); '
            f'a chart needs two</p><table class="facts">{cells}</table></section>\n')


def _activity(iri: str, links: Links) -> str:
    """An observation: a link to its own page where it has one (on the server), else its name."""
    href = links.page(iri)
    if href is None:
        return f'<span class="iri">{_e(compact(iri))}</span>'
    return f'<a class="activity" href="{_e(href)}" title="{_e(iri)}">{_e(compact(iri))}</a>'


def _provenance(d: EntityDescription, links: Links) -> str:
    if d.last_observed is None and not d.observations:
        return ""
    out = ['<section id="provenance"><h3>Provenance</h3>']
    if d.last_observed is not None:
        out.append(f'<p>Last observed <time id="last-observed" datetime="{_e(d.last_observed)}">'
                   f"{_e(d.last_observed)}</time>, in {d.observations_total:,} observation"
                   f"{'s' if d.observations_total != 1 else ''}"
                   + (f" (the newest {len(d.observations)} below)" if d.observations_total > len(d.observations)
                      else "") + ".</p>")
    rows = "".join(f"<tr><td>{_e(o.at or '')}</td><td>{_out(o.used) if o.used else ''}</td>"
                   f"<td>{_activity(o.activity, links)}</td></tr>" for o in d.observations)
    if rows:
        out.append(f'<table class="facts"><tr><th>observed at</th><th>from the request</th><th>activity</th></tr>'
                   f"{rows}</table>")
    out.append("</section>\n")
    return "".join(out)


def index_page(entities: Sequence[tuple[str, str, tuple[str, ...]]], links: Links, *, title: str = "konbini-ld",
               dumps: Sequence[tuple[str, str]] = ()) -> str:
    """A site's front page: its entities by kind (IRI, name, types), the dumps, the dataset's description.

    :param dumps: (file name, format name) of the dumps offered.
    """
    groups: dict[str, list[str]] = {}
    for iri, label, types in entities:
        kind = compact(types[0]) if types else "other"
        href = links.page(iri)
        item = f'<a class="entity" href="{_e(href)}" title="{_e(iri)}">{_e(label)}</a>' if href else _out(iri, label)
        groups.setdefault(kind, []).append(f"<li>{item}</li>")
    order = [compact(AS + k) for k in ("Audio", "Person", "Video")]
    out = [_head(title, links), "<body class=\"resource\">\n", _header(links), "<main>\n",
           f'<section class="entity-head"><div><h2 id="name">{_e(title)}</h2>'
           f'<p><a href="{_e(links.dataset)}">The dataset\'s description</a> (VoID, DCAT)</p>']
    if dumps:
        out.append("<p>Dumps: " + " · ".join(f'<a href="{_e(href)}">{_e(name)}</a>' for href, name in dumps) + "</p>")
    out.append("</div></section>\n")
    for kind in sorted(groups, key=lambda k: (order.index(k) if k in order else len(order), k)):
        items = groups[kind]
        out.append(f'<section class="kind-list"><h3>{_e(kind)} ({len(items):,})</h3>'
                   f'<ul class="links">{"".join(items)}</ul></section>\n')
    out.append("</main>\n</body>\n</html>\n")
    return "".join(out)
