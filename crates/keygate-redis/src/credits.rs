//! [`RedisCredits`]: usage-credit balances shared by every node through
//! Redis, one atomic Lua script per operation.
//!
//! Each account is a hash, `{prefix}:credits:{account}`, with no TTL:
//!
//! | field | value |
//! |---|---|
//! | `remaining` | credits left, 0 to [`MAX_CREDITS`] |
//! | `refill_amount` | the refill's amount (absent: no refill) |
//! | `refill_seconds` | the refill's period, [`RefillInterval::as_seconds`] (0: monthly) |
//! | `refilled_at` | start of the period of the last refill, or the instant of the last set or rule change, Unix seconds (absent: none) |
//!
//! The script carries out [`CreditOp::apply`]'s rules on the hash; its reply
//! is the account after the operation, which becomes a [`Charge`] or a
//! [`CreditBalance`] through the core's own functions
//! ([`Charge::of`], [`CreditAccount::balance`]), so next refills are computed
//! in one place.
//!
//! Times are whole Unix **seconds**, not microseconds: every period starts
//! on a whole second ([`RefillInterval::period_start`]), so nothing is lost,
//! and every instant `time` can hold (±9999 years, about ±2.5·10¹¹ s) stays
//! far below 2⁵³, where Lua's doubles stop being exact; in microseconds
//! keygate's own [`MAX_TIME`](keygate_core::MAX_TIME) would be 2.5·10¹⁷.
//! Counts are at most [`MAX_CREDITS`] (10¹⁵) and the script adds at most two
//! of them, so its arithmetic is exact integer arithmetic; it writes numbers
//! with `%.0f`, never Lua's `tostring` (which keeps 14 digits).

use std::{fmt, sync::Arc, time::Duration};

