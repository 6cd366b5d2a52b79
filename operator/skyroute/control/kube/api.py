"""The few Kubernetes API calls the operator makes itself, outside kopf.

kopf watches objects and serves the webhook; it patches only the object a
handler runs for. The operator also needs calls that belong to no handler:
the initial list (so that the first snapshot is the whole cluster's, not
whatever the watch delivered first), status patches of objects other than
the one that changed (a pool edit re-versions every policy using it),
events, its Lease, its webhook certificate Secret and the webhook
configuration's CA bundle. Those go through the official ``kubernetes``
client, whose calls block, so each runs in a worker thread.

Every body is a plain dict in and out (``sanitize_for_serialization``), so
callers never depend on the client's model classes. Not-found and conflict
are answers, not errors: they come back as ``None``/``False``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from skyroute.control.policy.model import GROUP, VERSION

PLURALS = {"RoutingPolicy": "routingpolicies", "ModelPool": "modelpools", "Tenant": "tenants"}
TIMEOUT = 10.0
Body = dict[str, Any]


class NotLeader(Exception):
    """A leader-only write asked for while this replica may not write (see lease.py)."""


class NotInstalled(Exception):
    """The CRDs are not installed (the API server does not know the resource)."""


def load_client() -> client.ApiClient:
    """In a pod: the service account; elsewhere: ``KUBECONFIG`` or ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class KubeApi:
    """Async wrappers over the blocking client; one instance per process."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        # Leader writes (status, events, annotations, history) happen only while this
        # says yes: the Lease's renew deadline (lease.py); None = always (no Lease).
        self.fence: Callable[[], bool] | None = None
        self.refused = 0
        self.client = api_client or load_client()
        self.custom = client.CustomObjectsApi(self.client)
        self.core = client.CoreV1Api(self.client)
        self.coordination = client.CoordinationV1Api(self.client)
        self.admission = client.AdmissionregistrationV1Api(self.client)

    def _plain(self, obj: Any) -> Body:
        data = self.client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return data if isinstance(data, dict) else {}

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, _request_timeout=TIMEOUT, **kwargs)

    async def _leader_call(self, fn: Any, *args: Any) -> Any:
        """A leader's write: the fence is asked in the thread, just before the request."""
        fence = self.fence

        def fenced() -> Any:
            if fence is not None and not fence():
                self.refused += 1
                raise NotLeader(f"not the leader (renew deadline passed): {fn.__name__} refused")
            return fn(*args, _request_timeout=TIMEOUT)

        return await asyncio.to_thread(fenced)

    # --- skyroute objects ----------------------------------------------------

    async def list_objects(self, kind: str, namespace: str | None) -> list[Body]:
        """Every object of ``kind`` (in ``namespace``, or all); raises NotInstalled."""
        plural = PLURALS[kind]
        try:
            if namespace:
                result = await self._call(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural
                )
            else:
                result = await self._call(
                    self.custom.list_cluster_custom_object, GROUP, VERSION, plural
                )
        except ApiException as exc:
            if exc.status == 404:
                raise NotInstalled(
                    f"{plural}.{GROUP} is not installed (kubectl apply -f crds/)"
                ) from None
            raise
        items = result.get("items", []) if isinstance(result, dict) else []
        for item in items:
            item.setdefault("apiVersion", f"{GROUP}/{VERSION}")
            item.setdefault("kind", kind)
        return list(items)

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> Body | None:
        """Merge-patch ``status``; the object as returned, or None if it is gone."""
        try:
            result = await self._leader_call(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURALS[kind],
                name,
                {"status": dict(status)},
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return result if isinstance(result, dict) else None

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        await self._leader_call(self.core.create_namespaced_event, namespace, dict(body))

    # --- Lease ---------------------------------------------------------------

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        try:
            lease = await self._call(self.coordination.read_namespaced_lease, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._plain(lease)

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """False if another replica created it first."""
        try:
            await self._call(self.coordination.create_namespaced_lease, namespace, dict(body))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> bool:
        """False if the Lease changed since it was read (its resourceVersion is stale)."""
        try:
            await self._call(
                self.coordination.replace_namespaced_lease, name, namespace, dict(body)
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    # --- webhook TLS and configuration --------------------------------------------

    async def get_secret(self, namespace: str, name: str) -> Body | None:
        try:
            secret = await self._call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._plain(secret)

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """False if it exists already (another replica made it)."""
        try:
            await self._call(self.core.create_namespaced_secret, namespace, dict(body))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def get_webhook_config(self, name: str) -> Body | None:
        try:
            found = await self._call(self.admission.read_validating_webhook_configuration, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._plain(found)

    async def replace_webhook_config(self, name: str, body: Mapping[str, Any]) -> bool:
        try:
            await self._call(
                self.admission.replace_validating_webhook_configuration, name, dict(body)
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def patch_pod_labels(
        self, namespace: str, name: str, labels: Mapping[str, str | None]
    ) -> None:
        await self._call(
            self.core.patch_namespaced_pod, name, namespace, {"metadata": {"labels": dict(labels)}}
        )

    # --- rollouts ---------------------------------------------------------------

    async def remove_annotation(self, kind: str, namespace: str, name: str, key: str) -> None:
        """Merge-patch ``metadata.annotations[key]`` away (a one-shot action was taken)."""
        try:
            await self._leader_call(
                self.custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURALS[kind],
                name,
                {"metadata": {"annotations": {key: None}}},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def list_config_maps(self, namespace: str | None, selector: str) -> list[Body]:
        if namespace:
            result = await self._call(
                self.core.list_namespaced_config_map, namespace, label_selector=selector
            )
        else:
            result = await self._call(
                self.core.list_config_map_for_all_namespaces, label_selector=selector
            )
        return [self._plain(item) for item in result.items]

    async def get_config_map(self, namespace: str, name: str) -> Body | None:
        try:
            cm = await self._call(self.core.read_namespaced_config_map, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return self._plain(cm)

    async def create_config_map(self, namespace: str, body: Mapping[str, Any]) -> bool:
        """False if it exists already."""
        try:
            await self._leader_call(self.core.create_namespaced_config_map, namespace, dict(body))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def replace_config_map(self, namespace: str, name: str, body: Mapping[str, Any]) -> bool:
        """False on a conflict (someone else wrote it since it was read)."""
        try:
            await self._leader_call(
                self.core.replace_namespaced_config_map, name, namespace, dict(body)
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    async def publish_config_map(
        self, namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        """Create or update ConfigMap ``name`` to hold ``data``; True if it changed.

        Not fenced: every replica publishes the same content before it serves (the link
        CA of a shared Secret), so it never depends on who leads.
        """
        for _ in range(5):
            try:
                found = self._plain(
                    await self._call(self.core.read_namespaced_config_map, name, namespace)
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                found = None
            if found is not None and found.get("data") == dict(data):
                return False
            body: Body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
                "data": dict(data),
            }
            try:
                if found is None:
                    await self._call(self.core.create_namespaced_config_map, namespace, body)
                else:
                    body["metadata"]["resourceVersion"] = found["metadata"]["resourceVersion"]
                    await self._call(self.core.replace_namespaced_config_map, name, namespace, body)
                return True
            except ApiException as exc:
                if exc.status not in (409, 404):
                    raise
        raise RuntimeError(f"ConfigMap {namespace}/{name} keeps changing; gave up")
