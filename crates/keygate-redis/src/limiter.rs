//! [`RedisLimiter`]: GCRA rate limiting shared by every node through Redis.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use keygate_core::{
    Check, Decision, Gcra, GovernorLimiter, KeyId, LimiterUnavailable, PendingCheck, Quotas,
    RateLimiter,
};
use redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{
    Error,
    breaker::{Admit, Breaker, Probe, Transition},
    gcra,
};

const TARGET: &str = "keygate::limit";

/// The default key prefix: keys are `keygate:rl:{<family>}:<quota>`.
pub const DEFAULT_KEY_PREFIX: &str = "keygate:rl";

/// The default time a decision may take in Redis before the
/// [`FallbackPolicy`] decides instead.
///
/// A script round trip takes tens of microseconds on loopback and well under a
/// millisecond inside a data centre; 5 ms leaves room for a busy runtime
/// without letting a sick Redis add more than that to any request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

/// The default number of consecutive failures after which Redis is skipped
/// for a [cooldown](DEFAULT_COOLDOWN).
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;

/// The default time Redis is skipped after
/// [repeated failures](DEFAULT_FAILURE_THRESHOLD), before one decision
/// probes it again.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);

/// What a [`RedisLimiter`] does when Redis cannot decide: it is unreachable,
/// answers with an error, does not answer within the
/// [timeout](RedisLimiterBuilder::timeout), or is being skipped after
/// repeated failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FallbackPolicy {
    /// Decide in this process with a [`GovernorLimiter`] (fail open, but
    /// still limited). Each node then enforces the whole quota on its own, so
    /// while Redis is away a key can get up to `nodes × quota` in total; and
    /// the local state starts empty, so the first fallback decisions admit a
    /// fresh burst. Several quotas are still checked all-or-nothing.
    #[default]
    Local,
    /// Return [`LimiterUnavailable`], which the keygate layer answers with
    /// 503 and `Retry-After` (fail closed).
    Reject,
}

/// Counters of what a [`RedisLimiter`] did since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimiterStats {
    /// Decisions Redis made.
    pub redis_decisions: u64,
    /// Decisions the [`FallbackPolicy`] made (failures and skips).
    pub fallback_decisions: u64,
    /// Decisions that went to Redis and failed or timed out.
    pub redis_failures: u64,
    /// Whether Redis is being skipped after repeated failures right now.
    pub breaker_open: bool,
}

/// Configures a [`RedisLimiter`]; from [`RedisLimiter::builder`].
#[must_use]
pub struct RedisLimiterBuilder {
    client: Client,
    prefix: String,
    timeout: Duration,
    fallback: FallbackPolicy,
    threshold: u32,
    cooldown: Duration,
    connection: Option<ConnectionManagerConfig>,
}

impl RedisLimiterBuilder {
    /// The prefix of every key the limiter writes (default
    /// [`DEFAULT_KEY_PREFIX`]). Give each application sharing a Redis its
    /// own. It may not contain `{` or `}`: the key's hash tag is the family.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a decision may take in Redis, connecting included, before the
    /// [fallback policy](Self::fallback) decides (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do when Redis cannot decide (default
    /// [`FallbackPolicy::Local`]).
    pub fn fallback(mut self, policy: FallbackPolicy) -> Self {
        self.fallback = policy;
        self
    }