use keygate_core::{
    BalanceChange, BoxFuture, Charge, CreditAccount, CreditBalance, CreditBank, CreditOutcome,
    CreditUpdate, KeyId, MAX_CREDITS, Refill, RefillInterval, StoreError,
    time::{OffsetDateTime, UtcOffset},
};
use redis::{
    Client, Script, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{
    Error,
    breaker::{Admit, Breaker, Probe, Transition},
    limiter::default_connection_config,
};

const TARGET: &str = "keygate::credits";

/// The default key prefix: accounts are `keygate:credits:<account>`.
pub const DEFAULT_CREDITS_KEY_PREFIX: &str = "keygate";

/// The default time one credit operation may take in Redis, connecting
/// included, before it fails with [`StoreError::Unavailable`].
///
/// Longer than the rate limiter's [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT):
/// a credit charge has no local fallback, so a timeout is a 503, and the
/// charge may still land in Redis after it (the credit is then spent on a
/// request that was refused). 50 ms still keeps a sick Redis from holding
/// requests for long.
pub const DEFAULT_CREDITS_TIMEOUT: Duration = Duration::from_millis(50);

/// The script: one [`CreditOp`](keygate_core::CreditOp) on one account.
///
/// `KEYS[1]`: the account's hash. `ARGV`: the operation, `now` and the start
/// of `now`'s calendar month (Unix seconds, computed in Rust), then
///
/// * `charge`: cost (at most `MAX_CREDITS + 1`);
/// * `refund`: cost (at most `MAX_CREDITS`), the charge's period (Unix
///   seconds, or empty for none);
/// * `read`: nothing;
/// * `update`: `set`/`add`/`keep`, the count (at most `MAX_CREDITS`),
///   `set`/`none`/`keep` for the refill rule, its amount and its seconds.
///
/// Replies `{'ok', admitted, remaining, has_refill, refill_amount,
/// refill_seconds, has_refilled_at, refilled_at}` (integers only, so the
/// reply reads the same over RESP2 and RESP3), `{'none'}` when there is no
/// such account (and the operation does not create one), or
/// `{'corrupt', why}` when the key holds something else than an account
/// this script wrote; then nothing is written. It checks every field as
/// [`read_reply`] checks the reply, before it writes anything, so a hash
/// either is an account or is left alone.
pub(crate) const SCRIPT: &str = r"
local key = KEYS[1]
local op = ARGV[1]
local now = tonumber(ARGV[2])
local month = tonumber(ARGV[3])
local MAX = 1000000000000000
local MAX_PERIOD = 31622400
-- The instants `time` can hold: years -9999 to 9999.
local MIN_TIME, MAX_TIME = -377705116800, 253402300799

local function fmt(n) return string.format('%.0f', n) end
local function show(v) return string.sub(v, 1, 32) end

-- RefillInterval::period_start: the calendar month for 0, else
-- floor(now / secs) * secs, corrected in case the division rounded (it
-- cannot below 2^53, but the correction is cheap); like it, `now` when
-- that start would be before the first instant `time` can hold.
local function period_start(secs)
  if secs == 0 then return month end
  local p = math.floor(now / secs) * secs
  if p > now then p = p - secs elseif p + secs <= now then p = p + secs end
  if p < MIN_TIME then return now end
  return p
end

-- CreditAccount::at: the refill that is due applied.
local function at(a)
  if not a.amount then return a end
  local period = period_start(a.seconds)
  if a.refilled_at and a.refilled_at >= period then return a end
  return {remaining = math.max(a.remaining, a.amount), amount = a.amount,
    seconds = a.seconds, refilled_at = period}
end

local kind = redis.call('TYPE', key)['ok']
local acct = nil
if kind == 'hash' then
  local f = redis.call('HMGET', key, 'remaining', 'refill_amount', 'refill_seconds', 'refilled_at')
  local function count(i, name, min, max)
    local v = f[i]
    if not string.match(v, '^%d+$') or #v > 16 then
      return nil, name .. ' is not a count: ' .. show(v)
    end
    local n = tonumber(v)
    if n < min or n > max then return nil, name .. ' is out of range: ' .. show(v) end
    return n
  end
  if not f[1] then return {'corrupt', 'no remaining field'} end
  local remaining, why = count(1, 'remaining', 0, MAX)
  if not remaining then return {'corrupt', why} end
  acct = {remaining = remaining}
  if f[2] and f[3] then
    acct.amount, why = count(2, 'refill_amount', 1, MAX)
    if not acct.amount then return {'corrupt', why} end
    acct.seconds, why = count(3, 'refill_seconds', 0, MAX_PERIOD)
    if not acct.seconds then return {'corrupt', why} end
  elseif f[2] or f[3] then
    return {'corrupt', 'half a refill rule'}
  end
  if f[4] then
    local t = string.match(f[4], '^%-?%d+$') and #f[4] <= 16 and tonumber(f[4])
    if not t or t < MIN_TIME or t > MAX_TIME then
      return {'corrupt', 'refilled_at is not a time: ' .. show(f[4])}
    end
    acct.refilled_at = t
  end
elseif kind ~= 'none' then
  return {'corrupt', 'the key holds a ' .. kind .. ', not a hash'}
end

local out
local write = false
local admitted = 0
if op == 'update' then
  out = at(acct or {remaining = 0})
  local change, n = ARGV[4], tonumber(ARGV[5])
  if change == 'set' then
    out.remaining = math.min(n, MAX)
    -- CreditAccount::update: a set balance is marked with its instant, so
    -- the refill due now does not overwrite it and older refunds are dropped.
    out.refilled_at = now
  elseif change == 'add' then
    out.remaining = math.min(out.remaining + n, MAX)
  end
  if ARGV[6] == 'none' then
    out.amount, out.seconds, out.refilled_at = nil, nil, now
  elseif ARGV[6] == 'set' then
    out.amount, out.seconds = tonumber(ARGV[7]), tonumber(ARGV[8])
    out.refilled_at = now
  end
  write = true
elseif not acct then
  return {'none'}
elseif op == 'charge' then
  local cost = tonumber(ARGV[4])
  out = at(acct)
  if out.remaining >= cost then
    out.remaining = out.remaining - cost
    admitted = 1
    write = true
  end
elseif op == 'refund' then
  local cost = tonumber(ARGV[4])
  local period = nil
  if ARGV[5] ~= '' then period = tonumber(ARGV[5]) end
  out = acct
  if out.refilled_at == period then
    local r = math.min(out.remaining + cost, MAX)
    if r ~= out.remaining then
      out.remaining = r
      write = true
    end
  end
elseif op == 'read' then
  out = at(acct)
else
  return redis.error_reply('keygate credits: unknown operation')
end

if write then
  local set = {'remaining', fmt(out.remaining)}
  local del = {}
  if out.amount then
    table.insert(set, 'refill_amount'); table.insert(set, fmt(out.amount))
    table.insert(set, 'refill_seconds'); table.insert(set, fmt(out.seconds))
  else
    table.insert(del, 'refill_amount'); table.insert(del, 'refill_seconds')
  end
  if out.refilled_at then
    table.insert(set, 'refilled_at'); table.insert(set, fmt(out.refilled_at))
  else
    table.insert(del, 'refilled_at')
  end
  redis.call('HSET', key, unpack(set))
  if #del > 0 then redis.call('HDEL', key, unpack(del)) end
end

local has_refill, amount, seconds = 0, 0, 0
if out.amount then has_refill, amount, seconds = 1, out.amount, out.seconds end
local has_at, refilled_at = 0, 0
if out.refilled_at then has_at, refilled_at = 1, out.refilled_at end
return {'ok', admitted, out.remaining, has_refill, amount, seconds, has_at, refilled_at}
";

/// Configures a [`RedisCredits`]; from [`RedisCredits::builder`].
#[must_use]
pub struct RedisCreditsBuilder {
    client: Client,
    prefix: String,
    timeout: Duration,
    threshold: u32,
    cooldown: Duration,
    connection: Option<ConnectionManagerConfig>,
}

impl RedisCreditsBuilder {
    /// The prefix of every key the bank writes (default
    /// [`DEFAULT_CREDITS_KEY_PREFIX`]): an account is
    /// `{prefix}:credits:{account}`. Every node of one service must use the
    /// same prefix; give each service sharing a Redis its own.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one operation may take in Redis, connecting included, before
    /// it fails with [`StoreError::Unavailable`] (default
    /// [`DEFAULT_CREDITS_TIMEOUT`]). An operation that timed out may still
    /// be carried out by Redis afterwards.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After this many consecutive failed operations, skip Redis for the
    /// [cooldown](Self::cooldown) and fail at once (default
    /// [`DEFAULT_FAILURE_THRESHOLD`](crate::DEFAULT_FAILURE_THRESHOLD); at
    /// least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.threshold = failures.max(1);
        self
    }

    /// How long Redis is skipped after repeated failures; then one operation
    /// at a time probes it, and the first success goes back to Redis for all
    /// (default [`DEFAULT_COOLDOWN`](crate::DEFAULT_COOLDOWN)).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The connection's reconnection and timeout settings (default as
    /// [`RedisLimiterBuilder::connection_config`](crate::RedisLimiterBuilder::connection_config)).
    pub fn connection_config(mut self, config: ConnectionManagerConfig) -> Self {
        self.connection = Some(config);
        self
    }

    /// Builds the bank. It connects on its first operation (or
    /// [`ping`](RedisCredits::ping)), so an application starts even while
    /// Redis is down; until Redis answers, every operation fails with
    /// [`StoreError::Unavailable`].
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime (the connection's task
    /// needs one); [`Error::Redis`] if the client's settings are unusable.
    pub fn build(self) -> Result<RedisCredits, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let config = self.connection.unwrap_or_else(default_connection_config);
        let conn = ConnectionManager::new_lazy_with_config(self.client, config)?;
        Ok(RedisCredits {
            inner: Arc::new(Inner {
                conn,
                script: Script::new(SCRIPT),
                prefix: self.prefix,
                timeout: self.timeout,
                breaker: Arc::new(Breaker::new(self.threshold, self.cooldown)),
            }),
        })
    }
}

