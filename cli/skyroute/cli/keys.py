"""``skyroute keys create|list|revoke``: API keys of a Tenant.

A key (``sk-sr-<id>-<secret>``) is made here, printed once as the last line of
stdout, and never stored: only its public id and SHA-256 digest are written.

- Folder mode (``--source DIR``): into the Tenant's own file, ``spec.keys``.
  The edit is textual (comments and layout survive) and is checked by parsing
  the result; if that check fails, the file is rewritten from its parsed form.
- Kubernetes (``--namespace NS``): a Secret ``skyroute-key-<id>`` labelled
  ``skyroute.io/tenant=<name>`` holding the id, digest and expiry. Revoking
  deletes it.

Exit codes: 0 done, 1 not found (tenant or key), 2 bad input or unreachable.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from skyroute.router.ingress.guards.keys import generate

TENANT_LABEL = "skyroute.io/tenant"
KEY_LABEL = "skyroute.io/key-id"
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class KeysError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def parse_duration(text: str) -> dt.timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise KeysError(f"--expires {text!r}: expected a number and s, m, h, d or w (e.g. 90d)")
    return dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- folder mode ---------------------------------------------------------------


def _split(text: str) -> list[str]:
    """The file's documents as text, each with its own '---' line (if any)."""
    parts: list[str] = []
    cur: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.rstrip() == "---" and cur:
            parts.append("".join(cur))
            cur = []
        cur.append(line)
    parts.append("".join(cur))
    return parts


def _is_tenant(doc: Any, name: str) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("kind") == "Tenant"
        and isinstance(doc.get("metadata"), dict)
        and doc["metadata"].get("name") == name
    )


def _find(folder: Path, tenant: str) -> tuple[Path, int]:
    from skyroute.control.policy.loader import yaml_files

    for path in yaml_files(folder):
        parts = _split(path.read_text(encoding="utf-8"))
        for i, part in enumerate(parts):
            try:
                doc = yaml.safe_load(part)
            except yaml.YAMLError:
                continue
            if _is_tenant(doc, tenant):
                return path, i
    raise KeysError(f"Tenant {tenant!r} not found in {folder}", code=1)


def _key_lines(entry: dict[str, Any], indent: str) -> str:
    # Quoted: a hex id may be all digits ("123456789012"), which YAML reads as a number.
    out = f'{indent}- id: "{entry["id"]}"\n'
    for k in ("digest", "expiresAt", "revoked"):
        if k in entry:
            v = entry[k]
            shown = "true" if v is True else f'"{v}"' if k == "expiresAt" else str(v)
            out += f"{indent}  {k}: {shown}\n"
    return out


def _insert_key(part: str, entry: dict[str, Any]) -> str:
    """The document's text with ``entry`` appended to spec.keys (textual edit)."""
    lines = part.splitlines(keepends=True)
    spec = next((i for i, ln in enumerate(lines) if re.match(r"^spec:\s*$", ln)), None)
    if spec is None:
        return part
    # The end of spec: the next line at column 0 that is not a comment or blank.
    end = next(
        (i for i in range(spec + 1, len(lines)) if re.match(r"^[^\s#]", lines[i])), len(lines)
    )
    keys = next(
        (i for i in range(spec + 1, end) if re.match(r"^  keys:\s*(\[\])?\s*$", lines[i])), None
    )
    if keys is None:
        while end > spec + 1 and not lines[end - 1].strip():
            end -= 1
        tail = "" if lines[end - 1].endswith("\n") else "\n"
        block = tail + "  keys:\n" + _key_lines(entry, "    ")
        return "".join(lines[:end]) + block + "".join(lines[end:])
    if lines[keys].rstrip().endswith("[]"):
        lines[keys] = "  keys:\n"
    stop = next((i for i in range(keys + 1, end) if re.match(r"^ {0,2}\S", lines[i])), end)
    while stop > keys + 1 and not lines[stop - 1].strip():
        stop -= 1
    item = next((ln for ln in lines[keys + 1 : stop] if ln.lstrip().startswith("- ")), None)
    indent = item[: len(item) - len(item.lstrip())] if item else "    "
    return "".join(lines[:stop]) + _key_lines(entry, indent) + "".join(lines[stop:])


def _revoke_text(part: str, key_id: str) -> str:
    pat = re.compile(rf"^(\s*)- id:\s*['\"]?{re.escape(key_id)}['\"]?\s*$")
    lines = part.splitlines(keepends=True)
    for i, ln in enumerate(lines):
        m = pat.match(ln)
        if m:
            lines.insert(i + 1, f"{m.group(1)}  revoked: true\n")
            return "".join(lines)
    return part


def _write(path: Path, parts: list[str], i: int, new_part: str, check: Any) -> None:
    """Write the edited document, or the parsed-and-fixed one if the textual edit is off."""
    try:
        ok = check(yaml.safe_load(new_part))
    except yaml.YAMLError:
        ok = False
    if not ok:
        doc = yaml.safe_load(parts[i])
        check(doc, fix=True)
        head = "---\n" if parts[i].startswith("---") else ""
        new_part = head + yaml.safe_dump(doc, sort_keys=False)
    parts[i] = new_part
    path.write_text("".join(parts), encoding="utf-8")


def create_folder(folder: Path, tenant: str, expires: dt.datetime | None) -> tuple[str, str]:
    path, i = _find(folder, tenant)
    parts = _split(path.read_text(encoding="utf-8"))
    new = generate()
    entry: dict[str, Any] = {"id": new.key_id, "digest": new.digest}
    if expires is not None:
        entry["expiresAt"] = _stamp(expires)

    def check(doc: Any, fix: bool = False) -> bool:
        keys = doc.setdefault("spec", {}).setdefault("keys", []) if fix else None
        if fix and keys is not None:
            keys.append(entry)
        found = (doc.get("spec") or {}).get("keys") or []
        return _is_tenant(doc, tenant) and entry in found

    _write(path, parts, i, _insert_key(parts[i], entry), check)
    return new.key_id, new.key


