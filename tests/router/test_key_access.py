"""Provider key references read only what the router allows (issue 15).

A pool's ``apiKey: {file: ...}`` resolves only to a regular file under the
router's ``--secrets-dir`` and under a size cap (a FIFO is never read, so it
cannot freeze anything); ``{env: ...}`` only a variable with a configured
prefix. Tables are built off the event loop (sync.py), where files are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skyroute.router import table
from skyroute.router.table import KeyAccess


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "gemini").write_text("sk-gemini\n")
    return folder


def test_a_file_inside_the_secrets_dir_is_read(secrets: Path) -> None:
    assert KeyAccess(secrets).file(str(secrets / "gemini")) == "sk-gemini"


def test_files_outside_links_out_fifos_and_huge_files_are_refused(
    secrets: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "passwd"
    outside.write_text("root:x:0:0")
    access = KeyAccess(secrets, max_bytes=1024)
    assert access.file(str(outside)) is None
    assert access.file(str(secrets / ".." / "passwd")) is None
    (secrets / "link").symlink_to(outside)
    assert access.file(str(secrets / "link")) is None  # resolves outside the folder
    os.mkfifo(secrets / "fifo")  # no writer: a blocking read would hang forever
    assert access.file(str(secrets / "fifo")) is None
    (secrets / "big").write_bytes(b"k" * 2048)
    assert access.file(str(secrets / "big")) is None
    assert access.file(str(secrets / "sub")) is None  # missing: no key, no error
    assert KeyAccess(None).file(str(secrets / "gemini")) is None


def test_env_references_only_with_a_configured_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYROUTE_KEY_OPENAI", "sk-openai")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-providers")
    access = KeyAccess(None, env_prefixes=("SKYROUTE_KEY_",))
    assert access.env("SKYROUTE_KEY_OPENAI") == "sk-openai"
    assert access.env("AWS_SECRET_ACCESS_KEY") is None
    # No prefix given: only names that look like provider keys.
    monkeypatch.setenv("ACME_API_KEY", "sk-acme")
    assert KeyAccess(None).env("AWS_SECRET_ACCESS_KEY") is None
    assert KeyAccess(None).env("ACME_API_KEY") == "sk-acme"
    assert KeyAccess(None).env("SKYROUTE_KEY_OPENAI") == "sk-openai"
    # '' is the explicit opt-in to every variable.
    assert KeyAccess(None, env_prefixes=("",)).env("AWS_SECRET_ACCESS_KEY") == "not-for-providers"


def test_the_table_uses_the_routers_key_access(secrets: Path, tmp_path: Path) -> None:
    outside = tmp_path / "other-key"
    outside.write_text("sk-other")
    saved = table.KEY_ACCESS[0]
    table.KEY_ACCESS[0] = KeyAccess(secrets)
    try:
        assert table._read_key("", str(secrets / "gemini")) == "sk-gemini"
        assert table._read_key("", str(outside)) is None
    finally:
        table.KEY_ACCESS[0] = saved
