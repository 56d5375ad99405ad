"""Duplicates: exact and edited copies among a collection's images, from what it already stores.

- `candidates`: exact copies by content hash; near copies by a k-NN search of every stored
  vector through Milvus, scored again exactly on the stored vectors;
- `verification`: whether two images are copies (ORB keypoints and a geometric fit, OpenCV:
  the `[duplicates]` extra);
- `finder`: `find_duplicates`, the whole search, with the check in worker processes;
- `incremental`: a re-run that searches and checks only what changed since the last one, with
  the result of a full run;
- `report`: `DuplicateReport`: pairs, groups, the file kept in each, the files one could remove;
- `figures`: one figure per group, and the histogram of nearest-neighbour similarities.

Nothing here deletes or moves a file.
"""