impl fmt::Debug for RedisCreditsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: its connection info may hold a password.
        f.debug_struct("RedisCreditsBuilder")
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("failure_threshold", &self.threshold)
            .field("cooldown", &self.cooldown)
            .finish_non_exhaustive()
    }
}

/// A [`CreditBank`] whose balances live in Redis, for services on many
/// nodes that want usage credits without a round trip to their key store.
///
/// * Every operation is one atomic Lua script on the account's hash, which
///   carries out exactly [`CreditOp::apply`](keygate_core::CreditOp::apply)'s
///   rules (the ones [`StoreCredits`](keygate_core::StoreCredits) keeps in
///   the key store): charges are all or nothing after any refill that is
///   due, refunds are dropped after a refill or a set, and so on. `N` credits admit
///   at most `N` requests however many nodes share the bank, and exactly `N`
///   when every charge is answered: nothing is leased or cached.
/// * Balances are hashes without a TTL, `{prefix}:credits:{account}`.
///   **Redis must persist its data** (AOF, ideally with `appendfsync
///   always` or `everysec`, or RDB snapshots) for balances to survive a
///   restart: a Redis that restarts empty has forgotten every balance, and
///   one restored from an older snapshot hands out the credits spent since.
///   Likewise a failover to a replica that missed the latest writes
///   forgets those charges.
/// * The time is the caller's `now` (the layer's clock), not Redis's: a node
///   whose clock runs ahead refills an account up to that much early (never
///   twice in one period).
/// * Each operation has a [timeout](RedisCreditsBuilder::timeout); a Redis
///   that fails, errs or is slow makes it fail with
///   [`StoreError::Unavailable`] (the layer answers 503 and admits
///   nothing), and after repeated failures Redis is skipped for a cooldown,
///   so an outage adds no latency. A hash this bank cannot read is
///   [`StoreError::Corrupt`]; a [`Refill`] no store can keep (built by hand
///   with an amount of 0 or above [`MAX_CREDITS`], or a period that is not
///   whole seconds from 1 s to 366 days) is [`StoreError::Rejected`], as
///   is a `now` that is out of `time`'s range once in UTC.
///
/// A charge that times out may still be carried out by Redis: the credit
/// is then spent on a request that was refused with 503. (A request the
/// client drops is another matter: the layer runs each charge in a task
/// and gives back what a request that is gone paid.) It is never the other
/// way round: no request is admitted without its charge.
///
/// Clones share the connection. Use it within a tokio runtime; needs Redis
/// 5 or later (or Valkey). Each operation touches one key, so Redis Cluster
/// can run it too.
#[derive(Clone)]
pub struct RedisCredits {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

/// What the script did, as read from its reply.
enum Reply {
    Done(CreditOutcome),
    NoAccount,
}

impl RedisCredits {
    /// Starts configuring a bank on `client`, e.g.
    /// `redis::Client::open("redis://127.0.0.1/")?`.
    pub fn builder(client: Client) -> RedisCreditsBuilder {
        RedisCreditsBuilder {
            client,
            prefix: DEFAULT_CREDITS_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_CREDITS_TIMEOUT,
            threshold: crate::DEFAULT_FAILURE_THRESHOLD,
            cooldown: crate::DEFAULT_COOLDOWN,
            connection: None,
        }
    }

