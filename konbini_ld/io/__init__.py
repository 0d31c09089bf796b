"""Formats: the one registry of formats, result writers, the plain-text table, graph exports."""
