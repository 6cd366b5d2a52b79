"""Reading a folder of YAML into skyroute objects, with line numbers kept.

The source of truth off-cluster is a folder, laid out the way people keep
Kubernetes manifests: several objects per file (``---``), files of other
kinds mixed in (the demo's scenario lives beside the policy). Only documents
whose ``apiVersion`` is in the ``skyroute.io`` group are ours; everything else
is skipped with a debug log, so unrelated manifests never block a rollout.

A syntax error anywhere in a YAML file does block it, though: a broken file
might hold the very object the operator just edited, and compiling without it
would silently drop a policy. The error names the file and line.

Documents are composed to nodes before they are constructed so that each
field path (``spec.rules[1].pool``) can later be mapped to the line it came
from; validation errors then point at a line, not just a file. Files and
folders starting with a dot are ignored, which also skips the ``..data``
indirection of a mounted ConfigMap (its top-level links are followed).

YAML is untrusted input with limits (``limits.py``): a file over
``MAX_YAML_FILE_BYTES`` (or not a regular file) is refused unread, and each
composed document is measured before anything walks or constructs it:
nesting depth, alias count, and its size once aliases are expanded (a
"billion laughs" file of a few hundred bytes expands to billions of nodes).
A file past a limit is a problem naming the file, like a syntax error, and so
is any other failure of the parser: the folder is refused, the serving
snapshot stays.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import yaml

from skyroute.control.limits import (
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_FILE_BYTES,
    MAX_YAML_NODES,
)
from skyroute.control.policy.errors import PolicyError, Problem
from skyroute.control.policy.model import GROUP

log = logging.getLogger("skyroute.control.loader")

SUFFIXES = (".yaml", ".yml")
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathKey = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One ``skyroute.io`` object as read: raw data plus where each field came from."""

    file: str
    index: int
    data: Mapping[str, Any]
    lines: Mapping[PathKey, int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        kind = self.data.get("kind")
        return kind if isinstance(kind, str) else ""

    @property
    def namespace(self) -> str:
        meta = self.data.get("metadata")
        ns = meta.get("namespace") if isinstance(meta, Mapping) else None
        return ns if isinstance(ns, str) and ns else "default"

    @property
    def name(self) -> str:
        meta = self.data.get("metadata")
        name = meta.get("name") if isinstance(meta, Mapping) else None
        return name if isinstance(name, str) and name else f"<unnamed document {self.index + 1}>"

    @property
    def ref(self) -> str:
        """``Kind namespace/name``: how problems name the object."""
        return f"{self.kind or '<no kind>'} {self.namespace}/{self.name}"

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor present in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: PathKey, message: str, display: str | None = None) -> Problem:
        return Problem(
            file=self.file,
            obj=self.ref,
            path=display if display is not None else format_path(path),
            message=message,
            line=self.line_of(path),
        )


def format_path(path: PathKey) -> str:
    """``("spec", "rules", 1, "pool")`` -> ``spec.rules[1].pool``, kubectl style."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "a").isalnum() and not part[:1].isdigit():
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def yaml_files(folder: Path) -> list[Path]:
    """YAML files under ``folder`` (recursively), sorted, skipping dot-entries."""
    found: list[Path] = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix in SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def load_folder(folder: str | Path) -> list[SourceDocument]:
    """Every ``skyroute.io`` document in the folder; PolicyError lists all unreadable files."""
    root = Path(folder)
    if not root.is_dir():
        raise PolicyError([Problem(file=str(folder), message="source folder not found")])
    docs: list[SourceDocument] = []
    problems: list[Problem] = []
    for path in yaml_files(root):
        display = str(Path(folder) / path.relative_to(root))
        try:
            text = _read_capped(path)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(file=display, message=f"cannot read file: {exc}"))
            continue
        try:
            docs.extend(load_text(text, display, problems))
        except yaml.YAMLError as exc:
            problems.append(_syntax_problem(display, exc))
        except TooBig as exc:
            problems.append(Problem(file=display, line=exc.line, message=str(exc)))
        except ValueError as exc:  # PyYAML's own scalar conversions, e.g. date 2026-13-01
            problems.append(Problem(file=display, line=None, message=f"YAML value error: {exc}"))
        except Exception as exc:  # the parser's own failures (recursive anchors, memory)
            problems.append(Problem(file=display, message=f"cannot parse YAML: {exc!r}"))
    if problems:
        raise PolicyError(problems)
    return docs


class TooBig(ValueError):
    """A YAML file or document past one of the loader's limits."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _read_capped(path: Path) -> str:
    """The file's text, if it is a regular file of at most ``MAX_YAML_FILE_BYTES``."""
    with path.open("rb") as f:
        if not path.is_file():  # a FIFO or device behind the name: never block on it
            raise OSError("not a regular file")
        data = f.read(MAX_YAML_FILE_BYTES + 1)
    if len(data) > MAX_YAML_FILE_BYTES:
        raise OSError(f"file larger than {MAX_YAML_FILE_BYTES} bytes")
    return data.decode("utf-8")


