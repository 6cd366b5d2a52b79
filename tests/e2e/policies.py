"""The small policy set the end-to-end tests route with."""

POOLS = """\
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata:
  name: fast
spec:
  models:
    - name: primary-model
      provider: openai
      endpoint: {SIM}/openai/v1
      pricing: {inputPerMTok: 1.0, outputPerMTok: 4.0}
      timeoutMs: 1500
    - name: backup-model
      provider: anthropic
      endpoint: {SIM}/anthropic
      pricing: {inputPerMTok: 2.0, outputPerMTok: 8.0}
---
apiVersion: skyroute.io/v1alpha1
kind: ModelPool
metadata:
  name: smart
spec:
  models:
    - name: smart-model
      provider: gemini
      endpoint: {SIM}/gemini
      pricing: {inputPerMTok: 5.0, outputPerMTok: 20.0}
"""

POLICY = """\
apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata:
  name: support
spec:
  default: true
  intents:
    - name: faq.password
      keywords: ["reset my password"]
    - name: reasoning.compare
      keywords: ["compare"]
  rules:
    - name: faq-cheap
      match: {intents: ["faq.*"]}
      pool: fast
    - name: reasoning-smart
      match: {intents: ["reasoning.*"]}
      pool: REASONING_POOL
  defaultPool: fast
  cache:
    enabled: true
    intents: ["faq.*"]
    similarityThreshold: 0.9
    ttlSeconds: 600
  limits: {maxAttempts: 3, requestTimeoutMs: 20000, firstTokenTimeoutMs: 3000}
"""

FILES = {"pools.yaml": POOLS, "policy.yaml": POLICY.replace("REASONING_POOL", "smart")}

SCENARIO = """\
seed: 7
defaults:
  ttft_ms: {p50: 5, p95: 10}
  tokens_per_s: 5000
  completion_tokens: {p50: 20, p95: 40, min: 1, max: 200}
  error_rate: 0
"""

FAILING_PRIMARY = (
    SCENARIO
    + """\
models:
  primary-model:
    error_rate: 1.0
    errors: {KIND: 1}
"""
)
