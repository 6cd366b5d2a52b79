"""``skyroute evals backfill``: offline quality scores from a labelled traffic sample.

The decision engine weighs each candidate's quality for the request's intent,
and those numbers must come from somewhere better than a guess typed into a
ModelPool. The cheapest honest source is the traffic itself: take a sample of
real requests, have them graded (by people or by a grader model, offline),
and average the grades per (model, intent). This module turns such a sample
into ``quality`` entries plus provenance (``evals``: the eval set's name, the
day and the sample counts), so anyone reading a pool can tell a measured
score from a hand-set prior, and how much evidence is behind it.

Sample format (JSON Lines, one object per graded request)::

    {"intent": "faq.refund", "model": "gemini-3-flash", "score": 0.8}
    {"intent": "tools.invoice", "model": "gpt-5.2-high", "pass": true}
    {"intent": "faq.pricing", "model": "claude-4.5-haiku", "correct": false}

``intent`` (a concrete intent name) and ``model`` (a ModelPool model name)
are required, plus exactly one label: ``score`` (a number in [0, 1]) or
``pass`` / ``correct`` (booleans, counted as 1 or 0). ``id``, ``pool``,
``grader`` (strings) and ``meta`` (any object) may be present and are
ignored. Any other field is an error, as is a malformed line: a typo such as
``scroe`` must not silently drop a label. Errors name ``file:line`` and the
field; blank lines are skipped.

Only concrete intents are written, as literal ``quality`` keys: they beat any
glob (``faq.*``, ``*``) for that intent at compile time, and the globs stay as
priors for intents the sample does not cover. A (model, intent) pair with
fewer than ``--min-samples`` graded requests is skipped and reported, because
a mean of three grades is noise that would then steer real traffic. A model
that appears in several pools is updated in each; ``evals`` is replaced, not
merged, so it always describes one eval run.

Rewriting keeps the files as people wrote them: only the ``quality`` and
``evals`` values of the touched models are replaced in the text, so comments,
key order and formatting elsewhere survive (comments *inside* a replaced
block-style value are lost). The result is re-parsed and compared with the
intended data, and, when ``--pools`` is a folder, compiled as a whole before
anything is written; nothing is written on any failure or without ``--write``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from skyroute.control.learning.evalsample import EvalsError, Tally, read_sample
from skyroute.control.policy.compiler import compile_folder, resolve_quality
from skyroute.control.policy.errors import PolicyError
from skyroute.control.policy.loader import yaml_files
from skyroute.control.policy.model import GROUP, KIND_POLICY, KIND_POOL, EvalProvenance

DEFAULT_MIN_SAMPLES = 20
_WIDTH = 99
_PLAIN_KEY = re.compile(r"^[a-z][a-zA-Z0-9]*$")


@dataclass(frozen=True, slots=True)
class Change:
    """One quality score written (or to be written)."""

    file: str
    pool: str
    model: str
    intent: str
    samples: int
    old: float | None
    new: float


@dataclass(slots=True)
class Backfill:
    """The planned rewrite: new file texts, the score changes and what was skipped."""

    eval_set: str
    evaluated_at: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    texts: dict[Path, str] = field(default_factory=dict)


# --- planning the rewrite ----------------------------------------------------


def backfill(
    sample: Path,
    pools: Path,
    *,
    eval_set: str | None = None,
    evaluated_at: str | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Backfill:
    """Plan the rewrite of the ModelPool YAML under ``pools`` (a file or folder).

    Nothing is written; see ``write_backfill``. Raises EvalsError on bad input,
    including a rewrite that would not validate (or, for a folder, compile).
    """
    if min_samples < 1:
        raise EvalsError([f"--min-samples must be at least 1, got {min_samples}"])
    name = eval_set if eval_set is not None else sample.stem
    day = evaluated_at or datetime.now(UTC).date().isoformat()
    try:
        EvalProvenance.model_validate({"evalSet": name, "evaluatedAt": day})
    except ValueError as exc:
        hint = "" if eval_set is not None else " (derived from the file name; pass --eval-set)"
        raise EvalsError([f"bad --eval-set {name!r} or --date {day!r}{hint}: {exc}"]) from None
    if not pools.exists():
        raise EvalsError([f"{pools}: not found"])
    tallies = read_sample(sample)
    files = yaml_files(pools) if pools.is_dir() else [pools]
    folder = pools if pools.is_dir() else pools.parent
    plan = Backfill(eval_set=name, evaluated_at=day)
    intents = _policy_intents(yaml_files(folder))
    seen_models: set[str] = set()
    for path in files:
        text = _read(path)
        new_text = _rewrite_file(path, text, tallies, intents, min_samples, plan, seen_models)
        if new_text != text:
            plan.texts[path] = new_text
    for model in sorted({m for m, _ in tallies} - seen_models):
        plan.notes.append(f"skip model {model}: not in any ModelPool under {pools}")
    if pools.is_dir() and plan.texts:
        _check_compiles(pools, plan.texts)
    return plan


def write_backfill(plan: Backfill) -> list[Path]:
    """Write the planned texts; returns the files written."""
    for path, text in plan.texts.items():
        path.write_text(text, encoding="utf-8")
    return sorted(plan.texts)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalsError([f"{path}: cannot read: {exc}"]) from None


def _documents(path: Path, text: str) -> list[tuple[yaml.Node, Any]]:
    # The pure-Python loader: its marks count characters, which the rewrite slices by.
    loader = yaml.SafeLoader(text)
    docs: list[tuple[yaml.Node, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                docs.append((node, loader.construct_document(node)))
    except yaml.YAMLError as exc:
        raise EvalsError([f"{path}: YAML syntax error: {exc}"]) from None
    finally:
        loader.dispose()
    return docs


def _ours(data: Any, kind: str) -> bool:
    api = data.get("apiVersion") if isinstance(data, dict) else None
    return isinstance(api, str) and api.split("/", 1)[0] == GROUP and data.get("kind") == kind


def _namespace(data: Mapping[str, Any]) -> str:
    meta = data.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return ns if isinstance(ns, str) and ns else "default"


def _policy_intents(paths: Sequence[Path]) -> dict[str, set[str]]:
    """Namespace -> intents declared by its RoutingPolicies (read loosely: names only)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for _, data in _documents(path, _read(path)):
            if not _ours(data, KIND_POLICY):
                continue
            spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
            names = found.setdefault(_namespace(data), set())
            for intent in spec.get("intents") or []:
                if isinstance(intent, dict) and isinstance(intent.get("name"), str):
                    names.add(intent["name"])
    return found