def revoke_folder(folder: Path, tenant: str, key_id: str) -> None:
    path, i = _find(folder, tenant)
    parts = _split(path.read_text(encoding="utf-8"))
    keys = (yaml.safe_load(parts[i]).get("spec") or {}).get("keys") or []
    if not any(k.get("id") == key_id for k in keys):
        raise KeysError(f"key {key_id} not found in Tenant {tenant}", code=1)

    def check(doc: Any, fix: bool = False) -> bool:
        for k in (doc.get("spec") or {}).get("keys") or []:
            if k.get("id") == key_id:
                if fix:
                    k["revoked"] = True
                return k.get("revoked") is True
        return False

    _write(path, parts, i, _revoke_text(parts[i], key_id), check)


def list_folder(folder: Path, tenant: str | None) -> list[dict[str, Any]]:
    from skyroute.control.policy.loader import load_folder

    rows = []
    for doc in load_folder(folder):
        if doc.kind != "Tenant" or (tenant and doc.name != tenant):
            continue
        for k in (doc.data.get("spec") or {}).get("keys") or []:
            rows.append(
                {
                    "tenant": doc.name,
                    "id": k.get("id", ""),
                    "expiresAt": k.get("expiresAt") or "never",
                    "revoked": bool(k.get("revoked", False)),
                }
            )
    return rows


# --- Kubernetes mode -----------------------------------------------------------


def _core(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except Exception as e:
        raise KeysError(f"no usable kubeconfig: {e}") from None
    return client.CoreV1Api()


def create_kube(
    namespace: str, tenant: str, expires: dt.datetime | None, kubeconfig: str | None
) -> tuple[str, str]:
    from kubernetes import client

    api = _core(kubeconfig)
    new = generate()
    data = {"id": new.key_id, "digest": new.digest}
    if expires is not None:
        data["expiresAt"] = _stamp(expires)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=f"skyroute-key-{new.key_id}",
            namespace=namespace,
            labels={TENANT_LABEL: tenant, KEY_LABEL: new.key_id},
        ),
        string_data=data,
        type="Opaque",
    )
    try:
        api.create_namespaced_secret(namespace, body)
    except Exception as e:
        raise KeysError(f"could not create the key Secret: {e}") from None
    return new.key_id, new.key


def list_kube(namespace: str, tenant: str | None, kubeconfig: str | None) -> list[dict[str, Any]]:
    import base64

    api = _core(kubeconfig)
    selector = f"{TENANT_LABEL}={tenant}" if tenant else TENANT_LABEL
    try:
        items = api.list_namespaced_secret(namespace, label_selector=selector).items
    except Exception as e:
        raise KeysError(f"could not list key Secrets: {e}") from None
    rows = []
    for s in items:
        data = {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}
        rows.append(
            {
                "tenant": s.metadata.labels.get(TENANT_LABEL, ""),
                "id": data.get("id", ""),
                "expiresAt": data.get("expiresAt") or "never",
                "revoked": False,
            }
        )
    return sorted(rows, key=lambda r: (r["tenant"], r["id"]))


def revoke_kube(namespace: str, tenant: str, key_id: str, kubeconfig: str | None) -> None:
    api = _core(kubeconfig)
    name = f"skyroute-key-{key_id}"
    try:
        secret = api.read_namespaced_secret(name, namespace)
    except Exception:
        raise KeysError(f"key {key_id} not found in namespace {namespace}", code=1) from None
    if (secret.metadata.labels or {}).get(TENANT_LABEL) != tenant:
        raise KeysError(f"key {key_id} does not belong to Tenant {tenant}", code=1)
    api.delete_namespaced_secret(name, namespace)


# --- entry points --------------------------------------------------------------


def main(args: Any) -> int:
    try:
        return _run(args)
    except KeysError as e:
        print(f"skyroute keys: {e}", file=sys.stderr)
        return e.code


def _run(args: Any) -> int:
    source = Path(args.source) if args.source else None
    if args.keys_command == "create":
        expires = dt.datetime.now(dt.UTC) + parse_duration(args.expires) if args.expires else None
        if source is not None:
            key_id, key = create_folder(source, args.tenant, expires)
            where = f"{source} (Tenant {args.tenant}, spec.keys)"
        else:
            key_id, key = create_kube(args.namespace, args.tenant, expires, args.kubeconfig)
            where = f"Secret {args.namespace}/skyroute-key-{key_id}"
        until = f", expires {_stamp(expires)}" if expires else ""
        print(f"created key {key_id} for Tenant {args.tenant} in {where}{until}.")
        print("The key is shown once; store it now:")
        print(key)
        return 0
    if args.keys_command == "list":
        rows = (
            list_folder(source, args.tenant)
            if source is not None
            else list_kube(args.namespace, args.tenant, args.kubeconfig)
        )
        print(f"{'TENANT':<24} {'ID':<14} {'EXPIRES':<22} REVOKED")
        for r in rows:
            print(f"{r['tenant']:<24} {r['id']:<14} {r['expiresAt']:<22} {r['revoked']}")
        return 0
    if source is not None:
        revoke_folder(source, args.tenant, args.key_id)
    else:
        revoke_kube(args.namespace, args.tenant, args.key_id, args.kubeconfig)
    print(f"revoked key {args.key_id} of Tenant {args.tenant}")
    return 0
