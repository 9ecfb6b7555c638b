"""Redis ledger backend: one Lua script per operation, so check-and-reserve is atomic across nodes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis

from compliance_guard.errors import ReservationClosed, StoreUnavailable, UnknownReservation
from compliance_guard.store import (
    DEFAULT_RETENTION_DAYS,
    NO_FLAGS,
    LedgerCount,
    Observation,
    ReserveCall,
    under_limit,
)

# KEYS: n ledger zsets, m flag sets, the reservation hash.
# ARGV: member ('' = look only), at_us, ttl_ms, conversation keys ("\n"-joined),
#       per ledger "window_start limit record ,counted,outcomes," joined by "\n",
#       per flag set ",blocking, ,required," joined by "\n" (an empty set is ",,").
# Everything travels in a few strings and comes back in one: a client without a compiled
# parser pays per array element and per argument, not per byte.
# Returns "granted\ncount pivot\n...(n)\nflags csv\n...(m)" (pivot "-" when under the limit).
RESERVE = """
local ledgers, flagspecs = {}, {}
for line in string.gmatch(ARGV[5], '[^\\n]+') do ledgers[#ledgers + 1] = line end
for line in string.gmatch(ARGV[6], '[^\\n]+') do flagspecs[#flagspecs + 1] = line end
local n, m = #ledgers, #flagspecs
local ok = ARGV[1] ~= ''
local out = {}
local records, counted = {}, {}
for i = 1, n do
  local ws, limit, record, counts = string.match(ledgers[i], '^(%S+) (%d+) (%d) (%S+)$')
  limit = tonumber(limit)
  records[i], counted[i] = record, counts
  local c = redis.call('ZCOUNT', KEYS[i], ws, '+inf')
  local pivot = '-'
  if c >= limit then
    ok = false
    local r = redis.call('ZRANGEBYSCORE', KEYS[i], ws, '+inf', 'WITHSCORES', 'LIMIT', c - limit, 1)
    pivot = r[2]
  end
  out[#out + 1] = c .. ' ' .. pivot
end
for j = 1, m do
  local blocking, required = string.match(flagspecs[j], '^(%S+) (%S+)$')
  local present = redis.call('SMEMBERS', KEYS[n + j])
  local set = {}
  for _, f in ipairs(present) do
    set[f] = true
    if string.find(blocking, ',' .. f .. ',', 1, true) then ok = false end
  end
  for f in string.gmatch(required, '[^,]+') do
    if not set[f] then ok = false end
  end
  out[#out + 1] = table.concat(present, ',')
end
if ok then
  local member, at, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
  local res = KEYS[n + m + 1]
  local held = {'_state', 'pending', '_conv', ARGV[4]}
  for i = 1, n do
    if records[i] == '1' then
      redis.call('ZADD', KEYS[i], at, member)
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', tonumber(at) - ttl * 1000)
      redis.call('PEXPIRE', KEYS[i], ttl)
      held[#held + 1] = 'k:' .. KEYS[i]
      held[#held + 1] = counted[i]
    end
  end
  redis.call('HSET', res, unpack(held))
  redis.call('PEXPIRE', res, ttl)
end
return (ok and '1' or '0') .. '\\n' .. table.concat(out, '\\n')
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
        retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.retention_days = retention_days
        if isinstance(client, str):
            client = redis.Redis.from_url(client, socket_timeout=2.0, socket_connect_timeout=2.0)
            self._owns = True
        else:
            self._owns = False
        self.client: redis.Redis[Any] = client
        self.prefix = prefix
        self._ttl_ms = retention_days * 86_400_000
        self._settle = client.register_script(SETTLE)
        self._reserve_sha = hashlib.sha1(RESERVE.encode()).hexdigest()  # loaded on first NOSCRIPT
        self._csv_cache: dict[frozenset[str], str] = {}

    def _l(self, key: str) -> str:
        return f"{self.prefix}l:{key}"

    def _f(self, target: str) -> str:
        return f"{self.prefix}f:{target}"

    def _r(self, reservation_id: str) -> str:
        return f"{self.prefix}r:{reservation_id}"

    def _csv(self, items: frozenset[str]) -> str:
        """The names between commas, `,a,b,` (cached: rule sets reuse the same few sets)."""
        hit = self._csv_cache.get(items)
        if hit is None:
            hit = self._csv_cache[items] = f",{','.join(sorted(items))},"
        return hit

    def _script_args(self, call: ReserveCall) -> list[Any]:
        """EVALSHA's arguments after the script: numkeys, keys, then the packed ARGV."""
        p = self.prefix
        csv = self._csv
        checks, flag_checks, r = call.checks, call.flag_checks, call.reservation
        keys = [f"{p}l:{c.key}" for c in checks]
        keys += [f"{p}f:{f.target}" for f in flag_checks]
        keys.append(f"{p}r:{r.reservation_id}" if r else f"{p}r:-")
        ledgers = "\n".join(
            [
                f"{c.window_start_us} {c.limit} {1 if c.record else 0} {csv(c.counts)}"
                for c in checks
            ]
        )
        flags = "\n".join([f"{csv(f.blocking)} {csv(f.required)}" for f in flag_checks])
        if r is not None:
            head = [
                r.reservation_id,
                r.at_us,
                self._ttl_ms,
                "\n".join(p + "l:" + k for k in r.conversation_keys),
            ]
        else:
            head = ["", 0, self._ttl_ms, ""]
        return [len(keys), *keys, *head, ledgers, flags]

    @staticmethod
    def _parse(call: ReserveCall, raw: Any) -> Observation:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        lines = text.split("\n")
        n = len(call.checks)
        counts = []
        for line in lines[1 : 1 + n]:
            count, pivot = line.split(" ")
            c = int(count)
            counts.append(under_limit(c) if pivot == "-" else LedgerCount(c, int(float(pivot))))
        flags = [
            frozenset(x.split(",")) if x else NO_FLAGS
            for x in lines[1 + n : 1 + n + len(call.flag_checks)]
        ]
        return Observation(tuple(counts), tuple(flags), lines[0] == "1")

    def _load_reserve(self) -> None:
        sha = self.client.execute_command("SCRIPT", "LOAD", RESERVE)
        self._reserve_sha = sha.decode() if isinstance(sha, bytes) else str(sha)

    def _evalsha(self, args: list[Any]) -> Any:
        try:
            return self.client.execute_command("EVALSHA", self._reserve_sha, *args)
        except redis.exceptions.NoScriptError:
            # The server lost its script cache (restart, SCRIPT FLUSH): nothing ran; load it
            # again and run once more.
            self._load_reserve()
            return self.client.execute_command("EVALSHA", self._reserve_sha, *args)

    def reserve(self, call: ReserveCall) -> Observation:
        args = self._script_args(call)
        try:
            raw = self._evalsha(args)
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return self._parse(call, raw)

    def reserve_many(self, calls: Sequence[ReserveCall]) -> list[Observation]:
        """All calls in one pipelined round trip; each script still runs atomically, in order."""
        all_args = [self._script_args(c) for c in calls]
        try:
            raws = self._pipelined(all_args)
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in raws):
                # Only possible when the script cache was flushed: none of those ran. Load the
                # script and run exactly those again (in their order).
                self._load_reserve()
                redo = [
                    i for i, r in enumerate(raws) if isinstance(r, redis.exceptions.NoScriptError)
                ]
                for i, raw in zip(redo, self._pipelined([all_args[i] for i in redo]), strict=True):
                    raws[i] = raw
            for r in raws:
                if isinstance(r, Exception):
                    raise r
        except _ERRORS as exc:
            raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return [self._parse(c, r) for c, r in zip(calls, raws, strict=True)]

    def _pipelined(self, all_args: Sequence[list[Any]]) -> list[Any]:
        # Plain EVALSHA in a non-transactional pipeline: one write, one read for the batch (a
        # registered Script in a pipeline would first ask SCRIPT EXISTS: another round trip).
        pipe = self.client.pipeline(transaction=False)
        for args in all_args:
            pipe.evalsha(self._reserve_sha, *args)
        return list(pipe.execute(raise_on_error=False))

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
