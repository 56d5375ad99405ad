"""Duplicates: exact and edited copies among a collection's images, from what it already stores.

Which stored images are copies of each other and which file of each group to keep, with the copies
moved aside only on request, and undoably. Guide: `docs/guide/duplicates.md`.

- `candidates`: exact copies by content hash; near copies by a k-NN search of every stored
  vector through Milvus, scored again exactly on the stored vectors;
- `verification`: whether two images are copies of one picture (ORB keypoints, a geometric fit,
  then the two laid over each other and compared in `overlay`; OpenCV: the `[duplicates]` extra);
- `grouping`: groups around one kept file, with only the copies found inside it removable, and
  the files that merely share a region `related`;
- `keeper`: which file of a group to keep (by default the original, found from the files, with
  `blank_fill`, `enlargement`, `reencoding` and `full_size`); `moved_aside` ranks files in folders
  of moved copies, and symbolic links, last;
- `finder`: `find_duplicates`, the whole search, with the check in worker processes;
- `incremental`: a re-run that searches and checks only what changed since the last one, with
  the result of a full run; `state`: what a search keeps for the next one;
- `report`: `DuplicateReport`: pairs, groups, the file kept in each and why, the files one could
  remove, the related ones;
- `provenance`, `saved`: what a saved report and state were made on, and where they are kept;
- `figures`: one figure per group, and the histogram of nearest-neighbour similarities;
- `moving` (with `move_planning` and `placing`): on request, moving a report's removable files
  into a folder, each checked again first, with a manifest to undo it; rows follow the files.

Nothing here deletes a file; only `moving` moves any.
"""
