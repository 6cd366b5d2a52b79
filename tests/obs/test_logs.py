"""Structured logs: one JSON object per line from the control plane and the router.

The formatters are checked in-process (fields, types, an exception on one
line, the current span's ids; the router's and the control plane's copies
alike), then on real processes: a control plane, a router and the provider
simulator, with unary, streamed and failed-over requests whose prompts carry a
unique marker. Every line each process writes must parse as JSON with ts,
level, logger and event, and the marker must be in none of them, also with
``SKYROUTE_LOG_CONTENT=full``, whose opt-in puts prompt text on spans only
(the span is checked to hold the marker, so the opt-in really was on).
Finally ``--log-format`` and ``SKYROUTE_LOG_FORMAT`` pick logfmt and text,
and a wrong value stops the process with a message naming it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider

from skyroute.cli import logs
from skyroute.control import logs as control_logs
from skyroute.router import logs as router_logs

from harness import REPO, Proc, Stack, free_port, wait_until
from obskit import OTLPReceiver, RecordingProxy, attrs
from policies import FAILING_PRIMARY, FILES, SCENARIO

pytestmark = pytest.mark.timeout(90)

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# Both planes' event() helpers, formatted by the CLI's formatters.
BOTH = pytest.mark.parametrize("plane", [control_logs, router_logs], ids=["control", "router"])


class _Capture(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, _Capture]:
    log = logging.getLogger(f"skyroute.test.{secrets.token_hex(4)}")
    capture = _Capture(formatter)
    log.addHandler(capture)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return log, capture


@BOTH
def test_json_line_holds_typed_fields_exception_and_span_ids(plane: ModuleType) -> None:
    log, capture = _logger(logs.JsonFormatter())
    plane.event(
        log,
        "push",
        router="r1",
        version="sha256:ab",
        changed=True,
        ms=2.5,
        objects=3,
        huge=2**70,
        event="not the event",
        tags=["a", "b"],
    )
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("snapshot stream failed")
    with TracerProvider().get_tracer("test").start_as_current_span("request") as span:
        plane.event(log, "cache_failed", logging.WARNING, backend="redis")
        ctx = span.get_span_context()

    assert len(capture.lines) == 3 and all("\n" not in line for line in capture.lines)
    push, failed, traced = (json.loads(line) for line in capture.lines)
    assert list(push)[:4] == ["ts", "level", "logger", "event"] and TS.match(push["ts"])
    assert push["level"] == "info" and push["logger"] == log.name and push["event"] == "push"
    assert push["changed"] is True and push["ms"] == 2.5 and push["objects"] == 3
    assert push["huge"] == str(2**70) and push["tags"] == ["a", "b"]
    assert "trace_id" not in push and "exc" not in push
    assert failed["level"] == "error" and failed["event"] == "snapshot stream failed"
    assert failed["exc"].startswith("Traceback") and "ValueError: bad\nthing" in failed["exc"]
    assert traced["level"] == "warning" and traced["backend"] == "redis"
    assert traced["trace_id"] == format(ctx.trace_id, "032x")
    assert traced["span_id"] == format(ctx.span_id, "016x")


@BOTH
def test_logfmt_and_text_lines(plane: ModuleType) -> None:
    log, capture = _logger(logs.LogfmtFormatter())
    plane.event(log, "rejected", error='pool "x" not found\nline 2', serving="v1")
    line = capture.lines[0]
    assert re.match(r"ts=\S+Z level=info logger=skyroute\.test\.\w+ event=rejected ", line)
    assert line.endswith(r' error="pool \"x\" not found\nline 2" serving=v1')

    log, capture = _logger(logs.TextFormatter())
    plane.event(log, "listening", grpc="127.0.0.1:1")
    assert re.match(
        r"^\S+Z INFO skyroute\.test\.\w+ listening grpc=127\.0\.0\.1:1$", capture.lines[0]
    )


def test_format_comes_from_the_flag_then_the_environment() -> None:
    assert logs.log_format(None, {}) == "json"
    assert logs.log_format(None, {"SKYROUTE_LOG_FORMAT": " LogFmt "}) == "logfmt"
    assert logs.log_format("text", {"SKYROUTE_LOG_FORMAT": "logfmt"}) == "text"
    with pytest.raises(SystemExit, match="SKYROUTE_LOG_FORMAT='yaml' is not one of json, "):
        logs.log_format(None, {"SKYROUTE_LOG_FORMAT": "yaml"})


def _check_json_lines(proc: Proc, marker: str) -> list[dict[str, object]]:
    """Every line ``proc`` wrote is a JSON log record, and none holds ``marker``."""
    lines = [line for line in proc.raw().split("\n") if line]
    assert lines, f"{proc.name} wrote nothing"
    records = []
    for line in lines:
        assert marker not in line, f"prompt text in the {proc.name} log: {line[:200]}"
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line in the {proc.name} log: {line}") from None
        assert isinstance(record, dict), line
        assert {"ts", "level", "logger", "event"} <= record.keys(), line
        assert TS.match(str(record["ts"])) and record["level"] in (
            "debug",
            "info",
            "warning",
            "error",
            "critical",
        ), line
        records.append(record)
    return records


def _traffic(stack: Stack, marker: str) -> None:
    """Unary, streamed and failed-over requests, each prompt carrying ``marker``."""
    c = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0)
    r = c.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": f"how do I reset my password? {marker} a@b.io"}],
    )
    assert r.choices[0].message.content
    chunks = list(
        c.chat.completions.create(
            model="auto",
            stream=True,
            messages=[{"role": "user", "content": f"Please compare plan A and B {marker}"}],
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    stack.put_scenario(FAILING_PRIMARY.replace("KIND", "server_error"))
    raw = c.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": f"where is my parcel {marker}?"}]
    )  # default pool
    assert raw.headers["x-skyroute-model"] == "backup-model"  # it did fail over
    assert "primary-model" in raw.headers["x-skyroute-attempts"]


@pytest.mark.parametrize("content", [None, "full"])
def test_processes_log_json_lines_without_prompt_text(
    content: str | None,
    receiver: OTLPReceiver,
    proxy: RecordingProxy,
    procs: list[Proc],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SKYROUTE_LOG_FORMAT", raising=False)
    monkeypatch.setenv("SKYROUTE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    if content is None:
        monkeypatch.delenv("SKYROUTE_LOG_CONTENT", raising=False)
    else:
        monkeypatch.setenv("SKYROUTE_LOG_CONTENT", content)
    files = {name: text.replace("{SIM}", proxy.url) for name, text in FILES.items()}
    stack = Stack(procs, tmp_path, files, SCENARIO)
    proxy.target = stack.sim
    marker = "zq" + secrets.token_hex(6)
    _traffic(stack, marker)
    assert sum(marker.encode() in b for b in proxy.bodies) >= 4  # the text went upstream

    def span_text() -> str:
        return " ".join(str(attrs(s).get("gen_ai.input.messages", "")) for s in receiver.spans)

    if content == "full":  # the opt-in is on: the text is on the spans, and only there
        wait_until(lambda: marker in span_text(), timeout=10, what="span with the prompt")
    else:
        wait_until(lambda: len(receiver.spans) >= 3, timeout=10, what="spans")
        assert marker not in span_text()
    router, control = stack.routers[0][0], stack.control
    router.stop()
    control.stop()  # the last lines are written on the way out
    r_events = {str(r["event"]) for r in _check_json_lines(router, marker)}
    c_events = {str(r["event"]) for r in _check_json_lines(control, marker)}
    assert {"listening", "stopping"} <= r_events
    assert any(e.lower().startswith("ack") for e in r_events), r_events  # snapshot applied
    assert {"compiled", "listening", "push", "ack", "stopped"} <= c_events


def test_log_format_flag_and_environment(procs: list[Proc], tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    for name, text in FILES.items():
        (tmp_path / "policies" / name).write_text(text.replace("{SIM}", "http://127.0.0.1:9"))
    control_addr = f"127.0.0.1:{free_port()}"
    control = Proc(
        "control",
        [
            "control",
            "--insecure",
            "--source",
            str(tmp_path / "policies"),
            "--listen",
            control_addr,
            "--admin",
            "",
            "--log-format",
            "logfmt",
        ],
        env={"SKYROUTE_LOG_FORMAT": "json"},
    )
    router = Proc(
        "router",
        [
            "router",
            "--insecure",
            "--control",
            control_addr,
            "--grpc",
            f"127.0.0.1:{free_port()}",
            "--http",
            f"127.0.0.1:{free_port()}",
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
        ],
        env={"SKYROUTE_LOG_FORMAT": "text"},
    )
    procs += [control, router]
    wait_until(lambda: "event=push " in control.raw(), what=f"push\n{control.raw()}")
    wait_until(
        lambda: re.search(r" INFO skyroute\.router\.sync (ACK|ack) ", router.raw()),
        what=f"ACK\n{router.raw()}",
    )
    assert re.search(
        r"^ts=\S+Z level=info logger=skyroute\.control\.server event=listening "
        rf"grpc={control_addr} ",
        control.raw(),
        re.M,
    ), control.raw()
    assert re.search(r"^\S+Z INFO skyroute\.router listening node=\S+ grpc=", router.raw(), re.M), (
        router.raw()
    )
    assert not control.events() and not router.events()  # no JSON lines in either

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "router",
            "--insecure",
            "--control",
            control_addr,
        ],
        env={"SKYROUTE_LOG_FORMAT": "yaml", "PATH": ""},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0
    assert "SKYROUTE_LOG_FORMAT='yaml' is not one of json, logfmt, text" in bad.stderr
    flag = subprocess.run(
        [
            sys.executable,
            "-m",
            "skyroute.cli.main",
            "control",
            "--source",
            str(tmp_path),
            "--log-format",
            "yaml",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert flag.returncode == 2 and "--log-format: invalid choice: 'yaml'" in flag.stderr
