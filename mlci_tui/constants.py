"""Where a commit's params and metrics come from when nothing says otherwise.

Its own module, importing nothing, so that the post-commit hook can tell that a commit
has nothing to capture without importing the config machinery (`mlci_tui.config`).
"""

CONFIG_FILE = "mlci.yaml"
DEFAULT_PARAMS_FILES = ("params.yaml",)
DEFAULT_METRICS_FILES = ("metrics.json", "dvclive/metrics.json")
# a DVC project at a commit: one of these at the top of its tree (one tree lookup tells)
DVC_ROOT_FILES = ("dvc.yaml", "dvc.lock", "Dvcfile", ".dvc")
# an mlci dataset pointer's suffix (`data/pointer.py`): here so that the post-commit capture
# tells whether a tree names any dataset before it imports the data layer
POINTER_SUFFIX = ".mlci"
