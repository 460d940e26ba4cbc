"""Data as code: datasets versioned by content hash beside git.

A pointer file (`PATH.mlci`) in git names the content; the content lives in a
content-addressed cache (`.mlci/cache/`) and in fsspec remotes. Modules: `pointer`
(the file format), `hashing` (BLAKE3/md5 and the stat cache), `cache` (objects and folder
manifests), `add`, `status`, `checkout`, `transfer` (push/pull/fetch), `gc`, `remotes`
(config and credentials), `dvc` (reading `.dvc` files and `dvc.lock`), `tree` (pointers
of a commit or the index).
"""
