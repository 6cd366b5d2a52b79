"""Redis limit store: one Lua script call checks and reserves every scope of a request.

Keys of one tenant share the hash tag ``{<tenant>}`` (``sr:lim:{acme}:...``),
so in Redis Cluster every key a script touches is on one shard. Reserve and
settle are each one ``EVALSHA`` (the script is loaded once; ``redis-py``'s
``Script`` falls back to ``EVAL`` after a restart flushed it): one round trip
per request at the door, one after the call. Time is Redis' ``TIME``, the same
for every router.

Layout per tenant (``T`` = ``sr:lim:{tenant}``):

- ``T:r:<key>``: GCRA theoretical arrival time (ms, string), expires when full.
- ``T:c:<key>``: concurrency, a sorted set of request ids scored by hold expiry.
- ``T:b:<key>``: budget hash ``spent``, ``held``, ``h:<rid>`` (held amount per
  request); ``T:bh:<key>``: its holds' expiries (sorted set): a hold past its
  expiry is refunded by the next script that touches the budget.
- ``T:res:<rid>``: what a request reserved per check (for settlement),
  ``T:set:<rid>``: the settlement marker (``SET NX``: settling twice is a no-op).
"""

from __future__ import annotations

from typing import Any

from skyroute.router.ingress.guards.limits import Check, Decision, DuplicateReservation, ScopeState

_KIND = {"rate": "r", "concurrency": "c", "budget": "b"}

# Per check: ARGV kind, limit, cost, cost_min, window_ms, hold_ms, expire_s, shadow;
# KEYS[2i], KEYS[2i+1]: the check's key and its auxiliary key (budget holds).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1} end
local rid = ARGV[1]
local n = tonumber(ARGV[3])
local st = {}
local denied, retry = 0, 0
for i = 1, n do
  local b = 3 + (i - 1) * 8
  local kind, limit, cost = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local cmin, win = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local shadow = ARGV[b + 8] == '1'
  local k, aux = KEYS[2 * i], KEYS[2 * i + 1]
  local ok, remaining, reset, g, wait, tat2 = true, 0, 0, cost, 0, 0
  if kind == 'r' then
    local T = win / limit
    local tat = tonumber(redis.call('GET', k) or '0')
    if tat < now then tat = now end
    tat2 = tat + cost * T
    if tat2 - now > win then
      ok = false
      if cost * T > win then wait = win else wait = tat2 - now - win end
      remaining = math.floor((win - (tat - now)) / T)
      reset = tat - now
    else
      remaining = math.floor((win - (tat2 - now)) / T)
      reset = tat2 - now
    end
  elseif kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    local used = redis.call('ZCARD', k)
    if used + 1 > limit then
      ok = false
      local first = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
      if first[2] then wait = tonumber(first[2]) - now else wait = 1000 end
    else
      remaining = limit - used - 1
    end
  else
    local dead = redis.call('ZRANGEBYSCORE', aux, '-inf', now, 'LIMIT', 0, 256)
    for _, r in ipairs(dead) do
      local amt = tonumber(redis.call('HGET', k, 'h:' .. r) or '0')
      redis.call('HINCRBY', k, 'held', string.format('%d', -amt))
      redis.call('HDEL', k, 'h:' .. r)
      redis.call('ZREM', aux, r)
    end
    local spent = tonumber(redis.call('HGET', k, 'spent') or '0')
    local held = tonumber(redis.call('HGET', k, 'held') or '0')
    local left = limit - spent - held
    reset = win
    if left >= cost then
      g = cost
    elseif cmin > 0 and left >= cmin then
      g = math.floor(left)
    else
      ok = false
      wait = win
    end
    if ok then remaining = left - g else remaining = left end
    if remaining < 0 then remaining = 0 end
  end
  if not ok then
    if shadow then g = cost else g = 0 end
    if (not shadow) and denied == 0 then denied, retry = i, wait end
  end
  st[i] = {ok and 1 or 0, remaining, reset, g, tat2}
