"""Engines: where the quads live (embedded Oxigraph, any SPARQL 1.1 server), behind one protocol
with declared capabilities; the rdflib view of them; the sandbox that keeps queries offline."""
