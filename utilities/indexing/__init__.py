"""Indexing runs: bringing a collection up to date with a folder of images.

New and changed files are embedded, moved ones keep their vectors, deleted ones can be pruned, on one
machine or a Ray cluster. Guides: `docs/guide/searching.md`, `docs/guide/ray-gpu.md`, `docs/guide/server.md`.

- `pipeline`: `index_paths` and `index_folder` (plan, decode, embed, write, prune, report),
  `embed_paths` (vectors in memory, no Milvus);
- `planning`: which files are new, changed, moved or unchanged, looked up in steps;
- `background`: planning in a thread ahead of decoding;
- `batch_writer`: writes in requests of the backend's size, several in flight;
- `report`: `IndexReport`, what a run did;
- `on_ray`: the same run with decoding and embedding on a Ray cluster (`[ray]` extra).
"""
