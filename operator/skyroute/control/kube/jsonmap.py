"""One JSON document in a ConfigMap, gzip-compressed: the leader's persisted state.

The learned state (``learned.py``) and the spend ledger (``spendmap.py``) each
keep one document in a ConfigMap of the operator's own namespace, gzip in
``binaryData`` (a ConfigMap holds 1 MiB: a document that still does not fit
is not written, and that is counted and logged). Reads are bounded (a small
blob may expand enormously). Writes go through ``KubeApi``'s leader fence
like every other leader write (a follower's raises ``NotLeader``), and
retry a conflicting replace a few times.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import zlib
from typing import Any

from skyroute.control.kube.api import KubeApi
from skyroute.control.logs import event

log = logging.getLogger("skyroute.control.kube.jsonmap")

MAX_BYTES = 900 * 1024  # under the 1 MiB object limit, with room for metadata
MANAGED = {"app.kubernetes.io/managed-by": "skyroute-operator"}


class JsonMap:
    """Reads and writes one gzip JSON document under ``key`` of ConfigMap ``name``."""

    def __init__(self, api: KubeApi, namespace: str, name: str, key: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.key = key
        self.saves = 0
        self.too_large = 0

    @property
    def where(self) -> str:
        return f"configmap {self.namespace}/{self.name}"

    async def read(self) -> tuple[object | None, str]:
        """(document, "") if there is one, (None, "") if there is none, (None, why) if bad."""
        try:
            cm = await self.api.get_config_map(self.namespace, self.name)
        except Exception as exc:  # the API server may refuse: start cold, say why
            return None, f"unreadable: {exc}"
        if cm is None:
            return None, ""
        raw = (cm.get("binaryData") or {}).get(self.key, "")
        try:
            return json.loads(_gunzip(base64.b64decode(raw))), ""
        except Exception as exc:  # truncated, not gzip, not JSON, too large
            return None, f"unreadable: {exc}"

    async def write(self, doc: object) -> bool:
        """Write ``doc`` (leader only: the API's fence refuses a follower's write)."""
        blob = gzip.compress(json.dumps(doc, sort_keys=True).encode(), mtime=0)
        if len(blob) > MAX_BYTES:
            self.too_large += 1
            event(log, "state_map_too_large", logging.WARNING, configmap=self.name, bytes=len(blob))
            return False
        data = base64.b64encode(blob).decode()
        for _ in range(3):
            cm = await self.api.get_config_map(self.namespace, self.name)
            body: dict[str, Any] = cm if cm is not None else self._new()
            body["binaryData"] = {self.key: data}
            ok = (
                await self.api.create_config_map(self.namespace, body)
                if cm is None
                else await self.api.replace_config_map(self.namespace, self.name, body)
            )
            if ok:
                self.saves += 1
                return True
        event(log, "state_map_save_conflict", logging.WARNING, configmap=self.name)
        return False

    def _new(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(MANAGED)},
        }


def _gunzip(blob: bytes, limit: int = 64 * 1024 * 1024) -> bytes:
    """Decompress at most ``limit`` bytes (a small blob may expand enormously)."""
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(blob, limit)
    if d.unconsumed_tail or not d.eof:
        raise ValueError(f"state expands past {limit} bytes or is truncated")
    return out
