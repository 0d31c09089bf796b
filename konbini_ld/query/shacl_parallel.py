"""pySHACL on several cores: each shape's focus nodes shared out among forked worker processes.

pySHACL checks one focus node after another in one process. With the data graph built once,
forked workers read it without copying it; each validates its share of every shape's focus
nodes (found by pySHACL's own target rules, so the nodes checked are exactly those a single run
checks), and the results are merged into one report. The report holds the same results as a
single run's: constraints look at the whole data graph from every worker.

A shape or focus node pySHACL would not take by name (a blank node, an IRI of a scheme it would
read as a prefixed name), or a graph too small to pay for the processes, runs in one process.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["PARALLEL_FROM", "focus_count", "run_shacl", "validation_workers"]

#: Focus nodes from which validation is shared out among processes (fewer: one process).
PARALLEL_FROM = 5_000
#: IRIs pySHACL takes by name (others it may read as prefixed names).
_SCHEMES = ("http:", "https:", "urn:", "file:")

# what forked workers read (set in the parent before the fork, never sent)
_DATA: Any = None
_SHAPES: Any = None
_SHAPE_NODES: set[Any] = set()
_WORK: list[tuple[str, list[str]]] = []
_SHARES = 1
_RUN = ""  # this validation's own mark in the names the workers give their reports' blank nodes


def validation_workers(workers: int | None) -> int:
    """Processes a validation uses: ``workers``, else one per CPU (at most 8)."""
    if workers is not None:
        return max(1, workers)
    return max(1, min(8, os.cpu_count() or 1))


def run_shacl(data: Any, shapes: Any, workers: int | None = None) -> Any:
    """pySHACL's report graph for ``data`` against ``shapes`` (or what pySHACL handed back instead
    of one: its failure), in ``workers`` processes when the graph has :data:`PARALLEL_FROM`
    focus nodes or more."""
    import pyshacl

    n = validation_workers(workers)
    work = _work(data, shapes) if n > 1 else None
    if work is None or sum(len(nodes) for _, nodes in work) < max(1, PARALLEL_FROM):
        return pyshacl.validate(data, shacl_graph=shapes, inference="none", abort_on_first=False,
                                allow_warnings=True)[1]
    return _shared(data, shapes, work, n)


def _work(data: Any, shapes: Any) -> list[tuple[str, list[str]]] | None:
    """Each shape with focus nodes, and those nodes (``None``: this cannot be shared out)."""
    from pyshacl.graph_abstraction import DataGraph
    from pyshacl.shapes_graph import ShapesGraph

    graph = DataGraph.from_rdflib(data)
    work = []
    for shape in ShapesGraph(shapes).shapes:
        nodes = list(shape.focus_nodes(graph))
        if not nodes:
            continue
        if not _by_name(shape.node) or not all(_by_name(node) for node in nodes):
            return None
        work.append((str(shape.node), [str(node) for node in nodes]))
    return work


def focus_count(data: Any, shapes: Any) -> int:
    """How many nodes the shapes' targets (of the shapes not deactivated) pick in ``data``: the
    nodes a validation checks, found by pySHACL's own target rules."""
    from pyshacl.graph_abstraction import DataGraph
    from pyshacl.shapes_graph import ShapesGraph

    graph = DataGraph.from_rdflib(data)
    nodes: set[Any] = set()
    for shape in ShapesGraph(shapes).shapes:
        if not shape.deactivated:
            nodes.update(shape.focus_nodes(graph))
    return len(nodes)


def _by_name(term: Any) -> bool:
    from rdflib import URIRef

    return isinstance(term, URIRef) and str(term).lower().startswith(_SCHEMES)


