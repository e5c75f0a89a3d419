-- rollcall's cluster script: every change to the shared presence runs here, atomically, and
-- publishes its note (see src/cluster/note.rs) in the same step, so the notes on the events
-- channel come in the order of the changes and carry the channel's seq.
--
-- ARGV[1] is the key prefix ("rollcall:" or "rollcall:DB:"), ARGV[2] the operation, ARGV[3]
-- the calling node, ARGV[4] the caller's clock (Unix milliseconds: the time a leave it makes
-- records as the user's last seen), ARGV[5] how long a last-seen time is kept (milliseconds);
-- the rest depends on the operation. The J, U and L notes end with the
-- calling node: the one whose call made the cluster-wide change (a survivor, for a reap),
-- which alone tells the app's webhooks.
--
-- Keys (P = prefix):
--   P.."held:"..NODE     hash "CHANNEL USER" -> the node's connections there (0: leave grace);
--                        split at the first space: a channel name holds none, a user id may
--   P.."holders:"..CH    hash USER -> number of nodes holding the user in the channel
--   P.."conns:"..CH      hash USER -> connections over every node
--   P.."meta:"..CH       hash USER -> the member's meta (JSON object)
--   P.."seq:"..CH        the channel's seq (deleted with the channel's last member)
--   P.."channels"        set of channels with members
--   P.."nodes"           set of nodes that refreshed or hold something (until reaped)
--   P.."alive:"..NODE    the node's liveness, expiring after --node-ttl
--   P.."seen:"..USER     when the user was last seen (Unix ms), written by its cluster-wide
--                        leave of a channel, expiring after --last-seen-ttl; a user still
--                        online elsewhere is answered online, so only the last leave matters
--   P.."events"          the Pub/Sub channel of notes
--
-- The script names its keys itself rather than in KEYS: it runs on one Redis (or a primary
-- with replicas), not on a Redis Cluster.

local P, op, node, at, seen_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local EVENTS = P .. 'events'
-- Where the operation's own arguments start.
local A = 6

local function note(...)
  redis.call('PUBLISH', EVENTS, table.concat({...}, '\t'))
end

local function seq_of(channel)
  return tonumber(redis.call('GET', P .. 'seq:' .. channel)) or 0
end

-- The node now holds USER in CHANNEL with CONNS local connections. META, when given, is set
-- (an update if it differs); with ONLY_IF_NEW it is used only for a new member.
local function hold(holder, channel, user, conns, meta, only_if_new)
  -- A holder is always in the nodes set, so that its holdings are reaped if it dies (even
  -- one reaped before, that holds again before its next refresh finds it lapsed).
  redis.call('SADD', P .. 'nodes', holder)
  local held = P .. 'held:' .. holder
  local field = channel .. ' ' .. user
  local before = redis.call('HGET', held, field)
  redis.call('HSET', held, field, conns)
  local total = redis.call('HINCRBY', P .. 'conns:' .. channel, user, conns - (tonumber(before) or 0))
  if not before and redis.call('HINCRBY', P .. 'holders:' .. channel, user, 1) == 1 then
    meta = meta or '{}'
    redis.call('HSET', P .. 'meta:' .. channel, user, meta)
    redis.call('SADD', P .. 'channels', channel)
    note('J', channel, user, redis.call('INCR', P .. 'seq:' .. channel), total, meta, node)
    return
  end
  if meta and not only_if_new and meta ~= redis.call('HGET', P .. 'meta:' .. channel, user) then
    redis.call('HSET', P .. 'meta:' .. channel, user, meta)
    note('U', channel, user, redis.call('INCR', P .. 'seq:' .. channel), meta, node)
  end
  if conns ~= (tonumber(before) or 0) then
    note('C', channel, user, seq_of(channel), total)
  end
end

-- USER's last connection went at WHEN (Unix ms, as a string): kept unless a later time is;
-- returns the time kept.
local function seen(user, when)
  local key = P .. 'seen:' .. user
  local before = redis.call('GET', key)
  if before and tonumber(before) > tonumber(when) then
    when = before
  end
  redis.call('SET', key, when, 'PX', seen_ttl)
  return when
end

