"""Redis ledger backend: one Lua script per operation, so check-and-reserve is atomic across nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from compliance_guard.errors import ReservationClosed, StoreUnavailable, UnknownReservation
from compliance_guard.store import LedgerCount, Observation, ReserveCall

# KEYS: n ledger zsets, m flag sets, the reservation hash.
# ARGV: n, m, reserve?, member, at_us, ttl_ms, conversation keys ("\n"-joined),
#       then per ledger: window_start, limit, record?, ",counted,outcomes,"
#       then per flag set: ",blocking,", ",required,".
# Returns {granted, count_1..n, pivot_1..n ("" when under the limit), flags_1..m (csv)}.
RESERVE = """
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local ok = ARGV[3] == '1'
local counts, pivots, flags = {}, {}, {}
for i = 1, n do
  local b = 7 + (i - 1) * 4
  local ws, limit = ARGV[b + 1], tonumber(ARGV[b + 2])
  local c = redis.call('ZCOUNT', KEYS[i], ws, '+inf')
  counts[i] = c
  pivots[i] = ''
  if c >= limit then
    ok = false
    local r = redis.call('ZRANGEBYSCORE', KEYS[i], ws, '+inf', 'WITHSCORES', 'LIMIT', c - limit, 1)
    pivots[i] = r[2]
  end
end
local fb = 7 + n * 4
for j = 1, m do
  local present = redis.call('SMEMBERS', KEYS[n + j])
  local blocking, required = ARGV[fb + (j - 1) * 2 + 1], ARGV[fb + (j - 1) * 2 + 2]
  local set = {}
  for _, f in ipairs(present) do
    set[f] = true
    if string.find(blocking, ',' .. f .. ',', 1, true) then ok = false end
  end
  for f in string.gmatch(required, '[^,]+') do
    if not set[f] then ok = false end
  end
  flags[j] = table.concat(present, ',')
end
if ok then
  local member, at, ttl = ARGV[4], ARGV[5], tonumber(ARGV[6])
  local res = KEYS[n + m + 1]
  for i = 1, n do
    local b = 7 + (i - 1) * 4
    if ARGV[b + 3] == '1' then
      redis.call('ZADD', KEYS[i], at, member)
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', tonumber(at) - ttl * 1000)
      redis.call('PEXPIRE', KEYS[i], ttl)
      redis.call('HSET', res, 'k:' .. KEYS[i], ARGV[b + 4])
    end
  end
  redis.call('HSET', res, '_state', 'pending', '_conv', ARGV[7])
  redis.call('PEXPIRE', res, ttl)
