//! The distributed GCRA: the Lua script Redis runs, and how its reply becomes
//! a [`Decision`] with the same fields governor's would have.
//!
//! State per (family, quota) key is the *debt*: how far the theoretical
//! arrival time (TAT) lies ahead of now, in nanoseconds, stored with the
//! Redis time it was measured at. Storing `tat - now` rather than the TAT
//! keeps every number the script handles below 2^53 (Lua numbers are
//! doubles), so the arithmetic is exact in integer nanoseconds — the unit
//! governor uses — for any period up to 104 days.
//!
//! With emission interval `T = period / limit` and tolerance
//! `tau = T * (limit - 1)` (governor's), a request is admitted when
//! `debt <= tau`, and then `debt += T`. So a fresh key admits a burst of
//! `limit`, then one request every `T`.

use std::{fmt::Write as _, time::Duration};

use keygate_core::{Decision, KeyId, Quota};

/// The script: one atomic decision over every quota in `KEYS`.
///
/// `ARGV[2i-1]`, `ARGV[2i]`: emission interval and tolerance of quota `i`, in
/// nanoseconds. Returns `{applied, debt_1, …, debt_n}`: `applied` is 1 when
/// every quota admitted the request and all were charged, 0 when at least one
/// rejected it and none was; `debt_i` is quota `i`'s debt *before* this
/// request (after the time since its last update was paid off).
pub(crate) const SCRIPT: &str = r"
-- Redis before 5 replicates scripts verbatim, which forbids writes after TIME.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local debts = {}
local admit = 1
local values = redis.call('MGET', unpack(KEYS))
for i = 1, n do
  local debt = 0
  local v = values[i]
  if v then
    local at, d = string.match(v, '^(%d+):(%d+)$')
    if at then
      local elapsed = now - tonumber(at)
      if elapsed < 0 then elapsed = 0 end
      debt = tonumber(d) - elapsed * 1000
      if debt < 0 then debt = 0 end
    end
  end
  debts[i] = debt
  if debt > tonumber(ARGV[2 * i]) then admit = 0 end
end
local out = {admit}
for i = 1, n do
  out[i + 1] = debts[i]
  if admit == 1 then
    local d = debts[i] + tonumber(ARGV[2 * i - 1])
    redis.call('SET', KEYS[i], string.format('%.0f:%.0f', now, d),
      'PX', math.max(1, math.ceil(d / 1000000)))
  end
end
return out
";

/// A quota's GCRA parameters, in nanoseconds, as governor derives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    /// Emission interval `T`.
    pub(crate) t: u64,
    /// Tolerance `tau = T * (limit - 1)`.
    pub(crate) tau: u64,
    pub(crate) limit: u32,
}

