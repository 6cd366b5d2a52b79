"""``skyroute policy diff``: what a policy change does to a sample of real traffic.

A reviewer reading a policy diff sees keywords and rules move; what they
need to know is where requests will go. This command decides every request
of a traffic sample under the old and the new set of pools and policies,
with the router's own code, and reports the differences: how many requests
change intent, pool or first model, a transition table (``cost /
gemini-3-flash -> balanced / gpt-5.2: 12``) and a few example prompts per
transition, so "why did these move" can be answered by reading them.

The sample is JSON Lines in the shape of ``examples/acmeshop/traffic-sample
.jsonl`` (what the demo replays): each line an object with ``body`` (an
OpenAI chat request: ``messages``, optional ``tools``, ``model`` naming the
policy, ``auto`` or absent for the default one) and the request signals a
router reads from headers: ``tenant``, ``locale``, ``user_tier`` and
optionally ``declared_intent``. A line's ``intent`` is a *label* (what a
person says the request is), never sent to the router; when labels are
present the report also says how many requests each version classifies as
labelled. A bare chat request (``messages`` at the top level) is accepted
too. A malformed line is an error naming ``file:line``, exit 2.

Decisions are deterministic (no live statistics, no exploration), so the
same inputs always print the same report; the exit code is 0 whatever
changed, because a change is what a diff is for.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from skyroute.cli.policy_io import EXIT_OK, compile_sources, consoles, emit_json, invalid
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.policytests import Decided, decide_request, keyless_snapshot
from skyroute.router.signals import signals_from_messages
from skyroute.router.table import RoutingTable, SnapshotError, build_table

NO_POLICY = "(no policy)"
_PROMPT_CHARS = 90


@dataclass(frozen=True, slots=True)
class SampleRequest:
    line: int
    policy: str
    messages: list[dict[str, Any]]
    has_tools: bool
    locale: str
    user_tier: str
    tenant: str
    declared_intent: str
    label: str

    @property
    def prompt(self) -> str:
        """The last user message, on one line, cut for display."""
        text = ""
        for m in self.messages:
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                text = m["content"]
        text = " ".join(text.split())
        return text if len(text) <= _PROMPT_CHARS else text[: _PROMPT_CHARS - 3] + "..."


def _text(rec: Mapping[str, Any], key: str, file: str, line: int) -> str:
    value = rec.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PolicyError([Problem(file=f"{file}:{line}", message=f"{key}: must be a string")])
    return value


def read_sample(path: str, policy: str | None) -> list[SampleRequest]:
    """The sample's requests; PolicyError naming ``file:line`` for every malformed one."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError([Problem(file=path, message=f"cannot read the sample: {exc}")]) from None
    out: list[SampleRequest] = []
    problems: list[Problem] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError("a line must be a JSON object")
            body = rec.get("body", rec)
            messages = body.get("messages") if isinstance(body, dict) else None
            if (
                not isinstance(messages, list)
                or not messages
                or not all(isinstance(m, dict) for m in messages)
            ):
                raise ValueError("body.messages: must be a non-empty list of message objects")
            model = body.get("model") or "auto"
            out.append(
                SampleRequest(
                    line=number,
                    policy=policy or str(model),
                    messages=messages,
                    has_tools=bool(body.get("tools")),
                    locale=_text(rec, "locale", path, number),
                    user_tier=_text(rec, "user_tier", path, number),
                    tenant=_text(rec, "tenant", path, number),
                    declared_intent=_text(rec, "declared_intent", path, number),
                    label=_text(rec, "intent", path, number),
                )
            )
        except PolicyError as exc:
            problems.extend(exc.problems)
        except ValueError as exc:  # json.JSONDecodeError included
            problems.append(Problem(file=f"{path}:{number}", message=str(exc)))
    if not out and not problems:
        problems.append(Problem(file=path, message="the sample has no requests"))
    if problems:
        raise PolicyError(problems)
    return out


def decide_sample(table: RoutingTable, req: SampleRequest) -> Decided | None:
    policy = table.policy(req.policy)
    if policy is None:
        return None
    s = signals_from_messages(
        req.messages,
        req.has_tools,
        locale=req.locale,
        user_tier=req.user_tier,
        tenant=req.tenant,
        declared_intent=req.declared_intent,
    )
    return decide_request(policy, s)


def _route(d: Decided | None) -> tuple[str, str]:
    return (NO_POLICY, "") if d is None else (d.pool, d.model or "(none)")


def _intent(d: Decided | None) -> str:
    return NO_POLICY if d is None else d.intent


