"""A self-hosted OpenAI-compatible server, as llama-cpp-python's server answers.

The ``openai-compatible`` family's stand-in (the real server is tested too:
tests/providers/test_selfhosted_llama.py). The body is OpenAI's Chat
Completions (:class:`~.openai_wire.OpenAIWire` parses and renders it) with
that server's differences, the ones the family's quirks are for:

- ``POST /selfhosted/v1/chat/completions`` (client ``base_url=http://HOST:PORT/selfhosted/v1``);
- streams carry no usage, whatever ``stream_options`` says;
- the budget is ``max_tokens``; ``max_completion_tokens`` is ignored (the
  server generates to its own limit), and so is ``n`` (one choice);
- an assistant message with ``content: null`` is refused, and every request it
  cannot validate is a **500** ``internal_server_error`` whose message is
  pydantic's ``validation error`` text;
- a wrong key is FastAPI's 401 ``{"detail": "Invalid API key"}``, not OpenAI's body.
"""

from __future__ import annotations

from typing import Any

import orjson

from skyroute.families import Family
from skyroute.simulator.answers import Answer
from skyroute.simulator.openai_wire import OpenAIWire
from skyroute.simulator.wire import Rendered, SimRequest, StreamFrames, WireError

_JSON = {"Content-Type": "application/json"}


class SelfHostedWire(OpenAIWire):
    name: Family = "openai-compatible"

    def parse(self, body: Any, path_model: str | None, stream_path: bool) -> SimRequest:
        if not isinstance(body, dict):
            raise WireError("The request body must be a JSON object.")
        for i, msg in enumerate(body.get("messages") or ()):
            if (
                isinstance(msg, dict)
                and msg.get("role") == "assistant"
                and msg.get("content") is None
            ):
                raise WireError(
                    "1 validation error for CreateChatCompletionRequest\n"
                    f"messages.{i}.content\n  Input should be a valid string "
                    "[type=string_type, input_value=None, input_type=NoneType]"
                )
        ignored = {k: v for k, v in body.items() if k not in ("max_completion_tokens", "n")}
        return super().parse({**ignored, "stream_options": None}, path_model, stream_path)

    def stream(self, req: SimRequest, answer: Answer, chunk_tokens: int) -> StreamFrames:
        req.include_usage = False  # never usage in a stream
        return super().stream(req, answer, chunk_tokens)

    def invalid(self, message: str, status: int = 400) -> Rendered:
        if status == 401:
            return Rendered(401, dict(_JSON), orjson.dumps({"detail": "Invalid API key"}))
        if status == 400:  # a request it cannot validate: a 500, as the real server answers
            body = {
                "error": {
                    "message": message,
                    "type": "internal_server_error",
                    "param": None,
                    "code": None,
                }
            }
            return Rendered(500, dict(_JSON), orjson.dumps(body))
        return super().invalid(message, status)
