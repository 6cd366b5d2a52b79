"""Rollout state in a file, for the control plane without an API server.

On a cluster a rollout's state is in the RoutingPolicy's status and the specs
of past versions in a ConfigMap, so a restarted operator carries on. Off the
cluster, ``skyroute control --state FILE`` keeps the same data in one JSON
file: every policy's ``status.rollout`` and ``status.history`` exactly as the
operator would write them, plus the recorded specs those histories name.
Without it, a restarted control plane starts from the folder as it is, which
means the spec's version serves all traffic: a candidate in flight would be
promoted by the restart, so any long-lived off-cluster deployment should set
``--state``.

The file is written whole to a temporary name and renamed (a crash never
leaves half a file), only when its content changed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from skyroute.control.files import write_atomic
from skyroute.control.logs import event
from skyroute.control.rollout.controller import RolloutController
from skyroute.control.rollout.state import RolloutState

log = logging.getLogger("skyroute.control.rollout_file")
FORMAT = 1


def dump(controller: RolloutController) -> str:
    policies: dict[str, Any] = {}
    specs: dict[str, str] = {}
    for (ns, name), st in sorted(controller.states.items()):
        policies[f"{ns}/{name}"] = {"rollout": st.as_status(), "history": st.history_status()}
        for entry in st.history:
            if entry.spec_hash in controller.specs:
                specs[entry.spec_hash] = controller.specs[entry.spec_hash]
    return json.dumps(
        {"format": FORMAT, "policies": policies, "specs": specs}, indent=1, sort_keys=True
    )


def load(controller: RolloutController, path: Path) -> int:
    """Restore what ``path`` holds (nothing if it does not exist); how many policies."""
    if not path.exists():
        return 0
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
    except (OSError, ValueError) as exc:
        raise SystemExit(f"skyroute control: --state {path}: unreadable: {exc}") from None
    now = time.time()
    for spec, text in data.get("specs", {}).items():
        controller.specs.setdefault(spec, text)
    restored = 0
    for key, status in data.get("policies", {}).items():
        ns, _, name = key.partition("/")
        st = RolloutState.from_status(status, now)
        if st is not None:
            controller.restore((ns, name), st)
            restored += 1
    event(log, "rollout_state_loaded", path=str(path), policies=restored)
    return restored


class StateFile:
    """Writes the controller's state to ``path`` when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written = ""

    def save(self, controller: RolloutController) -> bool:
        text = dump(controller)
        if text == self._written:
            return False
        try:
            write_atomic(self.path, text)
        except OSError as exc:  # the rollout goes on; only a restart would lose it
            event(
                log,
                "rollout_state_write_failed",
                logging.WARNING,
                path=str(self.path),
                error=repr(exc),
            )
            return False
        self._written = text
        return True
