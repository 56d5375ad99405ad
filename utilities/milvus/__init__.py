"""Milvus: the connection, the image collection and its parts, and the requests they send.

- `connection`: the pymilvus client for a Lite file or a server, the Lite file's owner lock,
  retries and reconnecting (`MilvusConnection`, `connect`);
- `collection`: `ImageCollection`, which opens, creates, validates and drops a collection and
  combines `base` (its connection, name and schema), `rows` (writes and reads of rows) and
  `vector_index` (the vector index, chosen by size, and searches);
- `projection_store`: a collection's projection (`dims`), kept in a companion collection;
- `lite`: importing Milvus Lite with a clear error when it is missing or broken;
- `retry`: which errors are transient, and backoff; `chunks`: requests within Milvus' limits.

Nothing here imports pymilvus at import time; it is imported when a connection is made.
"""