def measure(node: yaml.Node) -> int:
    """Expanded size of a composed document; ``TooBig`` past depth, alias or size limits.

    Linear in the composed graph: a node referenced again (an alias) adds its
    memoized expanded size instead of being walked again.
    """
    sizes: dict[int, int] = {}
    aliases = 0

    def walk(n: yaml.Node, depth: int) -> int:
        nonlocal aliases
        if depth > MAX_YAML_DEPTH:
            raise TooBig(f"YAML nested deeper than {MAX_YAML_DEPTH}", n.start_mark.line + 1)
        known = sizes.get(id(n))
        if known is not None:
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise TooBig(f"YAML with more than {MAX_YAML_ALIASES} aliases")
            if known < 0:
                raise TooBig("YAML alias refers to itself", n.start_mark.line + 1)
            return known
        sizes[id(n)] = -1  # being walked: meeting it again is a cycle
        size = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                size += walk(k, depth + 1) + walk(v, depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for item in n.value:
                size += walk(item, depth + 1)
        if size > MAX_YAML_NODES:
            raise TooBig(
                f"YAML document of more than {MAX_YAML_NODES} nodes once aliases are expanded",
                n.start_mark.line + 1,
            )
        sizes[id(n)] = size
        return size

    return walk(node, 0)


def load_text(text: str, file: str, problems: list[Problem]) -> Iterator[SourceDocument]:
    """Documents of one file; raises yaml.YAMLError on a syntax error, TooBig past a limit."""
    if len(text) > MAX_YAML_FILE_BYTES:
        raise TooBig(f"YAML text longer than {MAX_YAML_FILE_BYTES} characters")
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                measure(node)
            data = loader.construct_document(node) if node is not None else None
            if node is not None and _is_ours(data, file, index):
                lines: dict[PathKey, int] = {}
                _index_lines(node, (), lines, file, problems)
                yield SourceDocument(file=file, index=index, data=data, lines=lines)
            index += 1
    finally:
        loader.dispose()


def _is_ours(data: object, file: str, index: int) -> TypeGuard[dict[str, Any]]:
    if not isinstance(data, dict):
        if data is not None:
            log.debug("skip %s document %d: not a mapping", file, index + 1)
        return False
    api = data.get("apiVersion")
    if isinstance(api, str) and api.split("/", 1)[0] == GROUP:
        return True
    log.debug("skip %s document %d: apiVersion %r is not %s/*", file, index + 1, api, GROUP)
    return False


def _index_lines(
    node: yaml.Node, path: PathKey, out: dict[PathKey, int], file: str, problems: list[Problem]
) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                # PyYAML keeps the last value silently; a duplicated key is almost always a
                # paste error that would otherwise drop half an object without a word.
                problems.append(
                    Problem(
                        file=file,
                        line=key_node.start_mark.line + 1,
                        message=f'duplicate key "{key}" in {format_path(path) or "document"}',
                    )
                )
            seen.add(key)
            _index_lines(value_node, (*path, key), out, file, problems)
            out[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, i), out, file, problems)


def _syntax_problem(file: str, exc: yaml.YAMLError) -> Problem:
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = problem_mark or context_mark
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if context and context_mark is not None and context_mark.line + 1 != line:
        context = f"{context} (line {context_mark.line + 1})"
    detail = ", ".join(str(x) for x in (context, problem) if x) or str(exc).splitlines()[0]
    return Problem(file=file, line=line, message=f"YAML syntax error: {detail}")
