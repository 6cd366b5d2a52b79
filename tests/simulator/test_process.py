"""`skyroute providers` as a real process: starts, serves, and rejects a bad scenario."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "simulator" / "acmeshop.yaml"


def test_cli_serves_example_scenario() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "providers",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            str(EXAMPLE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        err = "" if line else (proc.stderr.read() if proc.stderr else "")
        assert "listening on http://127.0.0.1:" in line, line + err
        url = line.split("listening on ")[1].split()[0]
        with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ok"}
        req = urllib.request.Request(
            url + "/openai/v1/chat/completions",
            method="POST",
            data=json.dumps(
                {
                    "model": "gemini-3-flash",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = json.loads(r.read())
            assert body["choices"][0]["message"]["content"].startswith("[gemini-3-flash] ")
        except urllib.error.HTTPError as err:  # the scenario's 0.5% error rate
            assert err.code in (429, 500, 503)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_cli_rejects_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  m:\n    tokens_per_s: -1\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "providers",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "models.m.tokens_per_s" in proc.stderr