    /// After this many consecutive failed decisions, skip Redis for the
    /// [cooldown](Self::cooldown) and let the fallback policy decide at once
    /// (default [`DEFAULT_FAILURE_THRESHOLD`]; at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.threshold = failures.max(1);
        self
    }

    /// How long Redis is skipped after repeated failures; then one decision
    /// at a time probes it, and the first success goes back to Redis for all
    /// (default [`DEFAULT_COOLDOWN`]).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The connection's reconnection and timeout settings. The default
    /// retries a lost connection 3 times from 20 ms backoff (up to 500 ms
    /// apart) and gives a connection attempt 500 ms; a failed reconnection is
    /// retried on the next decision that reaches Redis.
    pub fn connection_config(mut self, config: ConnectionManagerConfig) -> Self {
        self.connection = Some(config);
        self
    }

    /// Builds the limiter. It connects on its first decision (or
    /// [`ping`](RedisLimiter::ping)), so an application starts even while
    /// Redis is down; every decision until Redis answers follows the
    /// fallback policy.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime (the connection's task
    /// needs one); [`Error::InvalidKeyPrefix`] for a prefix with braces;
    /// [`Error::Redis`] if the client's settings are unusable.
    pub fn build(self) -> Result<RedisLimiter, Error> {
        if self.prefix.contains(['{', '}']) {
            return Err(Error::InvalidKeyPrefix(self.prefix));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let config = self.connection.unwrap_or_else(default_connection_config);
        let conn = ConnectionManager::new_lazy_with_config(self.client, config)?;
        Ok(RedisLimiter {
            inner: Arc::new(Inner {
                conn,
                script: Script::new(gcra::SCRIPT),
                prefix: self.prefix,
                timeout: self.timeout,
                fallback: self.fallback,
                local: GovernorLimiter::new(),
                breaker: Arc::new(Breaker::new(self.threshold, self.cooldown)),
                counters: Counters::default(),
            }),
        })
    }
}

pub(crate) fn default_connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(3)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(Duration::from_millis(500)))
}

impl fmt::Debug for RedisLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the client: its connection info may hold a password.
        f.debug_struct("RedisLimiterBuilder")
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("fallback", &self.fallback)
            .field("failure_threshold", &self.threshold)
            .field("cooldown", &self.cooldown)
            .finish_non_exhaustive()
    }
}

/// GCRA rate limiting shared by every node through Redis: the algorithm
/// governor runs in-process, in one atomic Lua script per decision.
///
/// * Per (key family, quota) Redis holds one small string that expires by
///   itself as soon as the key's state is that of a fresh key.
/// * The script reads the time from Redis (`TIME`), so the nodes' clocks do
///   not matter.
/// * [`Decision`]s carry the same `remaining`, `reset` and `retry_after` as
///   [`GovernorLimiter`]'s, so responses have the same `RateLimit-*` and
///   `Retry-After` headers.
/// * A key with several quotas ([`Quotas`]) is checked against all of them
///   in the same script, all-or-nothing: a request one quota refuses is
///   charged to none.
/// * Each decision has a [timeout](RedisLimiterBuilder::timeout); when Redis
///   fails or is slow the [`FallbackPolicy`] decides, and after repeated
///   failures Redis is skipped for a cooldown, so an outage adds no latency
///   to requests. The connection is re-established by itself.
///
/// A decision that timed out may still reach Redis and be charged there
/// after the fallback policy decided: under a slow Redis a key can be counted
/// twice, never less.
///
/// Clones share the connection and state. Use it within a tokio runtime
/// with timers enabled (as `#[tokio::main]` provides). Needs Redis 5 or later
/// (or Valkey); the keys of one decision share a hash tag, so Redis Cluster
/// can run the script too.
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    script: Script,
    prefix: String,
    timeout: Duration,
    fallback: FallbackPolicy,
    local: GovernorLimiter,
    breaker: Arc<Breaker>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    redis: AtomicU64,
    fallback: AtomicU64,
    failures: AtomicU64,
}

impl RedisLimiter {
    /// Starts configuring a limiter on `client`, e.g.
    /// `redis::Client::open("redis://127.0.0.1/")?`.
    pub fn builder(client: Client) -> RedisLimiterBuilder {
        RedisLimiterBuilder {
            client,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            fallback: FallbackPolicy::default(),
            threshold: DEFAULT_FAILURE_THRESHOLD,
            cooldown: DEFAULT_COOLDOWN,
            connection: None,
        }
    }

    /// A limiter with the default settings.
    ///
    /// # Errors
    ///
    /// As [`RedisLimiterBuilder::build`].
    pub fn new(client: Client) -> Result<Self, Error> {
        Self::builder(client).build()
    }

