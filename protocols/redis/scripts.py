"""Every Lua script Chorus runs on Redis, each a ``LuaScript`` whose doc says its KEYS, ARGV
and reply (``help(scripts.LOCK_ACQUIRE)``). The adapters register them on their client
(``LuaScript.register``).

- the job streams, one per lane (``protocols.redis.queue``): ``ENQUEUE``, ``READ_LANES``;
- the event bus (``protocols.redis.event_bus``): ``PUBLISH``;
- the voice-sync schedule (``protocols.redis.voice_queue``): ``TRACK``, ``RESCHEDULE``;
- coordination (``protocols.redis.coordination``): the provider semaphore (``SEM_ACQUIRE``,
  ``SEM_RECLAIM``, ``SLOTS_RENEW``), single-flight locks (``LOCK_ACQUIRE``, ``LOCKS_RENEW``,
  ``LOCK_RELEASE``, ``LOCKS_RELEASE``) and a job's first try at both (``FLIGHT_START``,
  ``FLIGHTS_START``, ``READ_AND_TRY``);
- the processes' heartbeats (``protocols.redis.processes``): ``PROCESS_BEAT``,
  ``PROCESSES_LIST``.

Times in scripts are Redis' own clock (``TIME``), so hosts' clocks do not matter. A script
runs atomically, but a call that times out has an unknown outcome: every script is safe to
run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import coredis
from coredis.commands.script import Script

__all__ = [
    "ALL",
    "ENQUEUE",
    "FLIGHTS_START",
    "FLIGHT_START",
    "LOCKS_RELEASE",
    "LOCKS_RENEW",
    "LOCK_ACQUIRE",
    "LOCK_RELEASE",
    "PROCESSES_LIST",
    "PROCESS_BEAT",
    "PUBLISH",
    "READ_AND_TRY",
    "READ_LANES",
    "RESCHEDULE",
    "SEM_ACQUIRE",
    "SEM_RECLAIM",
    "SLOTS_RENEW",
    "TRACK",
    "LuaScript",
]


@dataclass(frozen=True)
class LuaScript:
    """One Lua script: its ``name``, its ``doc`` (KEYS, ARGV and the reply; it is also the
    object's ``__doc__``, so ``help()`` shows it) and its ``source``."""

    name: str
    doc: str = field(repr=False)
    source: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "__doc__", self.doc)

    def register(self, client: coredis.Redis[bytes]) -> Script[bytes]:
        """This script on ``client``, callable as ``script(keys=[...], args=[...])``."""
        return client.register_script(self.source)


# -- the job stream -------------------------------------------------------------------------------

ENQUEUE = LuaScript(
    name="enqueue",
    doc="""Idempotent XADD of jobs, by job id, each into its lane's stream
    (``RedisQueue.enqueue``).

    KEYS: per job: its lane's job stream, then its enqueue marker.
    ARGV: the markers' ttl (ms), then per job: payload, job id, cache key, book id ("" for
    none).
    Reply: how many jobs were added.

    A job whose marker exists is skipped (whichever lane it was added to). Each other job is
    XADDed with fields ``m`` (payload), ``j`` (job id), ``k`` (cache key) and, for a
    storybook's line, ``b`` (book id), and its marker is set to the entry id. The id, key and
    book ride along in plain fields for the locking read (``READ_AND_TRY``).
    """,
    source="""
local added = 0
for i = 1, #KEYS / 2 do
  if redis.call('EXISTS', KEYS[2 * i]) == 0 then
    local a = 4 * (i - 1) + 2
    local fields = {'m', ARGV[a], 'j', ARGV[a + 1], 'k', ARGV[a + 2]}
    if ARGV[a + 3] ~= '' then
      fields[7] = 'b'
      fields[8] = ARGV[a + 3]
    end
    local id = redis.call('XADD', KEYS[2 * i - 1], '*', unpack(fields))
    redis.call('SET', KEYS[2 * i], id, 'PX', ARGV[1])
    added = added + 1
  end
end
return added
""",
)

