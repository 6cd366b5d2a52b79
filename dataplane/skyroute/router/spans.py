"""The router's spans: one per request, a child per cache lookup and per attempt.

Why a module of its own: the engine decides and retries; how that is shown
to a tracing backend (names, GenAI attributes, W3C context) is a separate
concern with its own cost rules.

- The request span (``chat <policy>``, kind SERVER) continues the caller's
  W3C trace context when one came with the request (``traceparent`` header
  or gRPC metadata); children are the cache lookup and each upstream attempt
  (``chat <model>``, kind CLIENT, with ``gen_ai.request.model``,
  ``gen_ai.provider.name``, ``server.address``, ``server.port``,
  ``gen_ai.response.model`` on success and ``error.type`` on failure).
- While an attempt runs its span is the current one, so the provider
  transport injects a ``traceparent`` naming it into the upstream request.
- With no exporter configured and no caller trace, no span is made at all
  (``NO_SPAN`` everywhere): a request then pays an identity check, not the
  tracing API.
- Prompt and completion text appear only with the explicit
  ``SKYROUTE_LOG_CONTENT`` opt-in (:mod:`.content`).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from skyroute.router import content
from skyroute.router.telemetry import tracing_enabled, upstream

NO_SPAN: Span = trace.INVALID_SPAN


def enter(span: Span) -> object | None:
    """Make ``span`` current (the transport injects its traceparent); None for no span."""
    return None if span is NO_SPAN else otel_context.attach(trace.set_span_in_context(span))


def leave(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


def _fail(span: Span, error_class: str) -> None:
    span.set_attribute("error.type", error_class)
    span.set_status(Status(StatusCode.ERROR, error_class))


class Spans:
    def __init__(self) -> None:
        self.tracer = trace.get_tracer("skyroute.router")
        # Without an exporter spans are only worth making to carry a caller's traceparent.
        self.tracing = tracing_enabled()
        self.content = content.mode()  # off unless SKYROUTE_LOG_CONTENT opts in

    def request(
        self,
        parent: otel_context.Context | None,
        attrs: dict[str, Any],
        messages: list[dict[str, Any]],
    ) -> Span:
        if not self.tracing and parent is None:
            return NO_SPAN  # no exporter, no caller trace: no span on this request
        span = self.tracer.start_span(
            "chat " + attrs["skyroute.policy"], parent, SpanKind.SERVER, attributes=attrs
        )
        if self.content != "off" and span.is_recording():
            span.set_attribute(
                "gen_ai.input.messages", content.render_messages(messages, self.content)
            )
        return span

    def child(self, name: str, parent: Span, attrs: dict[str, Any]) -> Span:
        if parent is NO_SPAN:
            return NO_SPAN
        return self.tracer.start_span(
            name, trace.set_span_in_context(parent), SpanKind.CLIENT, attributes=attrs
        )

    def attempt(
        self,
        model: str,
        provider: str,
        pool: str,
        parent: Span | None = None,
        endpoint: str = "",
    ) -> Span:
        """An attempt's span, under ``parent`` or else the current span."""
        parent = parent if parent is not None else trace.get_current_span()
        if parent is NO_SPAN:
            return NO_SPAN
        up = upstream(provider, endpoint)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": up.provider,
            "gen_ai.request.model": model,
            "skyroute.pool": pool,
        }
        if up.address:
            attrs["server.address"] = up.address
            attrs["server.port"] = up.port
        return self.child("chat " + model, parent, attrs)

    @staticmethod
    def end_attempt(span: Span, model: str, error_class: str) -> None:
        if span is NO_SPAN:
            return
        if error_class:
            _fail(span, error_class)
        else:
            span.set_attribute("gen_ai.response.model", model)
        span.end()

    def end_request(
        self,
        span: Span,
        model: str,
        cache: str,
        attempts: int,
        cost_usd: float,
        usage: tuple[int, int] | None,
        answer: str | None,
        error_class: str,
        payer: tuple[str, str] = ("", ""),
    ) -> None:
        """``payer``: the billed tenant and key id the spend ledger charges (when known)."""
        if span is NO_SPAN:
            return
        if span.is_recording():
            span.set_attribute("gen_ai.response.model", model)
            span.set_attribute("skyroute.cache", cache)
            span.set_attribute("skyroute.attempts", attempts)
            span.set_attribute("skyroute.cost_usd", cost_usd)
            if payer[0]:
                span.set_attribute("skyroute.account", payer[0])
            if payer[1]:
                span.set_attribute("skyroute.key_id", payer[1])
            if usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage[0])
                span.set_attribute("gen_ai.usage.output_tokens", usage[1])
            if answer is not None and self.content != "off":
                span.set_attribute(
                    "gen_ai.output.messages", content.render_answer(answer, self.content)
                )
            if error_class:
                _fail(span, error_class)
        span.end()