impl Params {
    pub(crate) fn of(quota: Quota) -> Self {
        // Same interval as `Quota::to_governor`: truncated to whole
        // nanoseconds, at least one. A period is at most 366 days, so it fits.
        let t = u64::try_from(quota.replenish_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let limit = quota.limit();
        Self {
            t,
            tau: t.saturating_mul(u64::from(limit - 1)),
            limit,
        }
    }

    /// The decision for a request that found `debt` and was charged.
    fn admitted(self, debt: u64) -> Decision {
        // governor: min(t0 + tau + T - tat', tau + T) / T with tat' = t0 + debt + T.
        let remaining = u32::try_from(self.tau.saturating_sub(debt) / self.t).unwrap_or(u32::MAX);
        let remaining = remaining.min(self.limit);
        Decision {
            allowed: true,
            limit: self.limit,
            remaining,
            // As `GovernorLimiter` reports it, so headers match.
            reset: nanos(self.t.saturating_mul(u64::from(self.limit - remaining))),
            retry_after: Duration::ZERO,
        }
    }

    /// The decision for a request that found `debt`, more than the
    /// tolerance.
    fn rejected(self, debt: u64) -> Decision {
        Decision {
            allowed: false,
            limit: self.limit,
            remaining: 0,
            reset: nanos(self.t.saturating_mul(u64::from(self.limit))),
            retry_after: nanos(debt.saturating_sub(self.tau)),
        }
    }
}

fn nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

/// The Redis key of a family's state under one quota:
/// `{prefix}:{{family}}:{quota}`, e.g. `keygate:rl:{Ab3Cd5Ef7G}:100/s`.
///
/// The braces make the family a Redis Cluster hash tag, so every quota of one
/// family lives in one slot and a multi-quota script may touch them all.
pub(crate) fn state_key(prefix: &str, family: KeyId, quota: Quota) -> String {
    let mut key = String::with_capacity(prefix.len() + 24);
    // Writing to a String cannot fail.
    let _ = write!(key, "{prefix}:{{{family}}}:{quota}");
    key
}

/// Turns the script's reply into one decision for all `params` (in the order
/// they were sent).
///
/// Admitted: the quota closest to its limit speaks (fewest remaining, then
/// longest reset), as the `RateLimit` headers should describe the binding
/// limit. Rejected: the rejecting quota with the longest wait, since the
/// request needs every quota to admit it.
///
/// `None` if the reply does not have the script's shape.
pub(crate) fn decide(params: &[Params], reply: &[i64]) -> Option<Decision> {
    let (&applied, debts) = reply.split_first()?;
    if debts.len() != params.len() || params.is_empty() {
        return None;
    }
    let debts = debts.iter().map(|&d| u64::try_from(d).unwrap_or(0));
    let pairs = params.iter().copied().zip(debts);
    if applied == 1 {
        pairs
            .map(|(p, d)| p.admitted(d))
            .min_by(|a, b| a.remaining.cmp(&b.remaining).then(b.reset.cmp(&a.reset)))
    } else {
        pairs
            .filter(|&(p, d)| d > p.tau)
            .map(|(p, d)| p.rejected(d))
            .max_by_key(|d| d.retry_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script's arithmetic, run in Rust: what Redis computes.
    fn step(params: &[Params], debts: &mut [u64], elapsed: u64) -> Option<Decision> {
        for d in debts.iter_mut() {
            *d = d.saturating_sub(elapsed);
        }
        let admit = params.iter().zip(debts.iter()).all(|(p, &d)| d <= p.tau);
        let mut reply = vec![i64::from(admit)];
        reply.extend(debts.iter().map(|&d| i64::try_from(d).unwrap()));
        if admit {
            for (d, p) in debts.iter_mut().zip(params) {
                *d += p.t;
            }
        }
        decide(params, &reply)
    }

    #[test]
    fn burst_then_one_per_interval_like_governor() {
        let p = [Params::of(Quota::per_second(5))];
        assert_eq!(p[0].t, 200_000_000);
        assert_eq!(p[0].tau, 800_000_000);
        let mut debts = [0];
        for left in (0..5).rev() {
            let d = step(&p, &mut debts, 0).unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.limit, 5);
            assert_eq!(d.reset, Duration::from_millis(200) * (5 - left));
        }
        let d = step(&p, &mut debts, 0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(200));
        assert_eq!(d.reset, Duration::from_secs(1));
        let d = step(&p, &mut debts, 150_000_000).unwrap();
        assert_eq!(d.retry_after, Duration::from_millis(50));
        assert!(step(&p, &mut debts, 50_000_000).unwrap().allowed);
        assert!(!step(&p, &mut debts, 0).unwrap().allowed);
    }

    #[test]
    fn the_binding_quota_speaks() {
        let p = [
            Params::of(Quota::per_minute(100)),
            Params::of(Quota::per_second(2)),
        ];
        let mut debts = [0, 0];
        let d = step(&p, &mut debts, 0).unwrap();
        assert_eq!((d.limit, d.remaining), (2, 1));
        let d = step(&p, &mut debts, 0).unwrap();
        assert_eq!((d.limit, d.remaining), (2, 0));
        let d = step(&p, &mut debts, 0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.limit, 2);
        assert_eq!(d.retry_after, Duration::from_millis(500));
        // The rejection charged neither quota.
        assert_eq!(debts, [2 * 600_000_000, 1_000_000_000]);
    }

    #[test]
    fn malformed_replies_are_none() {
        let p = [Params::of(Quota::per_second(1))];
        assert_eq!(decide(&p, &[]), None);
        assert_eq!(decide(&p, &[1]), None);
        assert_eq!(decide(&p, &[1, 0, 0]), None);
        assert_eq!(decide(&[], &[1]), None);
        // Inconsistent (rejected, yet nothing over its tolerance).
        assert_eq!(decide(&p, &[0, 0]), None);
    }

    #[test]
    fn keys_are_hash_tagged_by_family() {
        let family: KeyId = "Ab3Cd5Ef7G".parse().unwrap();
        assert_eq!(
            state_key("keygate:rl", family, Quota::per_second(100)),
            "keygate:rl:{Ab3Cd5Ef7G}:100/s"
        );
    }
}
