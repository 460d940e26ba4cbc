"""A project as a commit holds it: its config, its DVC declarations, and the run they make.

`reader.ProjectReader` is the one reader behind the post-commit capture of a DVC project,
`mlci import dvc` and `mlci init`: the same commit gives the same run whichever reads it.
"""
