"""A pool's ``apiKey: {env: NAME}`` may name only the variables routers may read (issue 15).

Without ``--secret-env-prefix`` only ``SKYROUTE_*`` and ``*_API_KEY`` names are allowed
(the router reads nothing else, skyroute/keyrefs.py); the control plane refuses a source
naming another, with the file, object and field, and the previous version keeps serving.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skyroute.cli.main import _parser
from skyroute.control.policy.errors import PolicyError
from skyroute.control.policy.loader import load_folder
from skyroute.control.policy.store import SnapshotStore
from skyroute.control.policy.validate import validate
from skyroute.control.server import ControlPlane
from skyroute.control.source import SourceWatcher

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acmeshop"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "acmeshop"
    shutil.copytree(EXAMPLE, target)
    return target


def _name_key(folder: Path, name: str) -> None:
    pools = folder / "pools.yaml"
    text = pools.read_text()
    assert "apiKey: {env: GEMINI_API_KEY}" in text
    pools.write_text(text.replace("apiKey: {env: GEMINI_API_KEY}", f"apiKey: {{env: {name}}}", 1))


def test_an_undeclared_variable_is_refused_and_the_last_version_keeps_serving(
    folder: Path,
) -> None:
    store = SnapshotStore()
    watcher = SourceWatcher(str(folder), store)
    assert watcher.reload() is True
    good = store.version
    _name_key(folder, "AWS_SECRET_ACCESS_KEY")
    assert watcher.reload() is False
    assert store.version == good and watcher.rejections == 1
    with pytest.raises(PolicyError) as caught:
        validate(load_folder(folder))
    (problem,) = caught.value.problems
    assert problem.file.endswith("pools.yaml")
    assert problem.obj == "ModelPool default/cost"
    assert problem.path == "spec.models[0].apiKey.env"
    assert problem.line == 27
    assert "AWS_SECRET_ACCESS_KEY" in problem.message and "--secret-env-prefix" in problem.message
    assert "AWS_SECRET_ACCESS_KEY" in store.last_error


def test_declared_prefixes_replace_the_default(folder: Path) -> None:
    _name_key(folder, "ACME_GEMINI")
    with pytest.raises(PolicyError):
        validate(load_folder(folder))
    # With a prefix, only that prefix: the example's *_API_KEY names now fail too.
    with pytest.raises(PolicyError) as caught:
        validate(load_folder(folder), ("ACME_",))
    paths = {(p.obj, p.path) for p in caught.value.problems}
    assert ("ModelPool default/cost", "spec.models[1].apiKey.env") in paths
    assert ("ModelPool default/cost", "spec.models[0].apiKey.env") not in paths
    validate(load_folder(folder), ("ACME_", "GEMINI_", "ANTHROPIC_", "OPENAI_"))
    validate(load_folder(folder), ("",))  # '' allows every name, explicitly


def test_skyroute_control_takes_the_same_flag_as_the_router(folder: Path) -> None:
    args = _parser().parse_args(
        ["control", "--source", str(folder), "--insecure", "--secret-env-prefix", "ACME_"]
    )
    assert args.secret_env_prefix == ["ACME_"]
    router = _parser().parse_args(["router", "--secret-env-prefix", "ACME_"])
    assert router.secret_env_prefix == ["ACME_"]
    plane = ControlPlane(str(folder), "127.0.0.1:0", insecure=True, secret_env_prefixes=("ACME_",))
    assert plane.watcher.reload() is False
    assert "spec.models[0].apiKey.env" in plane.store.last_error
