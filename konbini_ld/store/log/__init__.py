"""The log: the archive of every raw response (the write-ahead log), its format, the store directory
and its files (state, lock, owner), read and written without following links."""