# Reads up to ``count`` new entries from the job streams ``KEYS[first..]``, in that order: a
# stream is read only for what the earlier ones left (the interactive lane before the batch
# lane). Returns {stream number (1 = KEYS[first]), entry} per entry.
_READ_LANES = """
local function read_lanes(first, group, consumer, count)
  local out = {}
  for s = first, #KEYS do
    local left = count - #out
    if left <= 0 then break end
    local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left,
                             'STREAMS', KEYS[s], '>')
    if reply then
      for _, entry in ipairs(reply[1][2]) do out[#out + 1] = {s - first + 1, entry} end
    end
  end
  return out
end
"""

READ_LANES = LuaScript(
    name="read_lanes",
    doc="""XREADGROUP (not blocking) for up to COUNT entries across the job streams, the first
    stream first (``RedisQueue.read_new``): the batch lane only fills what the interactive lane
    left, so no more than COUNT entries are taken into a reader's hands.

    KEYS: the job streams, in reading order (interactive, batch).
    ARGV: group, consumer, count.
    Reply: per entry {stream number (1-based, in KEYS), id, fields}; {} when none.
    """,
    source=_READ_LANES + """
local out = {}
for i, row in ipairs(read_lanes(1, ARGV[1], ARGV[2], tonumber(ARGV[3]))) do
  out[i] = {row[1], row[2][1], row[2][2]}
end
return out
""",
)

# -- the event bus --------------------------------------------------------------------------------

PUBLISH = LuaScript(
    name="publish",
    doc="""A batch of events, each on the global stream and its owner's stream under one entry
    id (``RedisEventBus.publish``).

    KEYS: the global event stream, then the owner stream of each event.
    ARGV: the global stream's maxlen, an owner stream's maxlen, an owner stream's ttl (s), then
    one payload per event.
    Reply: the entry ids, one per event.

    Both XADDs trim with ``MAXLEN ~``; the owner stream's expiry is refreshed. The owner XADD
    is a ``pcall``: when the owner stream cannot take the id, the script goes on (the event is
    on the global stream all the same).
    """,
    source="""
local ids = {}
for i = 2, #KEYS do
  local payload = ARGV[i + 2]
  local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', payload)
  redis.pcall('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], id, 'e', payload)
  redis.call('EXPIRE', KEYS[i], ARGV[3])
  ids[#ids + 1] = id
end
return ids
""",
)

# -- the voice-sync schedule ----------------------------------------------------------------------

# Keeps the schedule (KEYS[1]) alive at least as long as the status key KEYS[2].
_KEEP_SCHEDULE = """
local keep = redis.call('PTTL', KEYS[2])
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
return 1
"""

TRACK = LuaScript(
    name="track",
    doc="""Start tracking a voice (``RedisVoiceSyncQueue.track``); a tracked voice is kept as
    it is.

    KEYS: the schedule (zset of voice ids scored by their next poll), the voice's status key.
    ARGV: the voice id, when it is due (unix time), its status (JSON), the status' TTL (ms).
    Reply: 1.

    The status is set (with its TTL) only when absent; the voice is (re)scheduled when its
    status was new or it is missing from the schedule. The schedule's own TTL is raised to the
    status' if shorter, so it outlives every entry and expires once nobody tracks anything.
    """,
    source="""
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4])
    or redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
""" + _KEEP_SCHEDULE,
)

RESCHEDULE = LuaScript(
    name="reschedule",
    doc="""Set a tracked voice's next poll and its status (``RedisVoiceSyncQueue.reschedule``).

    KEYS: the schedule (zset), the voice's status key.
    ARGV: the voice id, when it is due (unix time), its status (JSON), the status' TTL (ms).
    Reply: 1.

    The status is replaced and its TTL set; the schedule's TTL is raised to it if shorter.
    """,
    source="""
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
""" + _KEEP_SCHEDULE,
)

# -- coordination: shared fragments ---------------------------------------------------------------

