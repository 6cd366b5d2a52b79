"""Pools, policies and the simulator scenario for the fault-injection suite.

Every fault gets its own pool and policy with its own model names, so the
router's per-endpoint state (ejections, cool-downs) from one test never
leaks into another.
"""

from __future__ import annotations

# (policy, primary model, primary provider, backup model or "") ; backups are healthy.
POOLS = [
    ("down", "a-down", "openai", "b-down"),
    ("hang", "a-hang", "openai", "b-hang"),
    ("storm", "a-429", "openai", "b-429"),
    ("ttft", "a-ttft", "anthropic", "b-ttft"),
    ("cut", "a-cut", "gemini", "b-cut"),
    ("stall", "a-stall", "openai", "b-stall"),
    ("tool", "a-tool", "openai", "b-tool"),
    ("toolhang", "a-toolhang", "openai", "b-toolhang"),
    ("slow", "a-slow", "openai", ""),
    ("hedge", "a-hedge", "openai", "b-hedge"),
    # Unary stalls: a first token that never comes, and a stream that stops midway,
    # behind a long (6 s) attempt timeout.
    ("uttft", "a-uttft", "openai", "b-uttft"),
    ("ustall", "a-ustall", "openai", "b-ustall"),
    # Two models on one endpoint, then a healthy one on another provider.
    ("budget", "a-budget", "openai", "b-budget"),
    # Idempotency after a timeout: the primary hangs on a tool request.
    ("idemhang", "a-idemhang", "openai", "b-idemhang"),
    # A latency objective: a slow-first-token primary, a fast model on the same
    # provider next, a fast one on another provider last (the hedge's preferred target).
    ("objective", "a-obj", "openai", "b-obj"),
]

_PATH = {"openai": "/openai/v1", "anthropic": "/anthropic", "gemini": "/gemini"}


def _model(name: str, provider: str, timeout_ms: int) -> str:
    return (
        f"    - name: {name}\n      provider: {provider}\n"
        f"      endpoint: {{SIM}}{_PATH[provider]}\n"
        f"      pricing: {{inputPerMTok: 1.0, outputPerMTok: 2.0}}\n"
        f"      timeoutMs: {timeout_ms}\n"
    )


def files() -> dict[str, str]:
    docs = []
    for i, (policy, primary, provider, backup) in enumerate(POOLS):
        # The tool and slow pools have slow but healthy primaries: timeouts must outlast them.
        slow = ("tool", "slow", "hedge", "objective")
        models = _model(primary, provider, 3000 if policy in slow else 400)
        if policy in ("uttft", "ustall"):
            models = _model(primary, provider, 6000)
        if policy == "budget":
            models += _model("a2-budget", provider, 400)
        if policy == "objective":
            models += _model("a2-obj", provider, 3000)
        if backup:
            models += _model(backup, "anthropic" if provider != "anthropic" else "openai", 3000)
        docs.append(
            f"apiVersion: skyroute.io/v1alpha1\nkind: ModelPool\nmetadata:\n"
            f"  name: pool-{policy}\nspec:\n  models:\n{models}"
        )
        # Unary calls stream internally, so the first-token timeout applies to them too.
        ftt = 2500 if policy in slow else 500
        objective = (
            "  selection: {mode: ordered, objective: {p95Ms: 1400}}\n"
            if policy == "objective"
            else ""
        )
        budget = (0, 0) if policy == "budget" else (0.2, 10)  # "budget": no retries at all
        docs.append(f"""apiVersion: skyroute.io/v1alpha1
kind: RoutingPolicy
metadata:
  name: {policy}
spec:
  default: {"true" if i == 0 else "false"}
  defaultPool: pool-{policy}
  limits: {{maxAttempts: 3, requestTimeoutMs: 8000, firstTokenTimeoutMs: {ftt},
           interTokenTimeoutMs: 500}}
  reliability:
    outlierDetection: {{consecutiveFailures: 3, baseEjectionMs: 5000, maxEjectionPercent: 50}}
    retryBudget: {{ratio: {budget[0]}, minConcurrency: {budget[1]}}}
    nonIdempotentTools: [create_invoice]
    hedging: {{enabled: {"true" if policy == "hedge" else "false"}, afterMs: 100}}
{objective}""")
    return {"faults.yaml": "---\n".join(docs)}


SCENARIO = """\
seed: 11
hang_s: 60
defaults:
  ttft_ms: {p50: 20, p95: 40}
  tokens_per_s: 2000
  completion_tokens: {p50: 24, p95: 40, min: 8, max: 200}
  stream_chunk_tokens: 2
  error_rate: 0
models:
  a-down: {error_rate: 1.0, errors: {server_error: 1}}
  a-hang: {error_rate: 1.0, errors: {timeout: 1}}
  a-429: {error_rate: 1.0, errors: {rate_limited: 1}, retry_after_s: 3}
  a-ttft: {ttft_ms: {p50: 2000, p95: 2000}}
  a-cut:
    error_rate: 1.0
    errors: {stream_cut: 1}
    completion_tokens: {p50: 60, p95: 80, min: 40, max: 200}
  a-stall:
    error_rate: 1.0
    errors: {stall: 1}
    completion_tokens: {p50: 60, p95: 80, min: 40, max: 200}
  a-tool: {ttft_ms: {p50: 1200, p95: 1200}}
  a-toolhang: {error_rate: 1.0, errors: {timeout: 1}}
  a-slow: {ttft_ms: {p50: 800, p95: 800}}
  a-hedge: {ttft_ms: {p50: 900, p95: 900}}
  a-uttft: {ttft_ms: {p50: 5000, p95: 5000}}
  a-ustall:
    error_rate: 1.0
    errors: {stall: 1}
    completion_tokens: {p50: 60, p95: 80, min: 40, max: 200}
  a-budget: {error_rate: 1.0, errors: {server_error: 1}}
  a-idemhang: {error_rate: 1.0, errors: {timeout: 1}}
  a2-budget: {error_rate: 1.0, errors: {server_error: 1}}
  a-obj: {ttft_ms: {p50: 900, p95: 900}}
"""

INVOICE_TOOL = {
    "type": "function",
    "function": {
        "name": "create_invoice",
        "description": "Create an invoice for an order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
