"""GPU packing for the local executor: which GPUs this machine has, and which trial holds which.

A sweep with `resources: {gpus: N}` gives each trial N GPUs of its own through
CUDA_VISIBLE_DEVICES; a trial waits until N are free, so two trials never share a GPU
unless `gpu_share: K` allows K trials per GPU. The GPUs are the ones `nvidia-smi` lists
(within CUDA_VISIBLE_DEVICES when mlci itself runs under it).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from mlci_tui.errors import InputError


def detect() -> list[str]:
    """GPU indexes as nvidia-smi lists them; [] when there is no nvidia-smi or it fails."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    found = [line.strip() for line in proc.stdout.splitlines() if line.strip().isdigit()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        allowed = {v.strip() for v in visible.split(",")}
        found = [g for g in found if g in allowed]
    return found


class Packing:
    """Free GPU slots (each GPU `share` times) and the slots each running trial holds."""

    def __init__(self, devices: list[str], per_trial: int, share: int) -> None:
        self.devices, self.per_trial, self.share = devices, per_trial, share
        self.held: dict[str, list[str]] = {}

    def capacity(self) -> int:
        """How many trials fit at once."""
        return max(1, len(self.devices) * self.share // self.per_trial)

    def describe(self) -> str:
        each = f", up to {self.share} trials per GPU" if self.share > 1 else ""
        return f"{len(self.devices)} found ({', '.join(self.devices)}), {self.per_trial} per trial{each}"

    def take(self, tid: str) -> str | None:
        """CUDA_VISIBLE_DEVICES for a trial about to start, or None when not enough GPUs are free."""
        load = {d: 0 for d in self.devices}
        for held in self.held.values():
            for d in held:
                load[d] += 1
        free = sorted((n, i, d) for i, (d, n) in enumerate(load.items()) if n < self.share)
        if len(free) < self.per_trial:
            return None
        chosen = [d for _n, _i, d in free[: self.per_trial]]
        self.held[tid] = chosen
        return ",".join(chosen)

    def give_back(self, tid: str) -> None:
        self.held.pop(tid, None)

    def keep(self, active: set[str]) -> None:
        """Free the GPUs of trials that are no longer running."""
        for tid in [t for t in self.held if t not in active]:
            del self.held[tid]


def packing_for(sweep: Any) -> Packing | None:
    """The packing a sweep asks for (`resources.gpus`), or None; an error when this machine has too few GPUs."""
    resources = sweep.spec.get("resources") or {}
    per = int(resources.get("gpus") or 0)
    if per <= 0:
        return None
    devices = detect()
    if len(devices) < per:
        raise InputError(
            f"sweep {sweep.name}: resources.gpus is {per} per trial, but nvidia-smi lists "
            f"{len(devices) or 'no'} GPU(s) here"
        )
    return Packing(devices, per, int(resources.get("gpu_share") or 1))
