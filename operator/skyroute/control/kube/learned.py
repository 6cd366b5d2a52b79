"""The learning loop's state in a ConfigMap: what a restarted operator learned before.

The learner's fleet figures, priors, drift baselines and tool-use rates
(``learning.persist``) are saved by the leader into one ConfigMap in the
operator's own namespace, ``skyroute-learned-state``, gzip-compressed in
``binaryData`` (a ConfigMap holds 1 MiB; the series are capped, and a state
that still does not fit is not written, and that is logged). Every replica
restores it when it starts, before its first compile, so the first snapshot
a restarted operator serves already carries the priors, aged by the time it
was down. Writes go through ``KubeApi``'s leader fence like every other
leader write; followers only read.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import zlib
from typing import Any

from skyroute.control.kube.api import KubeApi
from skyroute.control.learning.loop import Learner
from skyroute.control.learning.persist import Restored, dump, restore
from skyroute.control.logs import event

log = logging.getLogger("skyroute.control.kube.learned")

NAME = "skyroute-learned-state"
KEY = "learned.json.gz"
MAX_BYTES = 900 * 1024  # under the 1 MiB object limit, with room for metadata
MANAGED = {"app.kubernetes.io/managed-by": "skyroute-operator"}


class LearnedStateMap:
    """Reads and writes the learned-state ConfigMap."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.saves = 0
        self.too_large = 0

    async def load(self, learner: Learner) -> Restored:
        """Restore from the ConfigMap if there is one; a bad one restores nothing."""
        where = f"configmap {self.namespace}/{NAME}"
        out = Restored(path=where)
        try:
            cm = await self.api.get_config_map(self.namespace, NAME)
        except Exception as exc:  # the API server may refuse: start cold, say why
            out.error = f"unreadable: {exc}"
            cm = None
        if cm is not None:
            raw = (cm.get("binaryData") or {}).get(KEY, "")
            try:
                doc = json.loads(_gunzip(base64.b64decode(raw)))
            except Exception as exc:  # truncated, not gzip, not JSON, too large
                out.error = f"unreadable: {exc}"
            else:
                out = restore(learner, doc)
                out.path = where
        if out.error:
            event(log, "learned_state_refused", logging.WARNING, configmap=NAME, error=out.error)
        elif cm is not None:
            event(log, "learned_state_restored", configmap=NAME, series=out.series)
        return out

    async def save(self, learner: Learner) -> bool:
        """Write the state (leader only: the API's fence refuses a follower's write)."""
        blob = gzip.compress(json.dumps(dump(learner), sort_keys=True).encode(), mtime=0)
        if len(blob) > MAX_BYTES:
            self.too_large += 1
            event(log, "learned_state_too_large", logging.WARNING, bytes=len(blob))
            return False
        data = base64.b64encode(blob).decode()
        for _ in range(3):
            cm = await self.api.get_config_map(self.namespace, NAME)
            body: dict[str, Any] = cm if cm is not None else _new(self.namespace)
            body["binaryData"] = {KEY: data}
            ok = (
                await self.api.create_config_map(self.namespace, body)
                if cm is None
                else await self.api.replace_config_map(self.namespace, NAME, body)
            )
            if ok:
                self.saves += 1
                return True
        event(log, "learned_state_save_conflict", logging.WARNING, configmap=NAME)
        return False


def _new(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(MANAGED)},
    }


def _gunzip(blob: bytes, limit: int = 64 * 1024 * 1024) -> bytes:
    """Decompress at most ``limit`` bytes (a small blob may expand enormously)."""
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(blob, limit)
    if d.unconsumed_tail or not d.eof:
        raise ValueError(f"learned state expands past {limit} bytes or is truncated")
    return out
