"""Applications over the library: the ``konbini-ld`` command line and the SPARQL endpoint."""
