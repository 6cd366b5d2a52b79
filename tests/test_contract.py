"""The contract stays fresh, and the layers stay apart.

- The generated code under proto/ must be what ``make proto`` produces from
  the .proto files now (a stale generated file is a silent contract break).
- Nothing importable is named ``operator`` (the folder is not a package).

Which layer may import which is declared in ``.importlinter`` and checked by
``lint-imports`` in ``make test`` (the data plane never imports the control plane;
the one exception, policy tests running the router's pure decision code, is an
explicit, narrow contract there).
"""

from __future__ import annotations

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


def test_nothing_importable_is_named_operator() -> None:
    import operator

    assert operator.__file__ is not None and "site-packages" not in operator.__file__
    assert Path(operator.__file__).parent != REPO
    assert not (REPO / "operator" / "__init__.py").exists()
