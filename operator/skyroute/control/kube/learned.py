"""The learning loop's state in a ConfigMap: what a restarted operator learned before.

The learner's fleet figures, priors, drift baselines and tool-use rates
(``learning.persist``) are saved by the leader into one ConfigMap in the
operator's own namespace, ``skyroute-learned-state``, gzip-compressed in
``binaryData`` (``jsonmap.py``; a ConfigMap holds 1 MiB; the series are
capped, and a state that still does not fit is not written, and that is logged). Every replica
restores it when it starts, before its first compile, so the first snapshot
a restarted operator serves already carries the priors, aged by the time it
was down. Writes go through ``KubeApi``'s leader fence like every other
leader write; followers only read.
"""

from __future__ import annotations

import logging

from skyroute.control.kube.api import KubeApi
from skyroute.control.kube.jsonmap import JsonMap
from skyroute.control.learning.loop import Learner
from skyroute.control.learning.persist import Restored, dump, restore
from skyroute.control.logs import event

log = logging.getLogger("skyroute.control.kube.learned")

NAME = "skyroute-learned-state"
KEY = "learned.json.gz"


class LearnedStateMap:
    """Reads and writes the learned-state ConfigMap."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.map = JsonMap(api, namespace, NAME, KEY)

    @property
    def saves(self) -> int:
        return self.map.saves

    @property
    def too_large(self) -> int:
        return self.map.too_large

    async def load(self, learner: Learner) -> Restored:
        """Restore from the ConfigMap if there is one; a bad one restores nothing."""
        out = Restored(path=self.map.where)
        doc, error = await self.map.read()
        out.error = error
        if doc is not None:
            out = restore(learner, doc)
            out.path = self.map.where
        if out.error:
            event(log, "learned_state_refused", logging.WARNING, configmap=NAME, error=out.error)
        elif doc is not None:
            event(log, "learned_state_restored", configmap=NAME, series=out.series)
        return out

    async def save(self, learner: Learner) -> bool:
        """Write the state (leader only: the API's fence refuses a follower's write)."""
        return await self.map.write(dump(learner))
