"""Reproducible, lean installs: hashed locks, the router's lock, py.typed, --version.

``requirements/*.txt`` are ``uv pip compile --generate-hashes`` output
(``make lock``). These checks need no network: each lock pins, with hashes,
a version allowed by every requirement ``pyproject.toml`` states for its
install, the router's lock holds no control-plane package, and what installs
skyroute (``make venv``, both Dockerfiles) installs from the locks with hash
checking and resolves nothing itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
REQS = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+?)(?: ; (.+?))? \\$")
# Which lock serves which install: (extras, who installs from it).
LOCKS = {"router": (), "operator": ("operator",), "dev": ("dev",)}


def pins(lock: Path) -> dict[str, str]:
    """name -> version of the pins that apply here (markers evaluated), each one hashed."""
    lines = lock.read_text().splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = PIN.match(line)
        if m is None:
            assert not re.match(r"^[A-Za-z0-9]", line), f"{lock.name}: not a hashed pin: {line}"
            continue
        assert lines[i + 1].lstrip().startswith("--hash=sha256:"), f"{lock.name}: {line}"
        name, version, marker = m.groups()
        if marker is None or Requirement(f"x ; {marker}").marker.evaluate():  # type: ignore[union-attr]
            assert canonicalize_name(name) not in out, f"{lock.name}: {name} pinned twice"
            out[canonicalize_name(name)] = version
    return out


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """What pyproject.toml asks for the base install plus ``extras`` (self-references expanded)."""
    out = [Requirement(r) for r in PROJECT["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PROJECT["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "skyroute":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


@pytest.mark.parametrize("role", list(LOCKS))
def test_each_lock_pins_with_hashes_what_pyproject_asks(role: str) -> None:
    pinned = pins(REQS / f"{role}.txt")
    for req in requirements(LOCKS[role]):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pinned, f"{role}.txt lacks {req} (run make lock)"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{role}.txt pins {name}=={pinned[name]}, pyproject.toml asks {req} (run make lock)"
        )


def test_the_router_lock_holds_no_control_plane_package() -> None:
    base = {canonicalize_name(r.name) for r in requirements(())}
    control_only = {canonicalize_name(r.name) for r in requirements(("operator",))} - base
    assert {"kopf", "kubernetes", "pydantic", "watchfiles", "rich"} <= control_only
    router = set(pins(REQS / "router.txt"))
    assert not router & control_only, router & control_only
    assert control_only <= set(pins(REQS / "operator.txt"))


def test_the_build_backend_is_locked_too() -> None:
    wanted = PYPROJECT["build-system"]["requires"]
    assert (REQS / "build.in").read_text().split("\n")[:-1] == wanted
    pinned = pins(REQS / "build.txt")
    for req in map(Requirement, wanted):
        assert req.specifier.contains(pinned[canonicalize_name(req.name)])


@pytest.mark.parametrize("role", ["router", "operator"])
def test_images_install_from_their_lock_and_resolve_nothing(role: str) -> None:
    text = (REPO / "deploy" / "docker" / f"{role}.Dockerfile").read_text()
    installs = [line for line in text.replace("\\\n", " ").splitlines() if "pip install" in line]
    commands = [c.strip() for line in installs for c in line.split("&&") if "pip install" in c]
    assert commands, text
    for command in commands:
        # Either from a lock with hash checking, or skyroute's own wheel with no resolution.
        assert "--require-hashes -r requirements/" in command or (
            "--no-deps --no-index /wheels/skyroute-" in command
        ), command
    locks = {re.search(r"-r (requirements/\S+)", c).group(1) for c in commands if " -r " in c}  # type: ignore[union-attr]
    assert locks == {"requirements/build.txt", f"requirements/{role}.txt"}, locks
    assert "--no-build-isolation" in text  # the build backend comes from build.txt too


def test_make_venv_installs_the_dev_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "LOCK    := requirements/dev.txt" in makefile
    assert "pip install -q --require-hashes -r $(LOCK)" in makefile
    assert "pip install -q --no-deps -e ." in makefile


def test_version_comes_from_the_package_metadata() -> None:
    got = subprocess.run(
        [str(Path(sys.executable).parent / "skyroute"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == f"skyroute {PROJECT['version']}\n"
    assert metadata.version("skyroute") == PROJECT["version"]


def test_every_package_is_marked_typed_and_a_consumer_sees_the_types(tmp_path: Path) -> None:
    roots = {"proto": ["", "v1"], "operator": ["control"], "dataplane": ["router"]}
    roots |= {"simulator": ["simulator"], "cli": ["cli"]}
    for folder, packages in roots.items():
        for package in packages:
            assert (REPO / folder / "skyroute" / package / "py.typed").is_file(), (folder, package)
    # An outside project type-checks against the installed skyroute (no mypy_path of ours):
    # with py.typed its annotations apply, so a wrong argument type is an error.
    (tmp_path / "consumer.py").write_text(
        "from skyroute.link import server_options\n"
        "from skyroute.families import Family\n"
        "server_options('32 MiB')\n"
    )
    got = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "consumer.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert "import-untyped" not in got.stdout and "missing library stubs" not in got.stdout
    assert '"server_options" has incompatible type "str"' in got.stdout, got.stdout
    assert got.stdout.count("error:") == 1, got.stdout
