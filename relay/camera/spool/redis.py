"""The scale-out spool: objects as chunked Redis strings, so any relay node serves any blob.

Keys, for namespace ``ns`` and object id ``id``:

    ns:spool:id          hash: size, deadline (Unix ms), chunk (the chunk size it was created with)
    ns:spool:id:0, :1 …  the bytes, ``chunk`` bytes per key (the last one may be shorter)
    ns:spool:deadlines   sorted set: object id scored by its deadline, for ``sweep``

Every change is one Lua script, so it is atomic across nodes: an append checks the expected
size and the deadline, fills the partial last chunk (APPEND), then new chunks. Each object key
carries a TTL of (deadline - now + grace), ``now`` being the injected clock, so Redis removes
everything by itself shortly after the deadline even if no node ever sweeps. Needs a
standalone Redis (or a primary with replicas); scripts touch keys they compute, which Redis
Cluster refuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from relay.camera.spool.contract import (
    Spool,
    SpoolObjectExists,
    SpoolObjectMissing,
    SpoolOffsetMismatch,
    check_deadline,
    check_object_id,
)
from relay.camera.spool.pipelining import append_pipelined
from relay.clock import Clock

DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local ttl = math.max(tonumber(ARGV[1]) - tonumber(ARGV[2]) + tonumber(ARGV[3]), 1)
redis.call('HSET', KEYS[1], 'size', 0, 'deadline', ARGV[1], 'chunk', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
return 1
"""

_APPEND = """
local state = redis.call('HMGET', KEYS[1], 'size', 'deadline', 'chunk')
local now = tonumber(ARGV[4])
if not state[1] or tonumber(state[2]) <= now then return {-1, 0} end
local size = tonumber(state[1])
if size ~= tonumber(ARGV[2]) then return {-2, size} end
local chunk = tonumber(state[3])
local ttl = tonumber(state[2]) - now + tonumber(ARGV[5])
local data = ARGV[3]
local position = 1
while position <= #data do
  local room = chunk - (size % chunk)
  local piece = data
  if position > 1 or #data > room then piece = string.sub(data, position, position + room - 1) end
  local key = ARGV[1] .. string.format('%d', math.floor(size / chunk))
  redis.call('APPEND', key, piece)
  redis.call('PEXPIRE', key, ttl)
  size = size + #piece
  position = position + #piece
end
redis.call('HSET', KEYS[1], 'size', string.format('%d', size))
return {0, size}
"""

_SET_EXPIRY = """
local state = redis.call('HMGET', KEYS[1], 'size', 'deadline', 'chunk')
local now = tonumber(ARGV[3])
if not state[1] or tonumber(state[2]) <= now then return 0 end
local ttl = math.max(tonumber(ARGV[2]) - now + tonumber(ARGV[4]), 1)
redis.call('HSET', KEYS[1], 'deadline', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
for index = 0, math.ceil(tonumber(state[1]) / tonumber(state[3])) - 1 do
  redis.call('PEXPIRE', ARGV[1] .. string.format('%d', index), ttl)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[5])
return 1
"""

# ARGV[3] empty: delete unconditionally, return whether any key existed. ARGV[3] a time:
# delete only if the object's deadline is <= it, return whether this call unlisted it.
_DELETE = """
if ARGV[3] ~= '' then
  local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if not score or tonumber(score) > tonumber(ARGV[3]) then return 0 end
end
local unlisted = redis.call('ZREM', KEYS[2], ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'size', 'chunk')
local existed = redis.call('DEL', KEYS[1])
if state[1] then
  for index = 0, math.ceil(tonumber(state[1]) / tonumber(state[2])) - 1 do
    redis.call('DEL', ARGV[1] .. string.format('%d', index))
  end
else
  local index = 0
  while redis.call('DEL', ARGV[1] .. string.format('%d', index)) == 1 do
    existed = 1
    index = index + 1
  end
end
if ARGV[3] ~= '' then return unlisted end
return existed
"""