    /// A bank with the default settings.
    ///
    /// # Errors
    ///
    /// As [`RedisCreditsBuilder::build`].
    pub fn new(client: Client) -> Result<Self, Error> {
        Self::builder(client).build()
    }

    /// Round-trips to Redis and loads the script, so the first operation is
    /// a single `EVALSHA`. Call it at startup to warm the connection or to
    /// fail fast; it is not bounded by the operation timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] if Redis cannot be reached or refuses the script.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut conn = self.inner.conn.clone();
        self.inner
            .script
            .prepare_invoke()
            .load_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The prefix of the keys this bank writes.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis key that holds `account`: `{prefix}:credits:{account}`.
    pub fn account_key(&self, account: KeyId) -> String {
        format!("{}:credits:{account}", self.inner.prefix)
    }

    /// Whether Redis is being skipped after repeated failures right now.
    pub fn breaker_open(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// Runs the script with `args` (after the operation's common ones) on
    /// `account`, through the breaker and within the timeout.
    async fn run(
        &self,
        account: KeyId,
        op: &str,
        now: OffsetDateTime,
        args: &[String],
    ) -> Result<Reply, StoreError> {
        // `time` holds years -9999 to 9999 in any offset, and e.g.
        // 9999-12-31T23:59:59-23:59 is in year 10000 in UTC: no period can
        // be computed for it (`period_start` would panic).
        if now.checked_to_offset(UtcOffset::UTC).is_none() {
            return Err(StoreError::Rejected(format!(
                "{now} is out of range once in UTC"
            )));
        }
        let probe = match self.inner.breaker.admit() {
            Admit::Skip => return Err(StoreError::unavailable(Error::CircuitOpen)),
            Admit::Go(probe) => probe,
        };
        let eval = self.eval(account, op, now, args);
        let answer = match tokio::time::timeout(self.inner.timeout, eval).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Timeout(self.inner.timeout)),
        };
        match answer {
            Ok(value) => {
                if self.inner.breaker.success() == Transition::Closed {
                    tracing::info!(target: TARGET, "Redis answers again; credits are back");
                }
                read_reply(&value).map_err(|why| {
                    StoreError::Corrupt(format!("credit account {account} in Redis: {why}"))
                })
            }
            Err(err) => Err(self.failed(err, probe)),
        }
    }

