"""Images: finding files, decoding them into model inputs, in parallel, and thumbnails.

Every image reaches the model the same way, in bounded memory, with bad files recorded instead of raised.
Guides: `docs/guide/searching.md`; decoding for GPUs: `docs/guide/ray-gpu.md`.

- `finding`: image files of a folder tree, in a stable order (no decoding, no Pillow);
- `decoding`: one file into the model's square uint8 input, with bounded memory;
- `reader`: many files decoded in batches ahead of the model, in threads, processes or on a
  GPU (`gpu_decoder`, nvJPEG through torchvision);
- `thumbnails`: small JPEGs for the web page, cached.
"""