class RedisSpool(Spool):
    def __init__(
        self,
        redis: Redis,
        namespace: str,
        clock: Clock,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        grace: timedelta = DEFAULT_GRACE,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis spool needs a client that returns bytes (decode_responses=False)")
        self._redis = redis
        self._prefix = f"{namespace}:spool:"
        self._index = f"{namespace}:spool:deadlines"
        self._clock = clock
        self._chunk_size = chunk_size
        self._grace_ms = _milliseconds(grace)
        self._create = redis.register_script(_CREATE)
        self._append = redis.register_script(_APPEND)
        self._set_expiry = redis.register_script(_SET_EXPIRY)
        self._delete = redis.register_script(_DELETE)

    async def create(self, object_id: str, *, expires_at: datetime) -> None:
        meta = self._meta(object_id)
        deadline = _unix_ms(check_deadline(expires_at))
        args = [deadline, self._now_ms(), self._grace_ms, self._chunk_size, object_id]
        if not await self._create(keys=[meta, self._index], args=args):
            raise SpoolObjectExists("an object with this id exists")

    async def append(self, object_id: str, offset: int, chunks: AsyncIterable[bytes]) -> int:
        """Each chunk goes to Redis while the next one arrives."""
        meta = self._meta(object_id)
        await self._append_piece(meta, offset, b"")
        return await append_pipelined(chunks, offset, lambda position, chunk: self._append_chunk(meta, position, chunk))

    async def _append_chunk(self, meta: str, position: int, chunk: bytes) -> int:
        for start in range(0, len(chunk), self._chunk_size):
            position = await self._append_piece(meta, position, chunk[start : start + self._chunk_size])
        return position

    async def size(self, object_id: str) -> int:
        size, _ = await self._live_state(self._meta(object_id))
        return size

    async def read(self, object_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        meta = self._meta(object_id)
        size, chunk = await self._live_state(meta)
        stop = size if end is None else end
        if not 0 <= start <= stop <= size:
            raise ValueError(f"range [{start}, {stop}) is outside the object's {size} bytes")
        position = start
        while position < stop:
            index, skip = divmod(position, chunk)
            length = min(chunk - skip, stop - position)
            data = await self._redis.getrange(f"{meta}:{index}", skip, skip + length - 1)
            if len(data) != length:
                raise SpoolObjectMissing("the object was removed during the read")
            position += length
            yield data

    async def set_expiry(self, object_id: str, expires_at: datetime) -> None:
        meta = self._meta(object_id)
        deadline = _unix_ms(check_deadline(expires_at))
        args = [meta + ":", deadline, self._now_ms(), self._grace_ms, object_id]
        if not await self._set_expiry(keys=[meta, self._index], args=args):
            raise SpoolObjectMissing("no such object, or past its deadline")

    async def delete(self, object_id: str) -> bool:
        meta = self._meta(object_id)
        return bool(await self._delete(keys=[meta, self._index], args=[meta + ":", object_id, ""]))

    async def sweep(self, now: datetime) -> list[str]:
        due = _unix_ms(now)
        removed = []
        while True:
            batch = await self._redis.zrangebyscore(self._index, "-inf", due, start=0, num=SWEEP_BATCH)
            if not batch:
                return removed
            for raw in batch:
                object_id = raw.decode()
                meta = self._meta(object_id)
                if await self._delete(keys=[meta, self._index], args=[meta + ":", object_id, due]):
                    removed.append(object_id)

    async def _append_piece(self, meta: str, position: int, piece: bytes) -> int:
        args = [meta + ":", position, piece, self._now_ms(), self._grace_ms]
        status, size = await self._append(keys=[meta], args=args)
        if status == -1:
            raise SpoolObjectMissing("no such object, or past its deadline")
        if status == -2:
            raise SpoolOffsetMismatch(expected=int(size), given=position)
        return int(size)

    async def _live_state(self, meta: str) -> tuple[int, int]:
        """(size, chunk size) of a live object; SpoolObjectMissing otherwise."""
        size, deadline, chunk = await self._redis.hmget(meta, ["size", "deadline", "chunk"])
        if size is None or int(deadline) <= self._now_ms():
            raise SpoolObjectMissing("no such object, or past its deadline")
        return int(size), int(chunk)

    def _meta(self, object_id: str) -> str:
        return self._prefix + check_object_id(object_id)

    def _now_ms(self) -> int:
        return _unix_ms(self._clock.now())


def _unix_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _milliseconds(duration: timedelta) -> int:
    return duration // timedelta(milliseconds=1)