    async fn eval(
        &self,
        account: KeyId,
        op: &str,
        now: OffsetDateTime,
        args: &[String],
    ) -> Result<Value, Error> {
        let month = RefillInterval::Monthly.period_start(now).unix_timestamp();
        let mut invocation = self.inner.script.prepare_invoke();
        invocation
            .key(self.account_key(account))
            .arg(op)
            .arg(now.unix_timestamp())
            .arg(month);
        for a in args {
            invocation.arg(a);
        }
        let mut conn = self.inner.conn.clone();
        Ok(invocation.invoke_async(&mut conn).await?)
    }

    fn failed(&self, err: Error, probe: Option<Probe>) -> StoreError {
        if self.inner.breaker.failure(probe.as_ref()) == Transition::Opened {
            tracing::warn!(
                target: TARGET,
                error = %err,
                "Redis credit bank failing; metered requests get 503 until it answers",
            );
        } else {
            tracing::debug!(target: TARGET, error = %err, "Redis credit operation failed");
        }
        drop(probe);
        StoreError::unavailable(err)
    }
}

/// `refill` as the bank keeps it: `(amount, seconds)`, or why no store can
/// keep it.
fn storable(refill: Refill) -> Result<(u64, u64), StoreError> {
    let valid = match refill.interval {
        RefillInterval::Every(d) => RefillInterval::every(d).map(|_| ()),
        RefillInterval::Daily | RefillInterval::Monthly => Ok(()),
    }
    .and_then(|()| Refill::new(refill.amount, refill.interval));
    match valid {
        Ok(r) => Ok((r.amount, r.interval.as_seconds())),
        Err(e) => Err(StoreError::Rejected(format!("refill {refill:?}: {e}"))),
    }
}

