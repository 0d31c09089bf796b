"""SHACL validation of the graph against the shapes shipped in ``shapes/`` (pySHACL)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ValidationError
from ..resources import resource_dir
from ..vocab import DATA_GRAPH, XSD

__all__ = ["ShapeResult", "ValidationReport", "shapes_path", "validate"]

SH = "http://www.w3.org/ns/shacl#"


def shapes_path() -> Path:
    """The bundled shapes file."""
    return resource_dir("shapes") / "konbini-shapes.ttl"


class Validatable(Protocol):
    """What validation needs of a store: its engine (a :class:`~konbini_ld.store.store.KonbiniStore` has one)."""

    @property
    def engine(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class ShapeResult:
    """One SHACL result, in words."""

    severity: str
    focus: str
    path: str | None
    value: str | None
    message: str
    shape: str | None

    def __str__(self) -> str:
        from ..io.table import compact_iri

        where = f" {compact_iri(self.path)}" if self.path else ""
        value = f" (value {self.value})" if self.value is not None else ""
        return f"{self.severity}: <{self.focus}>{where}: {self.message}{value}"


BUNDLED = "Audio, Person, Video and Image shapes"


@dataclass(slots=True)
class ValidationReport:
    """The outcome of :func:`validate`.

    :ivar conforms: as SHACL defines it: no result at all (a warning is a result).
    :ivar ok: no violation; warnings and information do not fail the graph (``validate``'s exit code).
    """

    conforms: bool
    results: list[ShapeResult] = field(default_factory=list)
    graph: Any = None  #: the SHACL validation report as an rdflib Graph
    focus_nodes: int = 0  #: the nodes the shapes' targets picked: what was checked
    against: str = BUNDLED  #: what the nodes were checked against
    #: the RDF 1.2 values of the data rdflib cannot hold, by what stood for them in :attr:`graph`
    #: (a triple term: a blank node; a directional string: the string with its language only)
    stand_ins: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return all(r.severity != "Violation" for r in self.results)

    def turtle(self) -> str:
        """The machine-readable SHACL report (``sh:conforms`` false whenever there is a result)."""
        import pyoxigraph as ox
        from oxrdflib._converter import to_ox
        from rdflib import RDF, Literal, URIRef
        from rdflib.namespace import SH as SH_NS

        # (Oxigraph writes it: rdflib writes an ill-typed "yes"^^xsd:boolean bare, as `yes`, which is not Turtle)
        stand_ins = self.stand_ins

        def convert(term: Any) -> Any:
            return stand_ins.get(term) or to_ox(term)

        heads = set(self.graph.subjects(RDF.type, SH_NS.ValidationReport))
        results = set(self.graph.subjects(RDF.type, SH_NS.ValidationResult))
        ordered = sorted(self.graph, key=lambda t: (0 if t[0] in heads else 1 if t[0] in results else 2,
                                                     str(t[0]), str(t[1]), str(t[2])))
        triples = [ox.Triple(convert(s), convert(p), convert(o)) for s, p, o in ordered]  # (a subject's together)
        used = {str(t) for triple in self.graph for t in triple if isinstance(t, URIRef)}
        used |= {str(t.datatype) for t in self.graph.objects() if isinstance(t, Literal) and t.datatype}
        prefixes = {str(p): str(n) for p, n in self.graph.namespaces()
                    if str(p) and any(iri.startswith(str(n)) for iri in used)}
        out = io.BytesIO()
        ox.serialize(triples, out, ox.RdfFormat.TURTLE, prefixes=prefixes)
        return out.getvalue().decode("utf-8")

    def summary(self) -> str:
        counts = {s: sum(1 for r in self.results if r.severity == s) for s in ("Violation", "Warning", "Info")}
        notes = ", ".join(f"{n} {s.lower()}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
        checked = f"{self.focus_nodes} node{'s' if self.focus_nodes != 1 else ''} checked against {self.against}"
        if self.conforms:
            return f"conforms: {checked}"
        if self.ok:
            return f"no violations: {checked} ({notes}; by SHACL's definition it does not conform)"
        nodes = len({r.focus for r in self.results if r.severity == "Violation"})
        others = ", ".join(f"{n} {s.lower()}{'s' if n != 1 else ''}" for s, n in counts.items() if n and s != "Violation")
        return (f"does not conform: {counts['Violation']} violation{'s' if counts['Violation'] != 1 else ''} on "
                f"{nodes} of the {checked}") + (f" ({others})" if others else "")


def _data_graph(store: Any) -> Any:
    """The data graph as an rdflib graph (what pySHACL reads), on a :class:`TripleIndex`: each
    term is converted once (a subject, a predicate, a datatype recurs across many quads), and
    nothing is kept that pySHACL does not read (contexts, a third index, listeners)."""
    import pyoxigraph as ox

    from ..engines.rdflib_view import to_rdflib
    from .shacl_store import TripleIndex

    from rdflib import BNode, Literal, URIRef

    graph = TripleIndex.graph()
    add = graph.store.add_triple
    converted: dict[Any, Any] = {}
    stand_ins: dict[Any, Any] = {}
    graph.stand_ins = stand_ins

    def term(t: Any) -> Any:
        r = converted.get(t)
        if r is None:
            if isinstance(t, ox.Triple):
                # an RDF 1.2 triple term, which rdflib cannot hold: a blank node of its own stands for it
                # (not a literal, not an IRI: what SHACL says of it holds), and the report says the term
                r = BNode("tt" + hashlib.sha256(str(t).encode("utf-8")).hexdigest()[:32])
                stand_ins[r] = t
            elif isinstance(t, ox.Literal) and getattr(t, "direction", None):
                # a directional string (RDF 1.2): rdflib holds its language only; the report says it whole
                r = Literal(t.value, lang=t.language)
                stand_ins[r] = t
            elif isinstance(t, ox.Literal) and not t.language and t.datatype.value != f"{XSD}string":
                # as written: rdflib would rewrite "yes"^^xsd:boolean as false (a valid value) and "-07" as -7
                r = Literal(t.value, datatype=URIRef(t.datatype.value), normalize=False)
            else:
                r = to_rdflib(t)
            converted[t] = r
        return r

    graph_triples = getattr(store.engine, "graph_triples", None)  # (an embedded store reads them on two threads)
    if graph_triples is not None:
        for t in graph_triples(ox.NamedNode(DATA_GRAPH)):
            add(term(t.subject), term(t.predicate), term(t.object))
        return graph
    for q in store.engine.iter_quads(ox.NamedNode(DATA_GRAPH)):
        add(term(q.subject), term(q.predicate), term(q.object))
    return graph


def validate(store: Validatable, *, shapes: str | Path | None = None, workers: int | None = None) -> ValidationReport:
    """Validate the store's data graph against the bundled shapes (or ``shapes``, a Turtle file).

    :param workers: processes sharing out a large graph's focus nodes (default: one per CPU, at
        most 8; ``1``: one process). The results are the same.

    :raises UsageError: the shapes file cannot be read (missing, over 64 MiB, not UTF-8).
    :raises ValidationError: the shapes are not Turtle, or pySHACL cannot use them or fails.
    """
    import pyoxigraph as ox
    from rdflib import Graph, Literal, Namespace
    from rdflib.namespace import RDF

    from ..io.inputs import MAX_SHAPES_BYTES, read_bounded
    from ..io.text import one_line
    from .shacl_parallel import focus_count, run_shacl

    sh = Namespace(SH)
    source = shapes or shapes_path()
    text = read_bounded(source, MAX_SHAPES_BYTES, "shapes")
    try:
        shapes_graph = Graph().parse(data=text, format="turtle")
    except Exception as exc:  # rdflib raises a zoo of parser errors
        raise ValidationError(f"cannot read shapes {source}: not Turtle: {one_line(str(exc))}") from exc
    import logging
    import warnings

    term_log = logging.getLogger("rdflib.term")
    level = term_log.level
    term_log.setLevel(logging.CRITICAL)  # ill-typed literals are reported as results, not logged
    try:
        with warnings.catch_warnings():  # (nor warned of: "Parsing weird boolean")
            warnings.filterwarnings("ignore", category=UserWarning, module=r"rdflib\.term")
            data = _data_graph(store)
            # shared out only for the bundled shapes: a worker given one shape does not resolve the
            # shapes it names (sh:node, sh:not, a named property shape), so other shapes run in one process
            report = run_shacl(data, shapes_graph, workers if shapes is None else 1)
    except Exception as exc:  # shapes pySHACL cannot use (a sh:minCount "x"…), or an internal failure
        raise ValidationError(f"SHACL validation of {source} failed to run: {one_line(str(exc))}") from exc
    finally:
        term_log.setLevel(level)
    if not isinstance(report, Graph):  # pySHACL hands a failure (SHACL's "failure") back instead of a report
        raise ValidationError(f"SHACL validation of {source} failed to run: {one_line(str(report))}")
    results = []
    stand_ins: dict[Any, Any] = getattr(data, "stand_ins", {})

    def shown(value: Any) -> str:
        term = stand_ins.get(value)
        if isinstance(term, ox.Triple):
            return f"<<( {term} )>>"
        return str(term) if term is not None else str(value)

    lossy: frozenset[str] = getattr(store.engine.capabilities, "lossy_datatypes", frozenset())
    for node in list(report.subjects(RDF.type, sh.ValidationResult)):
        def one(p: Any) -> Any:
            return report.value(node, p)

        severity = str(one(sh.resultSeverity) or "").rsplit("#", 1)[-1] or "Violation"
        value = one(sh.value)
        datatype = str(getattr(value, "datatype", "") or "")
        if datatype in lossy:
            # the engine rewrote a literal konbini-ld wrote correctly: say so, do not fail the graph
            severity = "Info"
            report.set((node, sh.resultSeverity, sh.Info))
            message = (f"{store.engine.description} does not keep {datatype.rsplit('#', 1)[-1]} literals as "
                       "written (a limitation of the server; the value is also in another property)")
            results.append(ShapeResult("Info", str(one(sh.focusNode)), str(one(sh.resultPath) or "") or None,
                                       str(value), message, str(one(sh.sourceShape) or "") or None))
            continue
        results.append(
            ShapeResult(
                severity=severity,
                focus=str(one(sh.focusNode)),
                path=str(one(sh.resultPath)) if one(sh.resultPath) is not None else None,
                value=shown(one(sh.value)) if one(sh.value) is not None else None,
                message=str(one(sh.resultMessage) or "does not match its shape"),
                shape=str(one(sh.sourceShape)) if one(sh.sourceShape) is not None else None,
            )
        )
    results.sort(key=lambda r: (r.focus, r.path or "", r.message))
    focus = focus_count(data, shapes_graph)
    # SHACL: "conforms" is true only if the validation produced no result at all, warnings included
    # (pySHACL, allowing warnings, says true beside them)
    conforms = not results
    for node in list(report.subjects(RDF.type, sh.ValidationReport)):
        report.set((node, sh.conforms, Literal(conforms)))
    against = f"the shapes of {Path(shapes).name}" if shapes is not None else BUNDLED
    return ValidationReport(conforms, results, report, focus, against, stand_ins)


def iter_lines(report: ValidationReport, limit: int | None = None) -> Iterator[str]:
    """Human-readable lines of a report, for a terminal (values' control characters made visible)."""
    from ..io.text import printable

    for i, r in enumerate(report.results):
        if limit is not None and i >= limit:
            yield f"… and {len(report.results) - limit} more (use --format turtle for all)"
            return
        yield printable(str(r))
