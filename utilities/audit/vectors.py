"""Reading the stored vectors page by page, as unit vectors with their row ids.

Pages are those `duplicates.candidates` reads: one search request's worth on a server, and smaller
on Milvus Lite, whose query time grows faster than its page. The client holds one page at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from tqdm.auto import tqdm

from utilities.duplicates.candidates import LITE_PAGE_ROWS_WITH_VECTORS, PAGE_ROWS_WITH_VECTORS, unit_vectors
from utilities.milvus.collection import ImageCollection
from utilities.records import ID_FIELD, VECTOR_FIELD


def vector_pages(
    store: ImageCollection, progress: bool = False, description: str = "reading vectors"
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every stored row as `(ids, unit vectors)` pages: int64 `(rows,)` and float32 `(rows, dimension)`.

    Args:
        store: The collection.
        progress: Show a progress bar.
        description: The progress bar's label.

    Yields:
        One page at a time.
    """
    page_rows = LITE_PAGE_ROWS_WITH_VECTORS if store.target.is_lite else PAGE_ROWS_WITH_VECTORS
    with tqdm(total=store.count(), desc=description, unit="row", disable=not progress) as bar:
        for page in store.iter_rows((ID_FIELD, VECTOR_FIELD), batch_size=page_rows):
            ids = np.fromiter((int(row[ID_FIELD]) for row in page), dtype=np.int64, count=len(page))
            yield ids, unit_vectors(np.asarray([row[VECTOR_FIELD] for row in page], dtype=np.float32))
            bar.update(len(page))
