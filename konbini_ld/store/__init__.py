"""The store: a facade over an engine, the raw-response archive (its write-ahead log), the
upsert, provenance and fetch ledger, the write-behind writer and the one ingest pipeline."""
