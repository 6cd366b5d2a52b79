"""``skyroute policy``: a routing policy's tests, its effect on traffic, a live decision.

Three questions people ask before and after changing a policy, each one
command:

* ``test FILE_OR_DIR...``: do the routing cases written in the policies
  (``spec.tests``) still hold? The objects are validated and compiled
  exactly as ``skyroute control`` does, then every case is decided by the
  router's own code. Exit 0 when all pass, 1 when a case fails, 2 when the
  input itself is invalid (each problem named by file, object and field),
  so the command drops into CI as it is. Failing cases are also printed as
  plain ``file: object: spec.tests[i]: ...`` lines, which survive any log
  viewer.
* ``validate FILE_OR_DIR...``: would ``skyroute control`` (or the operator)
  accept these objects? Both validation passes and the compile, no tests:
  exit 0, or 2 with every problem named by file, object and field.
* ``diff OLD NEW --sample FILE.jsonl``: what would the change do to real
  traffic? Every sampled request is decided under both versions and the
  differences counted: intent, pool and first model changes, a transition
  table (old pool/model to new pool/model) with a few example prompts each.
  A test pins the cases someone thought of; a diff over a traffic sample
  shows the ones nobody did.
* ``explain --router HOST:PORT PROMPT``: what does a running router decide,
  and why? It calls the Router API's ``Explain`` (a dry run: no model is
  called) and prints the decision with every candidate's score parts.

``test`` and ``diff`` decide deterministically (no live statistics, no
exploration), as the control plane's compile-time tests do. Output is a
rich table on a terminal, plain text in a pipe (rich drops colours when
stdout is not a tty, and honours ``NO_COLOR``), and JSON with ``--json``.
``validate``, ``test`` and ``diff`` take ``--secret-env-prefix`` as the control
plane does (``skyroute/keyrefs.py``): give them the values it runs with, so a
pool's ``apiKey.env`` that the control plane would refuse fails here first.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from skyroute.cli.policy_diff import main as run_diff
from skyroute.cli.policy_io import (
    EXIT_FAILED,
    EXIT_OK,
    compile_sources,
    consoles,
    emit_json,
    invalid,
    problem_dict,
)
from skyroute.control.policy.errors import PolicyError
from skyroute.control.policy.model import RoutingPolicy
from skyroute.control.policy.policytests import PolicyRun, problems_of, run_policies

# --- skyroute policy test --------------------------------------------------------------


def _run_table(run: PolicyRun, file: str) -> Table:
    passed = sum(c.passed for c in run.cases)
    t = Table(
        title=f"RoutingPolicy {run.policy} ({file}): {passed}/{len(run.cases)} passed",
        title_justify="left",
    )
    for name, justify in (
        ("#", "right"),
        ("case", "left"),
        ("expected", "left"),
        ("got", "left"),
        ("decided by", "left"),
        ("result", "left"),
    ):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in run.cases:
        t.add_row(
            str(c.index),
            c.name,
            c.expected_text(),
            c.got_text(),
            c.got.why(),
            "[green]pass[/]" if c.passed else "[bold red]FAIL[/]",
        )
    return t


def validate_main(
    paths: Sequence[str], as_json: bool = False, env_prefixes: Sequence[str] = ()
) -> int:
    """``skyroute policy validate``: 0 valid (and compiles), 2 invalid input."""
    out, err = consoles()
    try:
        snapshot, objects = compile_sources(paths, env_prefixes)
    except PolicyError as exc:
        return invalid(exc, as_json, out, err)
    counts = {
        "pools": len(objects.pools),
        "policies": len(objects.policies),
        "tenants": len(objects.tenants),
    }
    if as_json:
        emit_json({"ok": True, "invalid": False, "version": snapshot.version, **counts})
    else:
        what = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        out.print(f"valid: {what} (snapshot {snapshot.version})", markup=False)
    return EXIT_OK


def test_main(paths: Sequence[str], as_json: bool = False, env_prefixes: Sequence[str] = ()) -> int:
    """``skyroute policy test``: 0 all pass, 1 a case fails, 2 invalid input."""
    out, err = consoles()
    try:
        snapshot, objects = compile_sources(paths, env_prefixes)
    except PolicyError as exc:
        return invalid(exc, as_json, out, err)
    policies = [p.obj for p in objects.policies if isinstance(p.obj, RoutingPolicy)]
    files = {p.obj.ref: p.doc.file for p in objects.policies}
    runs = run_policies(snapshot, policies)
    failures = problems_of(runs, objects.policies)
    total = sum(len(r.cases) for r in runs)
    failed = sum(not c.passed for r in runs for c in r.cases)
    ok = not failures
    if as_json:
        emit_json(
            {
                "ok": ok,
                "invalid": False,
                "tests": total,
                "failed": failed,
                "policies": [
                    {
                        "policy": r.policy,
                        "file": files.get(r.policy, ""),
                        "error": r.error,
                        "cases": [c.as_dict() for c in r.cases],
                    }
                    for r in runs
                ],
                "problems": [problem_dict(p) for p in failures],
            }
        )
        return EXIT_OK if ok else EXIT_FAILED
    for run in runs:
        out.print(_run_table(run, files.get(run.policy, "")))
    untested = [p.ref for p in policies if not p.spec.tests]
    if untested:
        out.print(
            f"no tests: {', '.join('RoutingPolicy ' + r for r in untested)}",
            markup=False,
            soft_wrap=True,
        )
    for p in failures:
        out.print(str(p), markup=False, soft_wrap=True)
    if not runs:
        out.print("no policy has spec.tests: nothing to check", markup=False)
    elif ok:
        out.print(f"[green]all {total} tests passed[/] in {len(runs)} policies")
    else:
        broken = sum(bool(r.error) for r in runs)
        what = f"{failed} of {total} tests failed" + (
            f", {broken} policies could not run theirs" if broken else ""
        )
        out.print(f"[bold red]{what}[/]")
    return EXIT_OK if ok else EXIT_FAILED


# --- skyroute policy diff / explain ----------------------------------------------------


def diff_main(
    old: str,
    new: str,
    sample: str,
    policy: str | None = None,
    as_json: bool = False,
    examples: int = 3,
    env_prefixes: Sequence[str] = (),
) -> int:
    """``skyroute policy diff``: routing changes over a traffic sample (see policy_diff)."""
    return run_diff(old, new, sample, policy, as_json, examples, env_prefixes)


def explain_main(
    router: str,
    prompt: str,
    policy: str = "",
    *,
    user: str = "",
    tenant: str = "",
    locale: str = "",
    tier: str = "",
    intent: str = "",
    session: str = "",
    tools: bool = False,
    request_id: str = "",
    as_json: bool = False,
    timeout: float = 5.0,
) -> int:
    """``skyroute policy explain``: a live router's decision for one prompt (gRPC Explain)."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from skyroute.v1 import router_pb2, router_pb2_grpc

    out, err = consoles()
    request = router_pb2.CompletionRequest(
        policy=policy,
        messages=[router_pb2.Message(role="user", content=prompt)],
        user=user,
        tenant=tenant,
        locale=locale,
        user_tier=tier,
        intent=intent,
        session=session,
        request_id=request_id,
        tools=[router_pb2.Tool(name="tool", description="a tool offered with the request")]
        if tools
        else [],
    )
    try:
        with grpc.insecure_channel(router) as channel:
            d = router_pb2_grpc.RouterStub(channel).Explain(request, timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "ERROR"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        err.print(f"skyroute policy explain: router {router}: {code}: {details}", markup=False)
        return EXIT_FAILED
    if as_json:
        emit_json(
            MessageToDict(
                d, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
        )
        return EXIT_OK
    sig = d.signals
    lines = [
        ("policy", f"{d.policy} {d.policy_version}" + (f" (track {d.track})" if d.track else "")),
        ("snapshot", d.snapshot_version),
        (
            "intent",
            f"{sig.intent} from {sig.intent_source} "
            f"(confidence {sig.intent_confidence:.2f}, predicted tool use "
            f"{sig.predicted_tool_use:.2f})",
        ),
        (
            "signals",
            f"{sig.prompt_tokens} prompt tokens, tools {str(sig.has_tools).lower()}, "
            f"locale {sig.locale or '-'}, tier {sig.user_tier or '-'}, "
            f"tenant {sig.tenant or '-'}",
        ),
        *(
            [("learned", f"win probability {sig.win_probability:.3f} (strong over weak)")]
            if any(r.startswith("win probability") for r in d.reasons)
            else []
        ),
        ("rule", d.rule),
        ("pool", d.pool),
        ("chain", " -> ".join(d.chain) or "(no candidate can serve this request)"),
        ("cacheable", str(d.cacheable).lower()),
    ]
    for key, value in lines:
        out.print(f"{key + ':':<11}{value}", markup=False, soft_wrap=True)
    if d.scores:
        t = Table(title=f"candidates ({d.selection or 'scored'})", title_justify="left")
        columns = (
            "model",
            "score",
            "= cost",
            "+ latency",
            "+ failures",
            "+ quality",
            "expected $",
            "p95 ms",
            "failures",
            "quality",
            "prior",
            "n",
            "draw",
            "excluded",
        )
        for name in columns:
            t.add_column(name, justify="left" if name in ("model", "excluded") else "right")
        for s in d.scores:
            t.add_row(
                s.model,
                f"{s.score:.3f}",
                f"{s.cost_term:.3f}",
                f"{s.latency_term:.3f}",
                f"{s.failure_term:.3f}",
                f"{s.quality_term:.3f}",
                f"{s.expected_cost_usd:.6f}",
                f"{s.p95_ms:.0f}" if s.p95_ms else "?",
                f"{s.failure_rate:.1%}",
                f"{s.quality:.2f}",
                f"{s.quality_prior:.2f}" if s.quality_n else "",
                f"{s.quality_n:g}" if s.quality_n else "",
                f"{s.quality_draw:.3f}" if s.HasField("quality_draw") else "",
                s.excluded or "",
            )
        out.print(t)
    out.print("reasons:", markup=False)
    for reason in d.reasons:
        out.print(f"  - {reason}", markup=False, soft_wrap=True)
    return EXIT_OK
