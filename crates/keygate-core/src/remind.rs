//! Reminders for keys nearing expiry: [`KeyManager::send_reminders`] finds
//! them, claims each reminder once in the store, and hands it to a
//! [`Notifier`] the application provides (email, chat, or a signed webhook
//! with `keygate-webhook`'s `WebhookNotifier`).

use std::{fmt, time::Duration};

use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    AuditAction, BoxError, Environment, KeyId, KeyManager, KeyRecord, ManageError, Owner,
    store::BoxFuture,
};

/// Why a key is due for a reminder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// The key expires: its owner should rotate it or let it go.
    Expiring,
    /// The key was rotated and its grace period ends: clients still using
    /// it must switch to its successor.
    RotationGrace,
}

impl ReminderKind {
    /// `expiring` or `rotation_grace`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Expiring => "expiring",
            Self::RotationGrace => "rotation_grace",
        }
    }
}

/// One reminder: which key, why, and how far ahead. Holds no secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reminder {
    /// Why the key is due.
    pub kind: ReminderKind,
    /// The key's public id.
    pub key_id: KeyId,
    /// `{prefix}_{env}_{id}`, as listings show it.
    pub key_head: String,
    /// Who the key belongs to.
    pub owner: Owner,
    /// The key's name.
    pub name: String,
    /// `live` or `test`.
    pub environment: Environment,
    /// When the key stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The threshold this reminder is for, in seconds before expiry (e.g.
    /// 259 200 for the 3-day reminder).
    #[serde(rename = "threshold_seconds", serialize_with = "seconds")]
    pub threshold: Duration,
    /// For a rotated key, the key that replaced it.
    pub superseded_by: Option<KeyId>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Delivers reminders: implement it for your channel (email, Slack…), or
/// use `keygate_webhook::WebhookNotifier` for signed webhooks.
///
/// A delivery that fails returns the error; the reminder is then given
/// back, and the next run of [`KeyManager::send_reminders`] tries again.
/// Retry transient failures inside `notify` if a run should not wait for the
/// next one.
pub trait Notifier: Send + Sync {
    /// Delivers one reminder.
    fn notify<'a>(&'a self, reminder: &'a Reminder) -> BoxFuture<'a, Result<(), BoxError>>;
}

/// When reminders go out: thresholds before expiry, and how many keys one
/// run looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct ReminderPolicy {
    thresholds: Vec<Duration>,
    batch: usize,
}

impl Default for ReminderPolicy {
    /// 14 days, 3 days and 1 day before expiry; 1 000 keys a run.
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        Self {
            // Shortest first, as `thresholds` keeps them.
            thresholds: vec![
                Duration::from_secs(DAY),
                Duration::from_secs(3 * DAY),
                Duration::from_secs(14 * DAY),
            ],
            batch: 1000,
        }
    }
}

impl ReminderPolicy {
    /// Reminders at these lead times before expiry (zero and duplicates are
    /// dropped; none at all means no reminders).
    pub fn thresholds(mut self, thresholds: impl IntoIterator<Item = Duration>) -> Self {
        let mut t: Vec<Duration> = thresholds.into_iter().filter(|d| !d.is_zero()).collect();
        t.sort_unstable();
        t.dedup();
        self.thresholds = t;
        self
    }

    /// At most this many keys per run, soonest to expire first (at least 1).
    pub fn batch(mut self, keys: usize) -> Self {
        self.batch = keys.max(1);
        self
    }

    /// The thresholds, shortest first.
    pub fn lead_times(&self) -> &[Duration] {
        &self.thresholds
    }

    /// The reminder due for a key that expires in `left`: the shortest
    /// threshold it is within. One reminder per run and key, the most
    /// urgent: a key first seen 2 days before expiry gets the 3-day
    /// reminder, never the 14-day one as well.
    fn due(&self, left: Duration) -> Option<Duration> {
        self.thresholds.iter().copied().find(|t| left <= *t)
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReminderReport {
    /// The reminders delivered by this run.
    pub sent: Vec<Reminder>,
    /// Reminders already claimed (by an earlier run, or another process).
    pub already_sent: usize,
    /// Deliveries that failed; given back for the next run.
    pub failed: usize,
}

impl fmt::Display for ReminderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl KeyManager {
    /// Sends the reminders that are due now, each once.
    ///
    /// Looks at the keys that are not revoked and expire within the longest
    /// threshold (keys in a rotation grace period included), and for each
    /// finds the shortest threshold it is within. The reminder for that key
    /// and threshold is claimed in the store before it is delivered
    /// ([`KeyStore::claim_reminder`](crate::KeyStore::claim_reminder)), so
    /// however many runs and processes overlap, and across restarts, it is
    /// delivered at most once; a failed delivery gives the claim back, so
    /// the next run tries again. Each delivery is recorded in the audit
    /// trail (`remind`, detail `expiring 3d`).
    ///
    /// Meant to run on a schedule: from a cron job (`keygate keys remind`)
    /// or a task in your service.
    ///
    /// # Errors
    ///
    /// The store's error; deliveries that fail are counted in the report,
    /// not returned.
    pub async fn send_reminders(
        &self,
        policy: &ReminderPolicy,
        notifier: &dyn Notifier,
    ) -> Result<ReminderReport, ManageError> {
        let mut report = ReminderReport::default();
        let Some(&longest) = policy.thresholds.last() else {
            return Ok(report);
        };
        let now = self.now();
        for record in self.expiring(longest, policy.batch).await? {
            let Some((reminder, threshold)) = self.reminder_for(&record, policy, now) else {
                continue;
            };
            if !self.store.claim_reminder(record.id, threshold, now).await? {
                report.already_sent += 1;
                continue;
            }
            match notifier.notify(&reminder).await {
                Ok(()) => {
                    self.audit(
                        AuditAction::Remind,
                        record.id,
                        Some(format!("{} {}", reminder.kind, lead(threshold))),
                    );
                    report.sent.push(reminder);
                }
                Err(e) => {
                    tracing::warn!(
                        target: crate::AUDIT_TARGET,
                        key_id = record.id.as_str(),
                        error = %e,
                        "a reminder could not be delivered; the next run tries again"
                    );
                    self.store.release_reminder(record.id, threshold).await?;
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    fn reminder_for(
        &self,
        record: &KeyRecord,
        policy: &ReminderPolicy,
        now: OffsetDateTime,
    ) -> Option<(Reminder, Duration)> {
        let expires_at = record.expires_at?;
        let left = Duration::try_from(expires_at - now)
            .ok()
            .filter(|d| !d.is_zero())?;
        let threshold = policy.due(left)?;
        let reminder = Reminder {
            kind: if record.superseded_by.is_some() {
                ReminderKind::RotationGrace
            } else {
                ReminderKind::Expiring
            },
            key_id: record.id,
            key_head: record.head(self.format().prefix()),
            owner: record.owner.clone(),
            name: record.name.clone(),
            environment: record.environment,
            expires_at,
            threshold,
            superseded_by: record.superseded_by,
        };
        Some((reminder, threshold))
    }
}

/// `14d`, `3d`, `12h`, `90m` or `45s`: the largest unit that divides it.
fn lead(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s.is_multiple_of(len) && s >= len {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests;
