"""Mapping: from a raw API response to an Observation (envelope → normalise → pyld to_rdf →
statements grouped for the upsert), against the bundled offline contexts."""
