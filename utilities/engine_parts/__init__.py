"""What the verbs of `engine.ImageSearchEngine` do, so that the class stays a list of thin verbs.

- `opening`: a collection opened for an engine's settings: its projection read, `dims` and the
  vector dimension checked, the collection created on request;
- `index_run`: an indexing run: the projection fitted on the first run with `dims`, the run in
  this process or on Ray, then the mapping file and the list of failed files;
- `duplicate_runs`: a duplicate search saved where the engine keeps its reports, and moving a
  report's removable files (and back).

Each takes the collection and the settings it needs as arguments; none imports `engine`.
"""