/// The script's reply, checked: the account after the operation.
fn read_reply(value: &Value) -> Result<Reply, String> {
    let Value::Array(items) = value else {
        return Err(format!("unexpected reply {value:?}"));
    };
    let text = |v: Option<&Value>| match v {
        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        Some(Value::SimpleString(s)) => Some(s.clone()),
        _ => None,
    };
    let int = |i: usize| match items.get(i) {
        Some(&Value::Int(n)) => Ok(n),
        other => Err(format!("unexpected reply element {other:?}")),
    };
    let count = |i: usize, name: &str| {
        let n = int(i)?;
        u64::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_CREDITS)
            .ok_or_else(|| format!("{name} {n} is out of range"))
    };
    match text(items.first()).as_deref() {
        Some("ok") => {}
        Some("none") => return Ok(Reply::NoAccount),
        Some("corrupt") => {
            return Err(text(items.get(1)).unwrap_or_else(|| "corrupt".to_owned()));
        }
        _ => return Err(format!("unexpected reply {value:?}")),
    }
    let admitted = int(1)? == 1;
    let remaining = count(2, "remaining")?;
    let refill = if int(3)? == 1 {
        let amount = count(4, "refill_amount")?;
        let seconds = u64::try_from(int(5)?).map_err(|e| e.to_string())?;
        let interval = RefillInterval::from_seconds(seconds).map_err(|e| e.to_string())?;
        Some(Refill::new(amount, interval).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let refilled_at = if int(6)? == 1 {
        let secs = int(7)?;
        Some(
            OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|_| format!("refilled_at {secs} is not a time"))?,
        )
    } else {
        None
    };
    Ok(Reply::Done(CreditOutcome {
        account: CreditAccount {
            remaining,
            refill,
            refilled_at,
        },
        admitted,
    }))
}

impl CreditBank for RedisCredits {
    fn charge(
        &self,
        account: KeyId,
        cost: u64,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<Charge>, StoreError>> {
        Box::pin(async move {
            // No balance exceeds MAX_CREDITS, so every larger cost is
            // refused alike; this keeps the script's numbers exact.
            let cost = cost.min(MAX_CREDITS + 1);
            match self
                .run(account, "charge", now, &[cost.to_string()])
                .await?
            {
                Reply::Done(outcome) => Ok(Some(Charge::of(outcome))),
                Reply::NoAccount => Ok(None),
            }
        })
    }

    fn refund(
        &self,
        account: KeyId,
        cost: u64,
        period: Option<OffsetDateTime>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let period = match period {
                None => String::new(),
                // Periods start on whole seconds: one that does not can be
                // no account's, and the refund is dropped.
                Some(p) if p.nanosecond() != 0 => return Ok(()),
                Some(p) => p.unix_timestamp().to_string(),
            };
            // The sum saturates at MAX_CREDITS anyway.
            let cost = cost.min(MAX_CREDITS).to_string();
            // The time only matters to refills, which a refund never makes.
            let now = OffsetDateTime::UNIX_EPOCH;
            self.run(account, "refund", now, &[cost, period]).await?;
            Ok(())
        })
    }

    fn balance(
        &self,
        account: KeyId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Option<CreditBalance>, StoreError>> {
        Box::pin(async move {
            match self.run(account, "read", now, &[]).await? {
                Reply::Done(outcome) => Ok(Some(outcome.account.balance(now))),
                Reply::NoAccount => Ok(None),
            }
        })
    }

    fn update<'a>(
        &'a self,
        account: KeyId,
        update: &'a CreditUpdate,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<CreditBalance, StoreError>> {
        Box::pin(async move {
            let (change, n) = match update.balance {
                Some(BalanceChange::Set(n)) => ("set", n),
                Some(BalanceChange::Add(n)) => ("add", n),
                None => ("keep", 0),
            };
            let (rule, amount, seconds) = match update.refill {
                Some(Some(refill)) => {
                    let (amount, seconds) = storable(refill)?;
                    ("set", amount, seconds)
                }
                Some(None) => ("none", 0, 0),
                None => ("keep", 0, 0),
            };
            let args = [
                change.to_owned(),
                n.min(MAX_CREDITS).to_string(),
                rule.to_owned(),
                amount.to_string(),
                seconds.to_string(),
            ];
            match self.run(account, "update", now, &args).await? {
                Reply::Done(outcome) => Ok(outcome.account.balance(now)),
                Reply::NoAccount => Err(StoreError::Corrupt(
                    "a credit update created no account".into(),
                )),
            }
        })
    }
}

