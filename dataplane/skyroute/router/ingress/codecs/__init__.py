"""Codecs: one module per API, translating its wire format to and from the pipeline's types.

- :mod:`.openai_chat`: OpenAI Chat Completions (``POST /v1/chat/completions``),
  errors in the OpenAI error shape, streams as SSE;
- :mod:`.grpc_router`: the ``skyroute.v1.Router`` gRPC API, errors as gRPC
  status codes with the facts in trailing metadata.

A new API (Anthropic Messages, OpenAI Responses...) is one more module here
implementing :class:`.base.Codec`; the pipeline and the signals stay as they are.
"""