end
local out = {denied == 0 and 1 or 0, denied, math.ceil(retry)}
for i = 1, n do
  local s = st[i]
  out[#out + 1] = s[1]
  out[#out + 1] = tostring(s[2])
  out[#out + 1] = tostring(s[3])
  out[#out + 1] = tostring(s[4])
end
if denied ~= 0 then return out end
for i = 1, n do
  local b = 3 + (i - 1) * 8
  local kind = ARGV[b + 1]
  local win, hold, exp = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local k, aux = KEYS[2 * i], KEYS[2 * i + 1]
  local s = st[i]
  if kind == 'r' then
    redis.call('SET', k, string.format('%.3f', s[5]), 'PX', math.ceil(s[5] - now) + 1000)
  elseif kind == 'c' then
    redis.call('ZADD', k, now + hold, rid)
    redis.call('PEXPIRE', k, hold + 1000)
  else
    redis.call('HINCRBY', k, 'held', string.format('%d', s[4]))
    redis.call('HSET', k, 'h:' .. rid, string.format('%d', s[4]))
    redis.call('ZADD', aux, now + hold, rid)
    if exp > 0 then
      redis.call('EXPIRE', k, exp)
      redis.call('EXPIRE', aux, exp)
    end
  end
  redis.call('HSET', KEYS[1], tostring(i), s[4])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return out
"""

# KEYS[1]: reservation record, KEYS[2]: settlement marker, then the checks' key pairs.
# Per check: ARGV kind, limit, actual, window_ms.
_SETTLE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[2])) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid = ARGV[1]
local n = tonumber(ARGV[3])
local have = redis.call('EXISTS', KEYS[1]) == 1
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local kind, limit, used = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local win = tonumber(ARGV[b + 4])
  local k, aux = KEYS[2 * i + 1], KEYS[2 * i + 2]
  if kind == 'r' then
    local tat = redis.call('GET', k)
    if have and tat then
      local reserved = tonumber(redis.call('HGET', KEYS[1], tostring(i)) or '0')
      local new = tonumber(tat) + (used - reserved) * win / limit
      if new > now then
        redis.call('SET', k, string.format('%.3f', new), 'PX', math.ceil(new - now) + 1000)
      else
        redis.call('DEL', k)
      end
    end
  elseif kind == 'c' then
    redis.call('ZREM', k, rid)
  else
    if redis.call('ZREM', aux, rid) == 1 then
      local amt = tonumber(redis.call('HGET', k, 'h:' .. rid) or '0')
      redis.call('HINCRBY', k, 'held', string.format('%d', -amt))
      redis.call('HDEL', k, 'h:' .. rid)
    end
    redis.call('HINCRBY', k, 'spent', string.format('%d', math.floor(used)))
  end
end
redis.call('DEL', KEYS[1])
return 1
"""


def _num(v: Any) -> float:
    return float(v.decode() if isinstance(v, bytes) else v)


class RedisLimitStore:
    name = "redis"

    def __init__(
        self, url: str, prefix: str = "sr:lim:", timeout_s: float = 0.5, cluster: bool = False
    ) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster

        opts: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        self.redis: Any = (
            RedisCluster.from_url(url, **opts) if cluster else aioredis.from_url(url, **opts)
        )
        self.prefix = prefix
        self._reserve = self.redis.register_script(_RESERVE)
        self._settle = self.redis.register_script(_SETTLE)

    def _base(self, tenant: str) -> str:
        return f"{self.prefix}{{{tenant}}}:"

    def _keys(self, base: str, checks: list[Check]) -> list[str]:
        keys: list[str] = []
        for c in checks:
            kind = _KIND[c.kind]
            keys.append(f"{base}{kind}:{c.key}")
            keys.append(f"{base}bh:{c.key}" if c.kind == "budget" else f"{base}{kind}:{c.key}")
        return keys

    async def reserve(self, tenant: str, rid: str, checks: list[Check], record_ms: int) -> Decision:
        base = self._base(tenant)
        argv: list[str | int | float] = [rid, int(record_ms), len(checks)]
        for c in checks:
            argv += [
                _KIND[c.kind],
                c.limit,
                c.cost,
                c.cost_min,
                int(c.window_ms),
                int(c.hold_ms),
                int(c.expire_s),
                1 if c.shadow else 0,
            ]
        out = await self._reserve(keys=[f"{base}res:{rid}", *self._keys(base, checks)], args=argv)
        if int(out[0]) == -1:
            raise DuplicateReservation(rid)
        states: list[ScopeState] = []
        shadow_denied: list[Check] = []
        for i, c in enumerate(checks):
            ok, rem, reset, g = out[3 + 4 * i : 7 + 4 * i]
            ok_b = int(ok) == 1
            if not ok_b and c.shadow:
                shadow_denied.append(c)
            states.append(ScopeState(c, ok_b, _num(rem), _num(reset), _num(g)))
        denied_i = int(out[1])
        denied = checks[denied_i - 1] if denied_i else None
        return Decision(int(out[0]) == 1, states, denied, float(out[2]), shadow_denied, self.name)

    async def settle(self, tenant: str, rid: str, checks: list[Check], actual: list[float]) -> bool:
        base = self._base(tenant)
        argv: list[str | int | float] = [rid, 86_400_000, len(checks)]
        for c, used in zip(checks, actual, strict=True):
            argv += [_KIND[c.kind], c.limit, used, int(c.window_ms)]
        keys = [f"{base}res:{rid}", f"{base}set:{rid}", *self._keys(base, checks)]
        return int(await self._settle(keys=keys, args=argv)) == 1

    async def spent(self, tenant: str, key: str) -> tuple[int, int]:
        vals = await self.redis.hmget(f"{self._base(tenant)}b:{key}", ["spent", "held"])
        return int(vals[0] or 0), int(vals[1] or 0)

    async def close(self) -> None:
        await self.redis.aclose()
