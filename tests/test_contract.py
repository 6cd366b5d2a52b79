"""The contract stays fresh, and the layers stay apart.

- The generated code under proto/ must be what ``make proto`` produces from
  the .proto files now (a stale generated file is a silent contract break).
- The data plane must never import the control plane (and vice versa): the
  contract in ``skyroute.v1`` is all they share. One exception: the control
  plane's ``policytests`` module runs the router's pure decision library.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "proto" / "skyroute" / "v1"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    bindir = str(Path(sys.executable).parent)
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in GENERATED.glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            *protos,
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")},
    )
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "skyroute" / "v1").iterdir()}
    committed = {p.name: p.read_bytes() for p in GENERATED.iterdir() if p.suffix in (".py", ".pyi")}
    assert sorted(fresh) == sorted(committed), "generated file set differs: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run `make proto`"


def _imports(root: Path) -> list[tuple[Path, str]]:
    found = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.append((path, node.module))
    return found


def test_dataplane_never_imports_the_control_plane() -> None:
    bad = [(str(p), m) for p, m in _imports(REPO / "dataplane") if m.startswith("skyroute.control")]
    assert not bad, bad


# The one exception, decided on purpose: policy tests (spec.tests) must run the very
# decision code routers run, or a second "expected routing" implementation would drift
# from the real one and pass tests the fleet fails. So exactly one control-plane module
# may import exactly the router's pure decision library (no I/O, no provider clients).
POLICY_TESTS = REPO / "operator" / "skyroute" / "control" / "policytests.py"
DECISION_LIBRARY = {"skyroute.router.table", "skyroute.router.decide"}


def test_control_plane_never_imports_the_dataplane() -> None:
    found = [(p, m) for p, m in _imports(REPO / "operator") if m.startswith("skyroute.router")]
    bad = [(str(p), m) for p, m in found if p != POLICY_TESTS or m not in DECISION_LIBRARY]
    assert not bad, bad
    # The exception is real (the module exists and uses both), not a stale allowance.
    assert {m for p, m in found if p == POLICY_TESTS} == DECISION_LIBRARY


def test_nothing_importable_is_named_operator() -> None:
    import operator

    assert operator.__file__ is not None and "site-packages" not in operator.__file__
    assert Path(operator.__file__).parent != REPO
    assert not (REPO / "operator" / "__init__.py").exists()
