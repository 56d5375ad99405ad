"""Dataset health: leaks between splits, label errors, outliers and bad images, from what a collection stores.
Guide: `docs/guide/audit.md`.

- `splits`: each stored image's split and class, from its folders (`train/<class>/...` or `<class>/...`);
- `vectors`: the stored vectors, page by page, as unit vectors;
- `leaks`: copies across splits, found and checked as `duplicates` finds and checks copies;
- `labels`: images in the wrong class folder (out-of-fold softmax regression, confident learning) and
  the class their nearest rows suggest;
- `outliers`: images far from every class centroid;
- `quality`: dark, light, blurry, empty, tiny and oddly shaped images, measured from their pixels;
- `report`: `AuditReport`, the four lists with the cut each was made at;
- `auditor`: `audit_collection`, the whole audit.

Nothing here moves, deletes or relabels a file.
"""
