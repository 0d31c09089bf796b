"""Sources of raw responses: saved files and streams, and KonbiniAPI itself (ids and endpoints,
the client, a loopback stand-in for tests, and the synthetic corpus it serves)."""
