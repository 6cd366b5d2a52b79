"""What the ``skyroute policy`` commands share: loading policy files, reporting problems.

Policies are read from files and folders, validated and compiled exactly as
``skyroute control`` does; any problem is reported by file, object and field,
as plain lines or JSON, with exit code 2. ``policy`` (test, explain) and
``policy_diff`` both build on this module, and neither on the other's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from skyroute.control.policy.compiler import compile_objects
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.loader import SourceDocument, load_folder, load_text
from skyroute.control.policy.validate import Objects, validate
from skyroute.v1 import snapshot_pb2

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def consoles() -> tuple[Console, Console]:
    """stdout and stderr consoles: no highlighting guesses, wide enough for CI logs."""
    out = Console(highlight=False)
    err = Console(highlight=False, stderr=True)
    for c in (out, err):
        if not c.is_terminal:
            c.width = max(c.width, 160)
    return out, err


def emit_json(data: Any) -> None:
    """Machine output: plain JSON on stdout, never wrapped or coloured."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


# --- input -----------------------------------------------------------------------------


def _file_problem(file: str, exc: Exception) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    kind = "YAML syntax error" if isinstance(exc, yaml.YAMLError) else "YAML value error"
    return Problem(
        file=file, line=mark.line + 1 if mark is not None else None, message=f"{kind}: {detail}"
    )


def load_sources(paths: Sequence[str]) -> list[SourceDocument]:
    """Every skyroute.io document of the given files and folders; PolicyError lists all."""
    docs: list[SourceDocument] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                docs.extend(load_folder(path))
            except PolicyError as exc:
                problems.extend(exc.problems)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = "no such file or folder" if not path.exists() else f"cannot read: {exc}"
            problems.append(Problem(file=raw, message=reason))
            continue
        try:
            docs.extend(load_text(text, raw, problems))
        except (yaml.YAMLError, ValueError) as exc:
            problems.append(_file_problem(raw, exc))
    if not problems and not docs:
        problems.append(
            Problem(
                file=", ".join(paths),
                message="no skyroute.io ModelPool or RoutingPolicy objects found",
            )
        )
    if problems:
        raise PolicyError(problems)
    return docs


def compile_sources(
    paths: Sequence[str], env_prefixes: Sequence[str] = ()
) -> tuple[snapshot_pb2.Snapshot, Objects]:
    """Validated and compiled as ``skyroute control`` would, tests not run; PolicyError.

    ``env_prefixes`` are the ``--secret-env-prefix`` values the control plane and the
    routers run with: a pool's ``apiKey.env`` naming another variable is a problem.
    """
    objects = validate(load_sources(paths), env_prefixes)
    return compile_objects(objects, run_tests=False), objects


def problem_dict(p: Problem) -> dict[str, Any]:
    return {
        "file": p.file,
        "object": p.obj,
        "path": p.path,
        "line": p.line,
        "message": p.message,
        "text": str(p),
    }


def invalid(exc: PolicyError, as_json: bool, out: Console, err: Console) -> int:
    if as_json:
        emit_json(
            {"ok": False, "invalid": True, "problems": [problem_dict(p) for p in exc.problems]}
        )
    else:
        err.print(f"invalid input ({len(exc.problems)} problem(s)):", markup=False)
        for p in exc.problems:
            err.print(str(p), markup=False, soft_wrap=True)
    return EXIT_INVALID