def _shared(data: Any, shapes: Any, work: list[tuple[str, list[str]]], n: int) -> Any:
    """Fork ``n`` workers, each writing its share's report to a pipe; any that fails or dies ends
    the validation with a :class:`ValidationError` (a worker is never waited for in vain), and an
    interrupted parent ends them all."""
    import gc

    from rdflib import BNode

    import secrets

    global _DATA, _SHAPES, _SHAPE_NODES, _WORK, _SHARES, _RUN
    _DATA, _SHAPES, _WORK, _SHARES = data, shapes, work, n
    _RUN = secrets.token_hex(8)  # (no blank node of the data or the shapes can be named like a worker's)
    _SHAPE_NODES = {term for triple in shapes for term in triple if isinstance(term, BNode)}
    gc.freeze()  # (the collector would touch, and so copy, every page of the graph in each worker)
    import signal

    workers: dict[int, int] = {}  # pid → the read end of its pipe
    parent = os.getpid()
    stops = {signal.SIGINT, signal.SIGTERM}
    try:
        for k in range(n):
            read, write = os.pipe()
            # a signal between the fork and the worker's own dispositions would run the parent's
            # handler in the worker: both are held until each side is ready for them
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
            try:
                pid = os.fork()
                if pid == 0:  # pragma: no cover - the worker (its coverage is not collected)
                    _worker(k, read, write, mask, parent)
                os.close(write)
                workers[pid] = read
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        parts = []
        for pid in list(workers):
            parts.append(_collect(pid, workers[pid]))
            os.close(workers.pop(pid))  # (a worker stays listed until reaped: never left running)
    finally:
        for pid, read in workers.items():  # interrupted, or one failed: the others end now
            _end(pid, read)
        gc.unfreeze()
        _DATA, _SHAPES, _SHAPE_NODES, _WORK, _SHARES = None, None, set(), [], 1
    for status, text in parts:
        if status == "failure":
            return text  # pySHACL's failure, as a single run hands it back
    return _merged([triples for _, triples in parts], shapes)