impl fmt::Debug for RedisCredits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("RedisCredits")
            .field("key_prefix", &i.prefix)
            .field("timeout", &i.timeout)
            .field("breaker_open", &i.breaker.is_open())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use keygate_core::time::macros::datetime;

    use super::*;

    fn ok(items: &[i64]) -> Value {
        let mut v = vec![Value::BulkString(b"ok".to_vec())];
        v.extend(items.iter().map(|&n| Value::Int(n)));
        Value::Array(v)
    }

    #[test]
    fn replies_become_accounts() {
        let Ok(Reply::Done(o)) = read_reply(&ok(&[1, 7, 1, 10, 0, 1, 1_930_435_200])) else {
            panic!("not an account");
        };
        assert!(o.admitted);
        assert_eq!(o.account.remaining, 7);
        assert_eq!(o.account.refill, Some(Refill::monthly(10).unwrap()));
        assert_eq!(o.account.refilled_at, Some(datetime!(2031-03-05 00:00 UTC)));
        let Ok(Reply::Done(o)) = read_reply(&ok(&[0, 0, 0, 0, 0, 0, 0])) else {
            panic!("not an account");
        };
        assert_eq!((o.account.refill, o.account.refilled_at), (None, None));
        let none = Value::Array(vec![Value::SimpleString("none".into())]);
        assert!(matches!(read_reply(&none), Ok(Reply::NoAccount)));
    }

    #[test]
    fn impossible_replies_are_errors_not_panics() {
        for bad in [
            ok(&[1, -1, 0, 0, 0, 0, 0]),
            ok(&[1, 1_000_000_000_000_001, 0, 0, 0, 0, 0]),
            ok(&[1, 1, 1, 0, 86_400, 0, 0]),
            ok(&[1, 1, 1, 5, 31_622_401, 0, 0]),
            ok(&[1, 1, 1, 5, -1, 0, 0]),
            ok(&[1, 1, 0, 0, 0, 1, i64::MAX]),
            ok(&[1, 1, 0]),
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1)]),
        ] {
            assert!(read_reply(&bad).is_err(), "{bad:?}");
        }
        let corrupt = Value::Array(vec![
            Value::BulkString(b"corrupt".to_vec()),
            Value::BulkString(b"half a refill rule".to_vec()),
        ]);
        assert_eq!(read_reply(&corrupt).err().unwrap(), "half a refill rule");
    }

    #[test]
    fn only_refills_a_store_can_keep_are_written() {
        let day = Refill::daily(5).unwrap();
        assert_eq!(storable(day).unwrap(), (5, 86_400));
        assert_eq!(storable(Refill::monthly(1).unwrap()).unwrap(), (1, 0));
        let bad = |amount, interval| Refill { amount, interval };
        for r in [
            bad(0, RefillInterval::Daily),
            bad(MAX_CREDITS + 1, RefillInterval::Monthly),
            bad(u64::MAX, RefillInterval::Daily),
            bad(1, RefillInterval::Every(Duration::ZERO)),
            bad(1, RefillInterval::Every(Duration::from_millis(1_500))),
            bad(1, RefillInterval::Every(Duration::from_secs(367 * 86_400))),
        ] {
            assert!(matches!(storable(r), Err(StoreError::Rejected(_))), "{r:?}");
        }
    }
}