# Sets ``now``: Redis' clock in ms.
_NOW_MS = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# A job's try at its single-flight lock and, only when the lock is taken, a slot (a job waiting
# for another's result never holds a slot). Returns lock 0 (held by another job) | 1 | 2 (taken,
# but a holder finished recently: look in the cache again first), and slot 0 | 1. ``now`` is set
# by _NOW_MS; expired slots must have been swept first.
_TRY_FLIGHT = _NOW_MS + """
local function try_flight(lock, done, token, prefix, sem, slot, lease, limit)
  local current = redis.call('GET', lock)
  if current and string.sub(current, 1, #prefix) ~= prefix then return 0, 0 end
  redis.call('SET', lock, token, 'PX', lease)
  local state = 1
  if redis.call('EXISTS', done) == 1 then state = 2 end
  if slot ~= '' and (redis.call('ZSCORE', sem, slot) or redis.call('ZCARD', sem) < limit) then
    redis.call('ZADD', sem, now + lease, slot)
    redis.call('PEXPIRE', sem, 2 * lease)
    return state, 1
  end
  return state, 0
end
"""

# -- coordination: the provider account's semaphore ----------------------------------------------

SEM_ACQUIRE = LuaScript(
    name="sem_acquire",
    doc="""One try at a provider slot (``Coordinator.slot``).

    KEYS: the semaphore (a zset of slot tokens scored by their expiry, ms).
    ARGV: the slot token, the slot limit, the lease (ms).
    Reply: 1 = holding the slot (taken, or already held: renewed), 0 = all taken.

    Expired slots are swept first; the semaphore expires after two leases unused.
    """,
    source=_NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
  return 1
end
return 0
""",
)

SEM_RECLAIM = LuaScript(
    name="sem_reclaim",
    doc="""Free the slots of a dead incarnation of this worker (``Coordinator.reclaim_own_slots``).

    KEYS: the semaphore.
    ARGV: the holder prefix (``"<worker>|"``).
    Reply: how many slots were removed (those whose token starts with the prefix).
    """,
    source="""
local n = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, #ARGV[1]) == ARGV[1] then
    redis.call('ZREM', KEYS[1], member)
    n = n + 1
  end
end
return n
""",
)

SLOTS_RENEW = LuaScript(
    name="slots_renew",
    doc="""Renew held slots (the coordinator's keeper).

    KEYS: the semaphore.
    ARGV: the lease (ms), then the slot tokens.
    Reply: per token, 1 = renewed, 0 = lost (expired or gone).

    The semaphore's own expiry is refreshed (two leases).
    """,
    source=_NOW_MS + """
local out = {}
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) >= now then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return out
""",
)

# -- coordination: single-flight locks ------------------------------------------------------------

LOCK_ACQUIRE = LuaScript(
    name="lock_acquire",
    doc="""One try at a single-flight lock (``Lock.acquire``).

    KEYS: the lock, its "done" marker.
    ARGV: the lock token, the lease (ms), the owner prefix (``"<job id>|"``).
    Reply: 0 = held by another job, 1 = taken, 2 = taken, but a holder finished recently (the
    marker exists): look in the cache again first.

    Taken when free, or when held by an earlier delivery of the same job (cancelled or killed
    before it could release).
    """,
    source="""
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[3]) ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
return 1
""",
)

LOCKS_RENEW = LuaScript(
    name="locks_renew",
    doc="""Renew held locks (the coordinator's keeper).

    KEYS: the locks.
    ARGV: the lease (ms), then each lock's token.
    Reply: per lock, 1 = renewed, 0 = lost (expired, or another token holds it).
    """,
    source="""
local out = {}
for i, lock in ipairs(KEYS) do
  if redis.call('GET', lock) == ARGV[i + 1] then
    redis.call('PEXPIRE', lock, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
""",
)

LOCK_RELEASE = LuaScript(
    name="lock_release",
    doc="""Compare-and-delete one lock, leaving its "done" marker (``Lock.release``).

    KEYS: the lock, its "done" marker, the counters hash.
    ARGV: the lock token, the marker's ttl (ms), a counter to add one to ("" for none: the
    counter rides along, one round trip for both).
    Reply: 1 = released, 0 = not held with this token (nothing deleted).
    """,
    source="""
if ARGV[3] ~= '' then redis.call('HINCRBY', KEYS[3], ARGV[3], 1) end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  return redis.call('DEL', KEYS[1])
end
return 0
""",
)

LOCKS_RELEASE = LuaScript(
    name="locks_release",
    doc="""``LOCK_RELEASE`` for many locks (``Coordinator.release_locks``).

    KEYS: the counters hash, then each lock and its "done" marker.
    ARGV: the markers' ttl (ms), then per lock: its token ("" when not held: only its counter
    is added to) and a counter ("" for none).
    Reply: how many locks were released.
    """,
    source="""
