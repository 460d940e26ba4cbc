"""The `ci:` section of mlci.yaml: what the generated workflows install and how the scheduled
job hands over a model that passed the gate."""

from __future__ import annotations

from mlci_tui.config import Enum, Schema, Str, Struct
from mlci_tui.errors import ConfigError

SCHEDULE = Struct(
    {
        # pr: commit to a new branch and open a pull request; push: push to the default branch
        "promote": (Enum("pr", "push"), "pr"),
        "branch": (Str(), "mlci/retrain"),  # prefix of the branch the pr mode pushes
        "stage": (Str(), "deployed"),  # the stage a model that passed the gate is promoted to
    }
)


def _schedule_defaults() -> object:
    return SCHEDULE.check(None, "ci.schedule", lambda path, why: ConfigError(f"{path}: {why}"))


SECTIONS: dict[str, Schema] = {
    "ci": Struct(
        {
            # the shell line that installs mlci and the project's dependencies in a CI job
            "install": (Str(), None),
            "python": (Str(), "3.11"),  # setup-python version (GitHub) / python image tag (GitLab)
            "schedule": (SCHEDULE, _schedule_defaults),
            "sweep_workflow": (Str(), "mlci-sweep.yml"),  # GitHub: file name dispatched by `sweep start --executor ci`
            "report_file": (Str(), "mlci-report.md"),
        }
    )
}