end
local out = {ok and 1 or 0}
for i = 1, n do out[#out + 1] = counts[i] end
for i = 1, n do out[#out + 1] = pivots[i] end
for j = 1, m do out[#out + 1] = flags[j] end
return out
"""

# KEYS: reservation hash. ARGV: outcome ('' = release), at_us, member, ttl_ms.
# Returns 1 done, -1 unknown reservation, or the state it is already in.
SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local state = redis.call('HGET', KEYS[1], '_state')
if state ~= 'pending' then return state end
local outcome, at, member, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'k:' then
    if outcome == '' or not string.find(all[i + 1], ',' .. outcome .. ',', 1, true) then
      redis.call('ZREM', string.sub(all[i], 3), member)
    end
  end
end
if outcome == 'conversation' then
  local conv = redis.call('HGET', KEYS[1], '_conv')
  for key in string.gmatch(conv, '[^\\n]+') do
    redis.call('ZADD', key, at, member)
    redis.call('PEXPIRE', key, ttl)
  end
end
if outcome == '' then outcome = 'released' end
redis.call('HSET', KEYS[1], '_state', outcome)
return 1
"""

_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)


class RedisStore:
    """Ledger in Redis for several dialer nodes; every key starts with `prefix`."""

    def __init__(
        self,
        client: redis.Redis[Any] | str,
        prefix: str = "compliance:",
        retention_days: int = 40,
    ) -> None:
        if isinstance(client, str):
            client = redis.Redis.from_url(client, socket_timeout=2.0, socket_connect_timeout=2.0)
            self._owns = True
        else:
            self._owns = False
        self.client: redis.Redis[Any] = client
        self.prefix = prefix
        self._ttl_ms = retention_days * 86_400_000
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)

    def _l(self, key: str) -> str:
        return f"{self.prefix}l:{key}"

    def _f(self, target: str) -> str:
        return f"{self.prefix}f:{target}"

    def _r(self, reservation_id: str) -> str:
        return f"{self.prefix}r:{reservation_id}"

    def _script_args(self, call: ReserveCall) -> tuple[list[str], list[Any]]:
        keys = [self._l(c.key) for c in call.checks] + [self._f(f.target) for f in call.flag_checks]
        r = call.reservation
        keys.append(self._r(r.reservation_id) if r else f"{self.prefix}r:-")
        args: list[Any] = [
            len(call.checks),
            len(call.flag_checks),
            1 if r else 0,
            r.reservation_id if r else "",
            r.at_us if r else 0,
            self._ttl_ms,
            "\n".join(self._l(k) for k in r.conversation_keys) if r else "",
        ]
        for c in call.checks:
            args += [c.window_start_us, c.limit, 1 if c.record else 0, f",{','.join(c.counts)},"]
        for f in call.flag_checks:
            args += [f",{','.join(f.blocking)},", ",".join(f.required)]
        return keys, args

    @staticmethod
    def _parse(call: ReserveCall, raw: Sequence[Any]) -> Observation:
        n, m = len(call.checks), len(call.flag_checks)
        counts = []
        for i in range(n):
            pivot = raw[1 + n + i]
            pivot_us = int(float(pivot)) if pivot not in (b"", "", None) else None
            counts.append(LedgerCount(int(raw[1 + i]), pivot_us))
        flags = []
        for j in range(m):
            text = raw[1 + 2 * n + j]
            text = text.decode() if isinstance(text, bytes) else str(text)
            flags.append(frozenset(x for x in text.split(",") if x))
        return Observation(tuple(counts), tuple(flags), raw[0] == 1)

    def reserve(self, call: ReserveCall) -> Observation:
        keys, args = self._script_args(call)
        try:
            raw = self._reserve(keys=keys, args=args)
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return self._parse(call, raw)

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        """All calls in one pipelined round trip; each script still runs atomically."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                keys, args = self._script_args(call)
                self._reserve(keys=keys, args=args, client=pipe)
            raws = pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return [self._parse(c, r) for c, r in zip(calls, raws, strict=True)]

    def _run_settle(self, reservation_id: str, outcome: str, at_us: int) -> Any:
        try:
            return self._settle(
                keys=[self._r(reservation_id)],
                args=[outcome, at_us, reservation_id, self._ttl_ms],
            )
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def release(self, reservation_id: str) -> bool:
        return bool(self._run_settle(reservation_id, "", 0) == 1)

    def record_outcome(self, reservation_id: str, outcome: str, at_us: int) -> None:
        result = self._run_settle(reservation_id, outcome, at_us)
        if result == -1:
            raise UnknownReservation(f"no reservation {reservation_id!r}")
        if result != 1:
            state = result.decode() if isinstance(result, bytes) else result
            raise ReservationClosed(f"reservation {reservation_id!r} is {state}")

    def append(self, entries: Sequence[tuple[str, int, str]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            for key, at_us, member in entries:
                pipe.zadd(self._l(key), {member: at_us})
                pipe.pexpire(self._l(key), self._ttl_ms)
            pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def set_flag(self, target: str, flag: str, at_us: int) -> None:
        try:
            self.client.sadd(self._f(target), flag)
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def clear_flag(self, target: str, flag: str) -> bool:
        try:
            return bool(self.client.srem(self._f(target), flag))
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def flags(self, target: str) -> frozenset[str]:
        try:
            members = self.client.smembers(self._f(target))
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return frozenset(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def entries(self, key: str) -> list[int]:
        return [int(s) for _, s in self.client.zrange(self._l(key), 0, -1, withscores=True)]

    def ledger_keys(self) -> list[str]:
        start = len(self.prefix) + 2
        return sorted(
            k.decode()[start:] for k in self.client.scan_iter(match=f"{self.prefix}l:*", count=1000)
        )

    def close(self) -> None:
        if self._owns:
            self.client.close()
