"""KonbiniAPI: endpoints and ids, the HTTP client, a loopback fake API, a synthetic corpus."""
