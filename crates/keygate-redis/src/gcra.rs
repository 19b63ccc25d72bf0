//! The distributed GCRA: the Lua script Redis runs, and how its reply becomes
//! a [`Decision`] — through [`Gcra`], the arithmetic every keygate limiter
//! shares, so the fields are those governor's would have.
//!
//! State per (family, quota) key is the *debt* [`Gcra`] describes: how far
//! the theoretical arrival time lies ahead of now, in nanoseconds, stored
//! with the Redis time it was measured at. Storing `tat - now` rather than
//! the TAT keeps every number the script handles below 2^53 (Lua numbers are
//! doubles), so the arithmetic is exact in integer nanoseconds — the unit
//! governor uses — for any period up to 104 days.

use std::fmt::Write as _;

use keygate_core::{Decision, Gcra, KeyId, Quota};

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

/// Turns the script's reply into one decision for all `quotas` (in the
/// order they were sent): the binding quota's, as [`Decision::combine`]
/// picks it, so the `RateLimit` headers describe the limit that binds.
///
/// The script's `applied` flag is the authority. Lua numbers are doubles,
/// exact only below 2^53 ns (104 days), so for longer periods a debt can
/// come back a few nanoseconds off, on the other side of the tolerance
/// than the script saw it; such a debt is read as just within (applied) or
/// just over (refused) the tolerance.
///
/// `None` if the reply does not have the script's shape.
pub(crate) fn decide<Q>(quotas: Q, reply: &[i64]) -> Option<Decision>
where
    Q: ExactSizeIterator<Item = Gcra> + Clone,
{
    let (&applied, debts) = reply.split_first()?;
    if debts.len() != quotas.len() {
        return None;
    }
    let applied = match applied {
        1 => true,
        0 => false,
        _ => return None,
    };
    let pairs = quotas.zip(debts.iter().map(|&d| u64::try_from(d).unwrap_or(0)));
    if applied {
        return pairs
            .map(|(g, debt)| g.decide(debt.min(g.tolerance())))
            .reduce(Decision::combine);
    }
    let refused = pairs
        .clone()
        .filter(|&(g, debt)| !g.admits(debt))
        .map(|(g, debt)| g.decide(debt))
        .reduce(Decision::combine);
    // Refused, yet every debt reads as within its tolerance: rounding. The
    // quota closest to its tolerance is the one the script saw over it.
    refused.or_else(|| {
        pairs
            .min_by_key(|&(g, debt)| g.tolerance() - debt)
            .map(|(g, _)| g.decide(g.tolerance() + 1))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The script's arithmetic, run in Rust: what Redis computes.
    fn step(params: &[Gcra], debts: &mut [u64], elapsed: u64) -> Option<Decision> {
        for d in debts.iter_mut() {
            *d = d.saturating_sub(elapsed);
        }
        let admit = params.iter().zip(debts.iter()).all(|(p, &d)| p.admits(d));
        let mut reply = vec![i64::from(admit)];
        reply.extend(debts.iter().map(|&d| i64::try_from(d).unwrap()));
        if admit {
            for (d, p) in debts.iter_mut().zip(params) {
                *d += p.emission_interval();
            }
        }
        decide(params.iter().copied(), &reply)
    }

    #[test]
    fn burst_then_one_per_interval_like_governor() {
        let p = [Gcra::new(Quota::per_second(5))];
        assert_eq!(p[0].emission_interval(), 200_000_000);
        assert_eq!(p[0].tolerance(), 800_000_000);
        let mut debts = [0];
        for left in (0..5).rev() {
            let d = step(&p, &mut debts, 0).unwrap();
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.quota, Quota::per_second(5));
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
            Gcra::new(Quota::per_minute(100)),
            Gcra::new(Quota::per_second(2)),
        ];
        let mut debts = [0, 0];
        let d = step(&p, &mut debts, 0).unwrap();
        assert_eq!((d.quota.limit(), d.remaining), (2, 1));
        let d = step(&p, &mut debts, 0).unwrap();
        assert_eq!((d.quota.limit(), d.remaining), (2, 0));
        let d = step(&p, &mut debts, 0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.quota, Quota::per_second(2));
        assert_eq!(d.retry_after, Duration::from_millis(500));
        // The rejection charged neither quota.
        assert_eq!(debts, [2 * 600_000_000, 1_000_000_000]);
    }

    #[test]
    fn malformed_replies_are_none() {
        let p = [Gcra::new(Quota::per_second(1))];
        let p = || p.iter().copied();
        assert_eq!(decide(p(), &[]), None);
        assert_eq!(decide(p(), &[1]), None);
        assert_eq!(decide(p(), &[1, 0, 0]), None);
        assert_eq!(decide(std::iter::empty::<Gcra>(), &[1]), None);
        assert_eq!(decide(p(), &[2, 0]), None);
    }

    #[test]
    fn the_scripts_verdict_wins_over_rounding() {
        // 19 per 366 days: τ needs more than 53 bits, so Lua's doubles can
        // round a debt right at it either way.
        let g = Gcra::new(Quota::new(19, Duration::from_secs(366 * 86_400)).unwrap());
        let tau = i64::try_from(g.tolerance()).unwrap();
        let admitted = decide(std::iter::once(g), &[1, tau + 2]).unwrap();
        assert!(admitted.allowed);
        assert_eq!(admitted.remaining, 0);
        let refused = decide(std::iter::once(g), &[0, tau - 2]).unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_nanos(1));
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