def _worker(k: int, unused: int, out: int, mask: Any, parent: int) -> None:  # pragma: no cover - runs in the forked worker
    """Validate share ``k``, write ``(status, result)`` pickled to ``out`` and end (never returns);
    the kernel ends it if the validating process dies."""
    import pickle
    import signal

    from ..engines.sandbox import end_with_parent

    code = 0
    try:
        os.close(unused)
        if end_with_parent(parent):  # (the validating process died before the call)
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        result: tuple[str, Any] = _validate_share(k)
    except BaseException as exc:  # noqa: BLE001 - said to the parent, which raises it
        result, code = ("error", f"{type(exc).__name__}: {exc}"), 1
    try:
        with open(out, "wb") as fh:
            try:
                fh.write(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
            except Exception as exc:  # noqa: BLE001 - a term that does not pickle: said, not lost
                fh.write(pickle.dumps(("error", f"{type(exc).__name__}: {exc}")))
                code = 1
    finally:
        os._exit(code)


def _collect(pid: int, read: int) -> tuple[str, Any]:
    """Worker ``pid``'s answer (read to its end, then the worker reaped)."""
    import pickle

    from ..errors import ValidationError

    chunks = []
    while chunk := os.read(read, 1 << 20):  # (the caller closes the pipe, and ends the worker if this fails)
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    try:
        head, body = pickle.loads(b"".join(chunks))  # (from a process of ours, forked from this one)
    except Exception:  # noqa: BLE001 - cut short: the worker died while writing
        head, body = None, None
    if head == "error":
        raise ValidationError(f"a validating process failed: {body}")
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or head not in ("ok", "failure"):
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {os.WEXITSTATUS(status)}"
        raise ValidationError(f"a validating process ended unexpectedly ({how}; out of memory?): "
                              "validate again with --workers 1 to use one process")
    return head, body


def _end(pid: int, read: int | None) -> None:
    """End worker ``pid`` now and reap it."""
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # pragma: no cover - it ended meanwhile
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # pragma: no cover - already reaped
        pass
    if read is not None:
        try:
            os.close(read)
        except OSError:  # pragma: no cover - closed already
            pass


def _validate_share(k: int) -> tuple[str, Any]:
    """Worker ``k``'s results for its share of each shape's focus nodes: ``("ok", triples)``
    (every report's triples but its ``sh:ValidationReport`` node's), or ``("failure", text)``."""
    import pyshacl
    from rdflib import BNode, Graph
    from rdflib.namespace import RDF, SH

    triples: list[tuple[Any, Any, Any]] = []
    # blank nodes copied from the shapes (a property shape's description) or from the data (a
    # value, with what the data says of it) keep their labels in every worker's report, so they
    # merge; the report's own are named for this worker (forked, the workers would name theirs alike)
    ours: dict[Any, BNode] = {}

    def named(term: Any) -> Any:
        if isinstance(term, BNode) and term not in _SHAPE_NODES and not _in_data(term):
            return ours.setdefault(term, BNode(f"v{_RUN}w{k}n{len(ours)}"))
        return term

    for shape, nodes in _WORK:
        share = nodes[k::_SHARES]
        if not share:
            continue
        _conforms, report, _text = pyshacl.validate(
            _DATA, shacl_graph=_SHAPES, inference="none", abort_on_first=False, allow_warnings=True,
            use_shapes=[shape], focus_nodes=share,
        )
        if not isinstance(report, Graph):
            return ("failure", str(report))
        heads = set(report.subjects(RDF.type, SH.ValidationReport))
        kept = _described_from_data(report, heads)
        triples.extend((named(s), p, _as_written(named(o))) for s, p, o in kept)
    return ("ok", triples)


class _Written(tuple[str, Any, Any]):
    """A literal on its way to the validating process: its lexical form, language and datatype
    (rdflib pickles a literal as its constructor's arguments, and the constructor rewrites the
    form: ``"yes"^^xsd:boolean`` would arrive as ``false``, ``"-07"`` as ``-7``)."""

    __slots__ = ()


def _as_written(term: Any) -> Any:
    from rdflib import Literal

    if isinstance(term, Literal):
        return _Written((str(term), term.language, term.datatype))
    return term


def _literal(term: Any) -> Any:
    """A literal :func:`_as_written` sent, made again as it was written."""
    from rdflib import Literal

    if isinstance(term, _Written):
        lexical, language, datatype = term
        return Literal(lexical, lang=language, datatype=datatype, normalize=False)
    return term


def _described_from_data(report: Any, heads: set[Any]) -> list[tuple[Any, Any, Any]]:
    """A report's triples but its head's, with what it copied of the data's and the shapes' blank
    nodes copied again under their own names. pySHACL copies a blank-node value with what the data
    says of it, and a blank-node shape (a property shape, the shapes of its ``sh:or``) with what
    the shapes say of it, but names the blank nodes nested in those descriptions anew: each worker
    would hold its own copy of them, where one process's report holds one."""
    from rdflib import BNode

    subjects = {s for s in report.subjects() if isinstance(s, BNode) and s not in heads}
    from_shapes = {s for s in subjects if s in _SHAPE_NODES}
    from_data = {s for s in subjects if s not in _SHAPE_NODES and _in_data(s)}
    if not from_data and not from_shapes:
        return [t for t in report if t[0] not in heads]
    dropped: set[Any] = set()  # pySHACL's copies: the described nodes, and the new nodes they reach
    todo = [*from_data, *from_shapes]
    while todo:
        node = todo.pop()
        if node in dropped:
            continue
        dropped.add(node)
        todo.extend(o for o in report.objects(node) if isinstance(o, BNode) and o not in _SHAPE_NODES
                    and not _in_data(o))
    out = [t for t in report if t[0] not in heads and t[0] not in dropped]
    for source, described in ((_DATA, from_data), (_SHAPES, from_shapes)):
        seen: set[Any] = set()
        todo = list(described)
        while todo:  # the source's own description of each, nested blank nodes and cycles included
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            for _, p, o in source.triples((node, None, None)):
                out.append((node, p, o))
                if isinstance(o, BNode):
                    todo.append(o)
    return out


def _in_data(node: Any) -> bool:
    """Whether a blank node is the data graph's (pySHACL copies those into its report as they are)."""
    from .shacl_store import TripleIndex

    if isinstance(_DATA.store, TripleIndex):
        return _DATA.store.mentions(node)
    return (node, None, None) in _DATA or (None, None, node) in _DATA


def _merged(parts: list[Any], shapes: Any) -> Any:
    """One report: every worker's results under one ``sh:ValidationReport``."""
    from rdflib import BNode, Graph, Literal
    from rdflib.namespace import RDF, SH

    report = Graph()
    for prefix, namespace in shapes.namespaces():
        report.bind(prefix, namespace)
    report.bind("sh", SH)
    node = BNode()
    add = report.store.add  # (terms from pySHACL's own reports: the graph's checks are for others)
    add((node, RDF.type, SH.ValidationReport), report)
    for triples in parts:
        for s, p, o in triples:
            add((s, p, _literal(o)), report)
    results = list(report.subjects(RDF.type, SH.ValidationResult))
    for result in results:
        add((node, SH.result, result), report)
    add((node, SH.conforms, Literal(not results)), report)
    return report