def _entry(node: yaml.Node, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k, v
    return None


def _content_end(node: yaml.Node) -> int:
    """Where a value's own text ends (a block collection's end mark runs into the next line)."""
    block = isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style
    if block and node.value:
        last = node.value[-1]
        return _content_end(last[1] if isinstance(last, tuple) else last)
    return int(node.end_mark.index)


def _rewrite_file(
    path: Path,
    text: str,
    tallies: Mapping[tuple[str, str], Tally],
    intents: Mapping[str, set[str]],
    min_samples: int,
    plan: Backfill,
    seen_models: set[str],
) -> str:
    edits: list[tuple[int, int, str]] = []
    docs = _documents(path, text)
    expected: list[Any] = []
    for node, data in docs:
        expected.append(data)
        if not _ours(data, KIND_POOL):
            continue
        ns = _namespace(data)
        pool_name = (data.get("metadata") or {}).get("name", "?")
        pool = pool_name if ns == "default" else f"{ns}/{pool_name}"
        spec = _entry(node, "spec")
        models = _entry(spec[1], "models") if spec is not None else None
        if models is None or not isinstance(models[1], yaml.SequenceNode):
            continue
        for i, m_node in enumerate(models[1].value):
            m_data = data["spec"]["models"][i]
            name = m_data.get("name") if isinstance(m_data, dict) else None
            if not isinstance(name, str):
                continue
            measured: dict[str, Tally] = {}
            for (model, intent), tally in sorted(tallies.items()):
                if model != name:
                    continue
                seen_models.add(model)
                label = f"{model} / {intent} in {pool}"
                if ns in intents and intent not in intents[ns]:
                    plan.notes.append(f"skip {label}: intent not declared by any RoutingPolicy")
                elif tally.count < min_samples:
                    plan.notes.append(
                        f"skip {label}: {tally.count} samples < --min-samples {min_samples}"
                    )
                else:
                    measured[intent] = tally
            if not measured:
                continue
            if not isinstance(m_node, yaml.MappingNode) or m_node.flow_style:
                line = m_node.start_mark.line + 1
                raise EvalsError(
                    [
                        f"{path}:{line}: model {name}: write it in block style "
                        "(one field per line) so that it can be rewritten"
                    ]
                )
            old = dict(m_data.get("quality") or {})
            new = dict(old)
            for intent, tally in measured.items():
                new[intent] = round(tally.mean, 4)
                before = resolve_quality(old, [intent]).get(intent)
                plan.changes.append(
                    Change(str(path), pool, name, intent, tally.count, before, new[intent])
                )
            evals = {
                "evalSet": plan.eval_set,
                "evaluatedAt": plan.evaluated_at,
                "samples": sum(t.count for t in measured.values()),
                "intentSamples": {k: t.count for k, t in measured.items()},
            }
            m_data["quality"], m_data["evals"] = new, evals
            edits.extend(_model_edits(text, m_node, new, evals))
    if not edits:
        return text
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    _verify(path, text, expected)
    return text


def _model_edits(
    text: str, node: yaml.MappingNode, quality: dict[str, Any], evals: dict[str, Any]
) -> list[tuple[int, int, str]]:
    edits: list[tuple[int, int, str]] = []
    column = node.value[0][0].start_mark.column
    missing = ""
    for key, value in (("quality", quality), ("evals", evals)):
        found = _entry(node, key)
        if found is None:
            missing += "\n" + " " * column + _render(key, value, column, key == "evals")
        else:
            k_node, v_node = found
            edits.append(
                (
                    k_node.end_mark.index,
                    _content_end(v_node),
                    _render(key, value, column, key == "evals")[len(key) :],
                )
            )
    if missing:
        # After the line quality (else the model) ends on, so a trailing comment stays put.
        found = _entry(node, "quality")
        newline = text.find("\n", _content_end(found[1] if found else node))
        at = len(text) if newline < 0 else newline
        edits.append((at, at, missing))
    return edits


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        whole, frac = f"{value:.4f}".rstrip("0").split(".")
        return f"{whole}.{frac.ljust(2, '0')}"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    return _scalar(value)


def _render(key: str, value: Any, column: int, block: bool = False) -> str:
    """``key: value`` at ``column``: flow style when it fits the line, else block style."""
    flow = f"{key}: {_flow(value)}"
    if not isinstance(value, dict) or (column + len(flow) <= _WIDTH and not block):
        return flow
    inner = column + 2
    lines = [" " * inner + _render(_key(k), v, inner) for k, v in value.items()]
    return f"{key}:\n" + "\n".join(lines)


def _verify(path: Path, text: str, expected: list[Any]) -> None:
    got = [data for _, data in _documents(path, text)]
    if got != expected:
        raise EvalsError(
            [
                f"{path}: the targeted rewrite did not reproduce the intended data "
                "(unusual YAML layout?); nothing written"
            ]
        )


def _check_compiles(folder: Path, texts: Mapping[Path, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="skyroute-evals-") as tmp:
        root = Path(tmp) / folder.name
        for path in yaml_files(folder):
            target = root / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path in texts:
                target.write_text(texts[path], encoding="utf-8")
            else:
                shutil.copyfile(path, target)
        try:
            compile_folder(root)
        except PolicyError as exc:
            problems = [str(p).replace(str(root), str(folder)) for p in exc.problems]
            raise EvalsError(["the backfilled pools would not compile:", *problems]) from None


# --- the command --------------------------------------------------------------


def _score(value: float | None) -> str:
    return "-" if value is None else _scalar(value)


def main(
    sample: str,
    pools: str,
    eval_set: str | None = None,
    date: str | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    write: bool = False,
    console: Console | None = None,
) -> int:
    """Run ``skyroute evals backfill``; 0 on success, 1 on bad input or nothing to do."""
    out = console or Console()
    err = console or Console(stderr=True)
    try:
        plan = backfill(
            Path(sample), Path(pools), eval_set=eval_set, evaluated_at=date, min_samples=min_samples
        )
    except EvalsError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {escape(problem)}", highlight=False, soft_wrap=True)
        return 1
    table = Table(title=f"quality from {plan.eval_set} ({plan.evaluated_at})")
    for column in ("pool", "model", "intent", "samples", "old", "new", "change"):
        table.add_column(
            column, justify="left" if column in ("pool", "model", "intent") else "right"
        )
    for c in plan.changes:
        delta = "new" if c.old is None else f"{c.new - c.old:+.2f}"
        style = (
            "" if c.old is None else "green" if c.new > c.old else "red" if c.new < c.old else ""
        )
        table.add_row(
            c.pool,
            c.model,
            c.intent,
            str(c.samples),
            _score(c.old),
            _score(c.new),
            f"[{style}]{delta}[/{style}]" if style else delta,
        )
    out.print(table)
    for note in plan.notes:
        out.print(f"[yellow]note[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    if not plan.changes:
        err.print("[red]error[/red] nothing to backfill (see the notes above)")
        return 1
    if not write:
        out.print(f"dry run: {len(plan.texts)} file(s) would change; pass --write to write them")
        return 0
    for path in write_backfill(plan):
        out.print(f"wrote {escape(str(path))}", highlight=False)
    return 0
