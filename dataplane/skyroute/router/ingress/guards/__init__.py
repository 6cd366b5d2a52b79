"""Identity and limits at the router door: who is calling, and may they.

``keys`` verifies API keys against digests, ``sa_tokens`` verifies
ServiceAccount JWTs, ``tenants`` holds the compiled tenant rules,
``limits`` reserves and settles every rate limit, concurrency limit and
budget of a request in one atomic step (Redis or in-process).
"""
