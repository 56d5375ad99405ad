"""Milvus: the connection, the image collection and its parts, and the requests they send.

Everything that talks to Milvus Lite or a Milvus server: rows, indexes chosen by size, searches,
retries. Guide: `docs/guide/server.md`.

- `connection`: the pymilvus client for a Lite file or a server, the Lite file's owner lock,
  retries and reconnecting (`MilvusConnection`, `connect`);
- `collection`: `ImageCollection`, which opens, creates, validates and drops a collection and
  combines `base` (its connection, name and schema), `rows` (writes and reads of rows) and
  `vector_index` (the vector index, chosen by size, and searches);
- `projection_store`: a collection's projection (`dims`), kept in a companion collection;
- `lite`: importing Milvus Lite with a clear error when it is missing or broken;
- `retry`: which errors are transient, and backoff; `chunks`: requests within Milvus' limits;
- `storage_probe` and `server_start`: whether a server keeps stored vectors read under IVF_SQ8 and
  IVF_PQ, asked once per server start.

The modules stand in layers, each importing only from those before it (lazy and type-only imports
included; tests/test_milvus_layers.py checks): `lite`, `retry`, `chunks`; `connection`;
`server_start`, `storage_probe`; `base`; `rows`, `vector_index`; `projection_store`; `collection`.

Nothing here imports pymilvus at import time; it is imported when a connection is made.
"""
