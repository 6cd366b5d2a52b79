"""Every version a policy served, kept in a ConfigMap the policy owns.

A rollback must be able to serve the previous version after the spec has
moved on, and a ``pinVersion`` may name a version from weeks ago, after any
number of operator restarts: the spec of each version has to outlive the
process. Status keeps the last few versions (time, version, spec hash,
result) for people; the specs themselves go into one ConfigMap per policy,
``skyroute-history-<policy>``, one key per spec hash, with an owner reference
to the policy so that deleting the policy deletes its history. It is plain
data anyone can read (``kubectl get cm skyroute-history-checkout -o yaml``):
policies hold no secrets (API keys are references, see ``model.ApiKeyRef``).

At most ``MAX_VERSIONS`` specs, and ``MAX_BYTES`` in all, are kept per
policy, oldest dropped first (a ConfigMap holds 1 MiB). Only the
leader writes; every replica reads all histories at start-up.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from skyroute.control.kube.api import KubeApi
from skyroute.control.logs import event
from skyroute.control.policy.model import API_VERSION, KIND_POLICY

log = logging.getLogger("skyroute.control.kube.history")

LABEL = "skyroute.io/history-of"
MANAGED = {"app.kubernetes.io/managed-by": "skyroute-operator"}
INDEX = "index.json"
MAX_VERSIONS = 50
MAX_BYTES = 900 * 1024


def _size(data: dict[str, Any]) -> int:
    return sum(len(k) + len(str(v)) for k, v in data.items()) + 64 * 51


def config_map_name(policy: str) -> str:
    return f"skyroute-history-{policy}"[:253]


def _key(spec_hash: str) -> str:
    return spec_hash.replace(":", "-") + ".json"


@dataclass(frozen=True, slots=True)
class Recorded:
    namespace: str
    policy: str
    spec_hash: str
    version: str
    recorded_at: float
    spec_json: str


class HistoryStore:
    """Reads and appends the per-policy history ConfigMaps."""

    def __init__(self, api: KubeApi, namespace: str | None) -> None:
        self.api = api
        self.namespace = namespace

    async def load(self) -> list[Recorded]:
        out = []
        for cm in await self.api.list_config_maps(self.namespace, LABEL):
            meta = cm.get("metadata") or {}
            data = cm.get("data") or {}
            policy = (meta.get("labels") or {}).get(LABEL, "")
            try:
                index = json.loads(data.get(INDEX, "[]"))
            except ValueError:
                event(log, "history_unreadable", logging.WARNING, configmap=meta.get("name"))
                continue
            for entry in index:
                text = data.get(_key(str(entry.get("specHash", ""))))
                if text:
                    out.append(
                        Recorded(
                            str(meta.get("namespace", "")),
                            policy,
                            str(entry["specHash"]),
                            str(entry.get("version", "")),
                            float(entry.get("recordedAt", 0.0)),
                            text,
                        )
                    )
        return out

    async def save(
        self,
        namespace: str,
        policy: str,
        uid: str,
        spec_hash: str,
        version: str,
        recorded_at: float,
        spec_json: str,
        keep: frozenset[str] = frozenset(),
    ) -> None:
        """Add one spec (idempotent); retries a few times on write conflicts.

        ``keep``: specs never dropped to make room (the stable and candidate sides,
        which a restarted operator must be able to serve).
        """
        name = config_map_name(policy)
        for _ in range(5):
            cm = await self.api.get_config_map(namespace, name)
            body = cm if cm is not None else self._new(namespace, policy, uid)
            data: dict[str, Any] = body.setdefault("data", {}) or {}
            body["data"] = data
            index = json.loads(data.get(INDEX, "[]"))
            if any(e.get("specHash") == spec_hash for e in index):
                return
            index.append({"specHash": spec_hash, "version": version, "recordedAt": recorded_at})
            data[_key(spec_hash)] = spec_json
            # Oldest first out: beyond MAX_VERSIONS, or beyond MAX_BYTES in all (a
            # ConfigMap holds 1 MiB; a large policy's 50 versions may not fit).
            droppable = [e for e in index[:-1] if e.get("specHash") not in keep]
            while droppable and (len(index) > MAX_VERSIONS or _size(data) > MAX_BYTES):
                old = droppable.pop(0)
                index.remove(old)
                data.pop(_key(str(old.get("specHash", ""))), None)
            data[INDEX] = json.dumps(index)
            ok = (
                await self.api.create_config_map(namespace, body)
                if cm is None
                else await self.api.replace_config_map(namespace, name, body)
            )
            if ok:
                event(
                    log,
                    "history_saved",
                    policy=f"{namespace}/{policy}",
                    version=version,
                    spec=spec_hash,
                    versions=len(index),
                )
                return
        event(log, "history_save_conflict", logging.WARNING, policy=f"{namespace}/{policy}")

    @staticmethod
    def _new(namespace: str, policy: str, uid: str) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": config_map_name(policy),
            "namespace": namespace,
            "labels": {**MANAGED, LABEL: policy},
        }
        if uid:
            meta["ownerReferences"] = [
                {"apiVersion": API_VERSION, "kind": KIND_POLICY, "name": policy, "uid": uid}
            ]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}}