def compare(
    old: RoutingTable, new: RoutingTable, sample: list[SampleRequest], examples: int = 3
) -> dict[str, Any]:
    """The report as data: counts, routing and intent transitions with example prompts."""
    changed: Counter[str] = Counter()
    routes: dict[tuple[tuple[str, str], tuple[str, str]], list[str]] = defaultdict(list)
    intents: dict[tuple[str, str], list[str]] = defaultdict(list)
    labelled = 0
    matches: Counter[str] = Counter()
    for req in sample:
        a, b = decide_sample(old, req), decide_sample(new, req)
        ra, rb = _route(a), _route(b)
        changed["intent"] += _intent(a) != _intent(b)
        changed["pool"] += ra[0] != rb[0]
        changed["model"] += ra[1] != rb[1]
        changed["routing"] += ra != rb
        if ra != rb:
            routes[(ra, rb)].append(req.prompt)
        if _intent(a) != _intent(b):
            intents[(_intent(a), _intent(b))].append(req.prompt)
        if req.label:
            labelled += 1
            matches["old"] += _intent(a) == req.label
            matches["new"] += _intent(b) == req.label

    def ordered(groups: Mapping[Any, list[str]]) -> list[tuple[Any, list[str]]]:
        return sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))

    return {
        "requests": len(sample),
        "changed": {k: changed[k] for k in ("intent", "pool", "model", "routing")},
        "transitions": [
            {
                "from": {"pool": f[0], "model": f[1]},
                "to": {"pool": t[0], "model": t[1]},
                "count": len(p),
                "examples": p[:examples],
            }
            for (f, t), p in ordered(routes)
        ],
        "intent_transitions": [
            {"from": f, "to": t, "count": len(p), "examples": p[:examples]}
            for (f, t), p in ordered(intents)
        ],
        "labelled": labelled,
        "label_matches": {"old": matches["old"], "new": matches["new"]},
    }


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    t = Table(title=title, title_justify="left")
    for name in columns:
        t.add_column(name, justify="right" if name == "requests" else "left")
    for row in rows:
        t.add_row(*row)
    return t


def _pct(n: int, total: int) -> str:
    return f"{n} ({n / total:.1%})" if total else str(n)


def main(
    old: str,
    new: str,
    sample: str,
    policy: str | None = None,
    as_json: bool = False,
    examples: int = 3,
    env_prefixes: Sequence[str] = (),
) -> int:
    out, err = consoles()
    try:
        tables = []
        for side in (old, new):
            snapshot, _ = compile_sources([side], env_prefixes)
            try:
                tables.append(build_table(keyless_snapshot(snapshot)))
            except SnapshotError as exc:
                raise PolicyError(
                    [Problem(file=side, message=f"routers would refuse it: {exc}")]
                ) from None
        requests = read_sample(sample, policy)
    except PolicyError as exc:
        return invalid(exc, as_json, out, err)
    if policy is not None and all(t.policy(policy) is None for t in tables):
        problem = Problem(file=f"{old}, {new}", message=f'no RoutingPolicy "{policy}" in either')
        return invalid(PolicyError([problem]), as_json, out, err)
    report = compare(tables[0], tables[1], requests, examples)
    if as_json:
        emit_json({"old": old, "new": new, "sample": sample, "policy": policy, **report})
        return EXIT_OK
    n = report["requests"]
    ch = report["changed"]
    out.print(f"{n} requests from {sample}: {old} -> {new}", markup=False, soft_wrap=True)
    out.print(
        _table(
            "changes",
            ("what", "requests"),
            [
                ("intent changed", _pct(ch["intent"], n)),
                ("pool changed", _pct(ch["pool"], n)),
                ("first model changed", _pct(ch["model"], n)),
                ("routing changed (pool or model)", _pct(ch["routing"], n)),
            ],
        )
    )
    if report["transitions"]:
        out.print(
            _table(
                "routing transitions",
                ("old pool / model", "new pool / model", "requests", "examples"),
                [
                    (
                        f"{t['from']['pool']} / {t['from']['model']}",
                        f"{t['to']['pool']} / {t['to']['model']}",
                        str(t["count"]),
                        "\n".join(t["examples"]),
                    )
                    for t in report["transitions"]
                ],
            )
        )
    if report["intent_transitions"]:
        out.print(
            _table(
                "intent transitions",
                ("old intent", "new intent", "requests", "examples"),
                [
                    (t["from"], t["to"], str(t["count"]), "\n".join(t["examples"]))
                    for t in report["intent_transitions"]
                ],
            )
        )
    if report["labelled"]:
        m = report["label_matches"]
        out.print(
            f"intent as labelled in the sample: old {m['old']}/{report['labelled']}, "
            f"new {m['new']}/{report['labelled']}",
            markup=False,
        )
    if not ch["routing"] and not ch["intent"]:
        out.print("no routing changes", markup=False)
    return EXIT_OK
