"""Queries: the named-query catalog, parameters as terms, the safety guard, running queries into
typed results, and SHACL validation."""
