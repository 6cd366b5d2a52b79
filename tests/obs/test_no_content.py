"""No prompt or completion text in any metric, span or log line unless opted in.

Test traffic carries unique markers (and an e-mail address); after unary,
streamed, cached and gRPC requests, the markers must be absent from both
Prometheus endpoints, from every OTLP export (spans and metrics, raw bytes)
and from every process's log output, while the upstream did receive them
(so the scan is looking for text that really went through). With the
explicit opt-in ``SKYROUTE_LOG_CONTENT=redacted`` the request span holds
the messages with the e-mail masked.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import grpc
import openai
import pytest

from skyroute.router.content import mode, redact, render_messages
from skyroute.v1 import router_pb2, router_pb2_grpc

from harness import Proc, Stack, http_get, wait_until
from obskit import OTLPReceiver, RecordingProxy, attrs
from policies import FILES, SCENARIO


def _stack(
    procs: list[Proc],
    tmp_path: Path,
    receiver: OTLPReceiver,
    proxy: RecordingProxy,
    monkeypatch: pytest.MonkeyPatch,
    log_content: str | None,
) -> Stack:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    monkeypatch.setenv("SKYROUTE_LOG_LEVEL", "DEBUG")
    if log_content is None:
        monkeypatch.delenv("SKYROUTE_LOG_CONTENT", raising=False)
    else:
        monkeypatch.setenv("SKYROUTE_LOG_CONTENT", log_content)
    files = {name: text.replace("{SIM}", proxy.url) for name, text in FILES.items()}
    st = Stack(procs, tmp_path, files, SCENARIO)
    proxy.target = st.sim
    return st


def test_no_prompt_text_leaves_in_telemetry_by_default(
    receiver: OTLPReceiver,
    proxy: RecordingProxy,
    procs: list[Proc],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = _stack(procs, tmp_path, receiver, proxy, monkeypatch, None)
    marker = "zq" + secrets.token_hex(6)
    prompts = [
        f"how do I reset my password? {marker}a",  # FAQ: cached on repeat
        f"Please compare plan A and B {marker}b",
        f"where is my parcel {marker}c, mail me at {marker}@example.com",
    ]
    c = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0)
    for p in prompts:
        c.chat.completions.create(model="auto", messages=[{"role": "user", "content": p}])
    c.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompts[0]}])
    chunks = list(
        c.chat.completions.create(
            model="auto", stream=True, messages=[{"role": "user", "content": prompts[1] + "s"}]
        )
    )
    answer = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert answer
    with grpc.insecure_channel(stack.routers[0][1]) as ch:
        router_pb2_grpc.RouterStub(ch).Complete(
            router_pb2.CompletionRequest(
                messages=[router_pb2.Message(role="user", content=prompts[2] + "g")]
            ),
            timeout=10,
        )

    # The text did go upstream, and the telemetry really was exported.
    assert sum(marker.encode() in b for b in proxy.bodies) >= 5
    wait_until(
        lambda: len([s for s in receiver.spans if s.name.startswith("chat ")]) >= 11,
        timeout=10,
        what="request and attempt spans",
    )
    time.sleep(0.8)  # one more metric export interval
    assert any(b"skyroute.router.requests" in b for b in receiver.bodies)

    texts = {
        "router /metrics": http_get(stack.router_admins[0] + "/metrics")[1],
        "control /metrics": http_get(stack.admin + "/metrics")[1],
        "OTLP exports": b"\n".join(receiver.bodies),
    }
    for proc in stack.procs:
        proc.stop()  # flush: the last spans and log lines are written on the way out
    texts.update({f"{proc.name} log": proc.raw().encode() for proc in stack.procs})
    assert answer[:20].encode() not in texts["OTLP exports"]
    for where, text in texts.items():
        assert marker.encode() not in text, f"prompt text found in {where}"


def test_redacted_opt_in_shows_messages_with_personal_data_masked(
    receiver: OTLPReceiver,
    proxy: RecordingProxy,
    procs: list[Proc],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = _stack(procs, tmp_path, receiver, proxy, monkeypatch, "redacted")
    c = openai.OpenAI(base_url=stack.routers[0][2] + "/v1", api_key="unused", max_retries=0)
    c.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "where is order 55512345? write to jo@example.com"}],
    )

    def request_span() -> dict[str, object] | None:
        for s in receiver.spans:
            a = attrs(s)
            if "gen_ai.input.messages" in a:
                return a
        return None

    wait_until(lambda: request_span() is not None, timeout=10, what="span with messages")
    a = request_span()
    assert a is not None
    shown = str(a["gen_ai.input.messages"])
    assert "where is order [digits]? write to [email]" in shown
    assert "jo@example.com" not in shown and "55512345" not in shown
    assert "gen_ai.output.messages" in a
    for proc in stack.procs:  # the opt-in is for spans: log lines still carry no text
        assert "jo@example.com" not in proc.raw() and "[email]" not in proc.raw(), proc.name


def test_content_mode_is_explicit() -> None:
    assert mode({}) == "off" and mode({"SKYROUTE_LOG_CONTENT": "Redacted"}) == "redacted"
    with pytest.raises(SystemExit, match="SKYROUTE_LOG_CONTENT='yes' is not one of"):
        mode({"SKYROUTE_LOG_CONTENT": "yes"})
    assert (
        redact("call +1 555 123 4567 or a@b.io, key sk_" + "x" * 40)
        == "call +[digits] or [email], key [secret]"
    )
    assert (
        render_messages([{"role": "user", "content": "hi"}], "full")
        == '[{"role":"user","content":"hi"}]'
    )
