"""A map of the collection: a 2-D position for every stored image, from its stored vector.
Guide: `docs/guide/map.md`.

`map_collection(engine_or_store, method="umap" | "pca")` lays the rows out (PCA to 50 dims, then UMAP
from umap-learn, the `[map]` extra; PCA alone without it), saves the map beside the collection, and
places rows added later by the saved layout. `python -m utilities map` and the web page's Map view
(`GET /api/map`) use it.

- `layout`: the PCA, UMAP, and placing new rows from their nearest sample rows;
- `saved`: where a map is kept, keyed to the database and collection, and when it still holds;
- `mapper`: `map_collection` and `CollectionMap`, the rows' positions and classes;
- `figure`: the map as a scatter coloured by class (matplotlib, no pyplot).

No model runs, and nothing in the collection is changed.
"""

from utilities.collection_map.mapper import CollectionMap, map_collection

__all__ = ["CollectionMap", "map_collection"]
