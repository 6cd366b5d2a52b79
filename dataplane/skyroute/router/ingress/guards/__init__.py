"""Guards: identity and limits at the router door, run on every decoded request.

``door`` is the stage the inbound pipeline calls for every door (identify,
authorize, admit, settle); behind it ``keys`` verifies API keys against
digests, ``sa_tokens`` verifies ServiceAccount JWTs, ``tenants`` holds the
compiled tenant rules, ``limits`` reserves and settles every rate limit,
concurrency limit and budget of a request in one atomic step (Redis or
in-process). A guard refuses with a :class:`~.errors.GuardError` (OpenAI's
error shape and the matching gRPC status), which the pipeline answers in
the door's own format.

A new check that is not one API's wire format (a size or content policy, a
new credential kind) goes here, one module per guard, called from the door.
Guards import nothing of the pipeline, the codecs or the transports.
"""