local released = 0
for i = 1, (#KEYS - 1) / 2 do
  local token, counter = ARGV[2 * i], ARGV[2 * i + 1]
  if counter ~= '' then redis.call('HINCRBY', KEYS[1], counter, 1) end
  if token ~= '' and redis.call('GET', KEYS[2 * i]) == token then
    redis.call('SET', KEYS[2 * i + 1], '1', 'PX', ARGV[1])
    redis.call('DEL', KEYS[2 * i])
    released = released + 1
  end
end
return released
""",
)

# -- coordination: a job's first try at its lock and a slot ---------------------------------------

FLIGHT_START = LuaScript(
    name="flight_start",
    doc="""A starting job's try at its lock and, only when the lock is taken, a slot
    (``Lock.acquire_with_slot``).

    KEYS: the lock, its "done" marker, the semaphore.
    ARGV: the lock token, the lease (ms), the owner prefix, the slot token ("" for none), the
    slot limit.
    Reply: {lock, slot}: lock as ``LOCK_ACQUIRE`` (0 | 1 | 2), slot 1 = taken, 0 = not.
    """,
    source=_TRY_FLIGHT + """
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local lock, slot = try_flight(KEYS[1], KEYS[2], ARGV[1], ARGV[3], KEYS[3], ARGV[4],
                              tonumber(ARGV[2]), tonumber(ARGV[5]))
return {lock, slot}
""",
)

FLIGHTS_START = LuaScript(
    name="flights_start",
    doc="""``FLIGHT_START`` for many jobs at once (the StreamReader starting what it read;
    ``Coordinator.acquire_many``).

    KEYS: the semaphore, then each lock and its "done" marker.
    ARGV: the lease (ms), the slot limit, slot tokens to give back first (space separated),
    then per lock: its token, its owner prefix, a slot token ("" for none).
    Reply: {lock, slot} per lock, flat ({lock1, slot1, lock2, slot2, ...}).
    """,
    source=_TRY_FLIGHT + """
for token in string.gmatch(ARGV[3], '%S+') do redis.call('ZREM', KEYS[1], token) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local lock, slot = try_flight(KEYS[2 * i], KEYS[2 * i + 1], ARGV[3 * i + 1], ARGV[3 * i + 2],
                                KEYS[1], ARGV[3 * i + 3], lease, limit)
  out[#out + 1] = lock
  out[#out + 1] = slot
end
return out
""",
)

READ_AND_TRY = LuaScript(
    name="read_and_try",
    doc="""The locking read (``Coordinator.read_and_try``): XREADGROUP (not blocking) for up to
    COUNT entries across the job streams, the first stream first (as ``READ_LANES``), and, for
    each entry that names its job and cache key (fields ``j``, ``k``), the first try at its lock
    and a slot: one round trip instead of two when there is a backlog. For an entry that names
    its storybook (field ``b``), whether that book's cancel marker is absent; for an entry of
    the first (interactive) stream, whether its job's own cancel marker is absent
    (``Keys.job_cancel``: the same prefix + ``job:`` + job id).

    KEYS: the semaphore, then the job streams in reading order (interactive, batch).
    ARGV: group, consumer, count, lease (ms), slot limit, lock key prefix, slot tokens to give
    back first (space separated), book cancel marker prefix, then per possible entry: lock
    token suffix, slot token ("" for none).
    Reply: per entry {stream number (1-based, among the streams), id, fields, lock (-1: not
    tried), slot, live (1: the entry's book, or an interactive entry's job, has no cancel
    marker; else 0)}; {} when
    none.

    Lock and marker keys are built in the script (not declared in KEYS): fine on one server,
    not on a cluster, which Chorus does not support.
    """,
    source=_TRY_FLIGHT + _READ_LANES + """
for token in string.gmatch(ARGV[7], '%S+') do redis.call('ZREM', KEYS[1], token) end
local rows = read_lanes(2, ARGV[1], ARGV[2], tonumber(ARGV[3]))
if #rows == 0 then return {} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lease, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for i, row in ipairs(rows) do
  local entry = row[2]
  local fields, job, key, book = entry[2], nil, nil, nil
  for f = 1, #fields, 2 do
    if fields[f] == 'j' then job = fields[f + 1] end
    if fields[f] == 'k' then key = fields[f + 1] end
    if fields[f] == 'b' then book = fields[f + 1] end
  end
  local lock, slot = -1, 0
  if job and key and key ~= '' and ARGV[7 + 2 * i] then
    local prefix = job .. '|'
    lock, slot = try_flight(ARGV[6] .. key, ARGV[6] .. key .. ':done',
                            prefix .. ARGV[7 + 2 * i], prefix, KEYS[1], ARGV[8 + 2 * i],
                            lease, limit)
  end
  local live = 0
  if book and book ~= '' then
    if redis.call('EXISTS', ARGV[8] .. book) == 0 then live = 1 end
  elseif row[1] == 1 and job and redis.call('EXISTS', ARGV[8] .. 'job:' .. job) == 0 then
    live = 1
  end
  out[i] = {row[1], entry[1], fields, lock, slot, live}
end
return out
""",
)

# -- the processes' heartbeats -------------------------------------------------------------------

PROCESS_BEAT = LuaScript(
    name="process_beat",
    doc="""One process's heartbeat (``RedisProcesses.beat``).

    KEYS: the set of process ids, the process's hash.
    ARGV: the process id, the hash's ttl (ms), then field/value pairs (role, consumer, host,
    pid, started_at and the restart totals ``r:<supervisor>/<child>``).
    Reply: Redis' clock (ms), also written as the hash's ``last_seen``.

    The fields are set to the values given (totals, not increments: a beat that timed out and
    is sent again writes the same), the hash's ttl is set and the id is added to the set,
    whose own ttl is raised to the hash's if shorter (it expires once no process beats).
    """,
    source=_NOW_MS + """
redis.call('HSET', KEYS[2], 'last_seen', now, unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return now
""",
)

PROCESSES_LIST = LuaScript(
    name="processes_list",
    doc="""Every process whose hash still lives (``RedisProcesses.processes``).

    KEYS: the set of process ids.
    ARGV: the prefix of a process hash's key (the id follows it).
    Reply: Redis' clock (ms), then per live process: its id and its hash (a flat field/value
    list).

    Ids whose hash has expired (a process gone without a word) are removed from the set.
    """,
    source=_NOW_MS + """
local out = {now}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  if #fields == 0 then
    redis.call('SREM', KEYS[1], id)
  else
    out[#out + 1] = {id, fields}
  end
end
return out
""",
)

#: every script above
ALL: tuple[LuaScript, ...] = (
    ENQUEUE, READ_LANES, PUBLISH, TRACK, RESCHEDULE, SEM_ACQUIRE, SEM_RECLAIM, SLOTS_RENEW,
    LOCK_ACQUIRE, LOCKS_RENEW, LOCK_RELEASE, LOCKS_RELEASE, FLIGHT_START, FLIGHTS_START,
    READ_AND_TRY, PROCESS_BEAT, PROCESSES_LIST,
)
