"""The store under one root URL: atomic files, commit records, documents, embedding shards, sources."""