-- HOLDER no longer holds USER in CHANNEL; the last holder's release is the user's leave,
-- its connection's end at WHEN (Unix ms) the user's last seen.
local function release(holder, channel, user, reason, when)
  local held = P .. 'held:' .. holder
  local field = channel .. ' ' .. user
  local before = tonumber(redis.call('HGET', held, field))
  if not before then
    return
  end
  redis.call('HDEL', held, field)
  local remaining = redis.call('HINCRBY', P .. 'holders:' .. channel, user, -1)
  -- A holder in leave grace has no connections to take off (and Lua would send -0, which
  -- HINCRBY refuses).
  if before ~= 0 then
    local total = redis.call('HINCRBY', P .. 'conns:' .. channel, user, -before)
    if remaining > 0 then
      note('C', channel, user, seq_of(channel), total)
    end
  end
  if remaining > 0 then
    return
  end
  redis.call('HDEL', P .. 'holders:' .. channel, user)
  redis.call('HDEL', P .. 'conns:' .. channel, user)
  redis.call('HDEL', P .. 'meta:' .. channel, user)
  local seq = redis.call('INCR', P .. 'seq:' .. channel)
  if redis.call('HLEN', P .. 'holders:' .. channel) == 0 then
    redis.call('DEL', P .. 'seq:' .. channel)
    redis.call('SREM', P .. 'channels', channel)
  end
  note('L', channel, user, seq, reason, seen(user, when), node)
end

local function split(field)
  local space = string.find(field, ' ', 1, true)
  return string.sub(field, 1, space - 1), string.sub(field, space + 1)
end

-- Releases everything NODE holds (it died, or is leaving the cluster): its users are last
-- seen at the caller's clock, when the cluster learns they are gone.
local function reap(dead, reason)
  local held = redis.call('HKEYS', P .. 'held:' .. dead)
  for _, field in ipairs(held) do
    local channel, user = split(field)
    release(dead, channel, user, reason, at)
  end
  redis.call('DEL', P .. 'held:' .. dead)
  redis.call('SREM', P .. 'nodes', dead)
end

-- Refreshes this node's liveness and reaps the nodes whose liveness expired. Returns the
-- number of live nodes, and 1 when this node's own liveness had lapsed (another node may
-- have reaped its holdings: it must sync them again), else 0.
local function beat(ttl)
  local lapsed = 1 - redis.call('EXISTS', P .. 'alive:' .. node)
  redis.call('SET', P .. 'alive:' .. node, '1', 'PX', ttl)
  redis.call('SADD', P .. 'nodes', node)
  local live = 0
  for _, other in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
    if redis.call('EXISTS', P .. 'alive:' .. other) == 1 then
      live = live + 1
    else
      reap(other, 'node_down')
    end
  end
  return {live, lapsed}
end

if op == 'hold' then
  -- channel, user, conns, meta ('' keeps the member's meta)
  local meta = ARGV[A + 3]
  if meta == '' then
    meta = nil
  end
  hold(node, ARGV[A], ARGV[A + 1], tonumber(ARGV[A + 2]), meta, false)
  return 1
elseif op == 'release' then
  -- channel, user, reason; the caller's clock is when its last connection here went
  release(node, ARGV[A], ARGV[A + 1], ARGV[A + 2], at)
  return 1
elseif op == 'beat' then
  -- ttl in milliseconds
  return beat(ARGV[A])
elseif op == 'sync' then
  -- ttl, then (channel, user, conns, meta) for everything the node holds now: after Redis
  -- came back, or this node's liveness lapsed. What it held before and no longer does is
  -- released with reason `closed` (last seen now); meta is used only for users new to the
  -- cluster.
  local wanted = {}
  for i = A + 1, #ARGV, 4 do
    wanted[ARGV[i] .. ' ' .. ARGV[i + 1]] = true
  end
  for _, field in ipairs(redis.call('HKEYS', P .. 'held:' .. node)) do
    if not wanted[field] then
      local channel, user = split(field)
      release(node, channel, user, 'closed', at)
    end
  end
  for i = A + 1, #ARGV, 4 do
    hold(node, ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], true)
  end
  return {beat(ARGV[A])[1], 0}
elseif op == 'goodbye' then
  -- reason: the node leaves the cluster (graceful shutdown)
  reap(node, ARGV[A])
  redis.call('DEL', P .. 'alive:' .. node)
  return 1
elseif op == 'snapshot' then
  -- every channel: {channel, seq, {user, conns, meta, user, conns, meta, ...}}
  local out = {}
  for _, channel in ipairs(redis.call('SMEMBERS', P .. 'channels')) do
    local members = {}
    local metas = redis.call('HGETALL', P .. 'meta:' .. channel)
    for i = 1, #metas, 2 do
      local conns = redis.call('HGET', P .. 'conns:' .. channel, metas[i]) or '0'
      table.insert(members, metas[i])
      table.insert(members, tostring(conns))
      table.insert(members, metas[i + 1])
    end
    table.insert(out, {channel, tostring(seq_of(channel)), members})
  end
  return out
end
return redis.error_reply('rollcall: unknown operation ' .. tostring(op))
