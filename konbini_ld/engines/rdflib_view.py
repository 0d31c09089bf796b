"""rdflib views of an engine: the Python-facing graph API.

For the embedded store this is rdflib's ``Dataset`` over oxrdflib's
``OxigraphStore`` sharing the same open pyoxigraph store, so SPARQL given as
text through ``Dataset.query`` is evaluated by Oxigraph.

RDF 1.1 makes ``"x"`` and ``"x"^^xsd:string`` the same literal, but rdflib
compares them as different terms; Oxigraph always reports the datatype. The
view hands rdflib plain literals for ``xsd:string``, as rdflib's own parsers do,
so graphs read from an export compare equal to the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import Engine

__all__ = ["dataset_for", "to_rdflib"]

_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


def to_rdflib(term: Any) -> Any:
    """Convert a pyoxigraph term to rdflib, ``xsd:string`` literals as plain literals."""
    import pyoxigraph as ox
    from oxrdflib._converter import from_ox
    from rdflib import Literal

    if isinstance(term, ox.Literal) and not term.language and term.datatype.value == _XSD_STRING:
        return Literal(term.value)
    return from_ox(term)


def _store_class() -> type:
    from oxrdflib import OxigraphStore
    from oxrdflib._converter import from_ox_graph_name, to_ox_quad_pattern

    class KonbiniOxigraphStore(OxigraphStore):
        """oxrdflib's store, with RDF 1.1 plain literals for ``xsd:string``."""

        def __init__(self, engine: Any) -> None:
            super().__init__()
            #: read through on every use (never held: the view follows the engine to a new graph
            #: after ``compact``, and says so when the store is closed)
            self.engine = engine

        @property
        def _inner(self) -> Any:
            return self.engine.store

        def triples(self, triple_pattern: Any, context: Any = None) -> Iterator[Any]:
            try:
                quads = list(self._inner.quads_for_pattern(*to_ox_quad_pattern(triple_pattern, context)))
            except (TypeError, ValueError):
                return iter(())
            return (
                (
                    (to_rdflib(q.subject), to_rdflib(q.predicate), to_rdflib(q.object)),
                    iter((from_ox_graph_name(q.graph_name, self),)),
                )
                for q in quads
            )

        def query(self, *args: Any, **kwargs: Any) -> Any:
            result = super().query(*args, **kwargs)
            if result.type == "SELECT":
                from rdflib import Literal

                def plain(v: Any) -> Any:
                    if isinstance(v, Literal) and str(v.datatype) == _XSD_STRING and not v.language:
                        return Literal(str(v))
                    return v

                rows = result.bindings
                result.bindings = ({k: plain(v) for k, v in row.items()} for row in rows)
            return result

    return KonbiniOxigraphStore


def dataset_for(engine: Engine) -> Any:
    """An :class:`rdflib.Dataset` (default graph = union) over ``engine``."""
    from rdflib import Dataset

    from ..vocab import PREFIXES

    factory = getattr(engine, "rdflib_store", None)
    if factory is not None:
        store = factory()
    else:  # (Oxigraph's)
        store = _store_class()(engine)
    ds = Dataset(store=store, default_union=True)
    for prefix, ns in PREFIXES.items():
        ds.bind(prefix, ns, override=True)
    return ds
