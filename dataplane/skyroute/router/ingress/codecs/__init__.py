"""Codecs: one module per API, translating its wire format to and from the pipeline's types.

- :mod:`.openai_chat`: OpenAI Chat Completions (``POST /v1/chat/completions``),
  errors in the OpenAI error shape, streams as SSE;
- :mod:`.anthropic_messages`: Anthropic Messages (``POST /v1/messages``),
  errors in Anthropic's error shape, streams as Anthropic's SSE events;
- :mod:`.grpc_router`: the ``skyroute.v1.Router`` gRPC API, errors as gRPC
  status codes with the facts in trailing metadata.

A new API (OpenAI Responses, Embeddings...) is one more module here
implementing :class:`.base.Codec`; the pipeline and the signals stay as they are.
"""