    /// Round-trips to Redis and loads the script, so the first decision is a
    /// single `EVALSHA`. Call it at startup to warm the connection or to fail
    /// fast; it is not bounded by the decision timeout (wrap it in
    /// `tokio::time::timeout` as startup allows).
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

    /// Counters of Redis and fallback decisions, and whether Redis is being
    /// skipped right now.
    pub fn stats(&self) -> LimiterStats {
        let c = &self.inner.counters;
        LimiterStats {
            redis_decisions: c.redis.load(Ordering::Relaxed),
            fallback_decisions: c.fallback.load(Ordering::Relaxed),
            redis_failures: c.failures.load(Ordering::Relaxed),
            breaker_open: self.inner.breaker.is_open(),
        }
    }

    /// The prefix of the keys this limiter writes.
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }
}

impl RateLimiter for RedisLimiter {
    fn check(&self, family: KeyId, quotas: &Quotas) -> Check {
        self.inner.begin(family, quotas)
    }
}

impl Inner {
    /// Decides at once when Redis is being skipped; otherwise returns the
    /// future that asks it.
    fn begin(self: &Arc<Self>, family: KeyId, quotas: &Quotas) -> Check {
        match self.breaker.admit() {
            Admit::Skip => Check::Ready(self.fall_back(family, quotas, Error::CircuitOpen)),
            Admit::Go(probe) => {
                let inner = Arc::clone(self);
                let quotas = quotas.clone();
                Check::Pending(PendingCheck::new(async move {
                    inner.decide(family, &quotas, probe).await
                }))
            }
        }
    }

    async fn decide(
        &self,
        family: KeyId,
        quotas: &Quotas,
        probe: Option<Probe>,
    ) -> Result<Decision, LimiterUnavailable> {
        let outcome = match tokio::time::timeout(self.timeout, self.eval(family, quotas)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Timeout(self.timeout)),
        };
        match outcome {
            Ok(decision) => {
                self.counters.redis.fetch_add(1, Ordering::Relaxed);
                if self.breaker.success() == Transition::Closed {
                    tracing::info!(target: TARGET, "Redis answers again; rate limits are shared again");
                }
                Ok(decision)
            }
            Err(err) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                if self.breaker.failure(probe.as_ref()) == Transition::Opened {
                    tracing::warn!(
                        target: TARGET,
                        error = %err,
                        fallback = ?self.fallback,
                        "Redis rate limiter failing; deciding by the fallback policy until it answers",
                    );
                } else {
                    tracing::debug!(target: TARGET, error = %err, "Redis rate-limit decision failed");
                }
                drop(probe);
                self.fall_back(family, quotas, err)
            }
        }
    }

    async fn eval(&self, family: KeyId, quotas: &Quotas) -> Result<Decision, Error> {
        let gcras = || quotas.iter().map(|&q| Gcra::new(q));
        let mut invocation = self.script.prepare_invoke();
        for p in gcras() {
            invocation
                .key(gcra::state_key(&self.prefix, family, p.quota()))
                .arg(p.emission_interval())
                .arg(p.tolerance());
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        gcra::decide(gcras(), &reply).ok_or(Error::UnexpectedReply)
    }

    fn fall_back(
        &self,
        family: KeyId,
        quotas: &Quotas,
        err: Error,
    ) -> Result<Decision, LimiterUnavailable> {
        self.counters.fallback.fetch_add(1, Ordering::Relaxed);
        match self.fallback {
            FallbackPolicy::Reject => Err(LimiterUnavailable(Box::new(err))),
            FallbackPolicy::Local => match self.local.check(family, quotas) {
                Check::Ready(result) => result,
                // governor always answers at once; should that change, do
                // not guess.
                Check::Pending(_) => Err(LimiterUnavailable(Box::new(Error::UnexpectedReply))),
            },
        }
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("RedisLimiter")
            .field("key_prefix", &i.prefix)
            .field("timeout", &i.timeout)
            .field("fallback", &i.fallback)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
