//! The invalidation feed of [`SqliteStore`](crate::SqliteStore): a task that
//! polls `keygate_key_changes` (filled by triggers, migration 0003) and
//! forwards each change.

use std::time::{Duration, Instant};

use keygate_core::{Invalidation, KeyId};
use sqlx::{Row, sqlite::SqlitePool};
use tokio::sync::mpsc::Sender;

/// Messages the feed holds before the poller waits for the consumer (the
/// changes stay in the table meanwhile, so nothing is lost).
pub(crate) const FEED_CAPACITY: usize = 256;

/// Changes read per query.
const BATCH: i64 = 256;

/// How long a change stays in the table. A poller that could not read it
/// for longer than this has missed changes, notices the gap in the
/// sequence, and sends [`Invalidation::All`].
const RETENTION: Duration = Duration::from_secs(3_600);

/// How often a poller deletes changes older than [`RETENTION`].
const PRUNE_EVERY: Duration = Duration::from_secs(300);

const TARGET: &str = "keygate::store";

/// The receiver is gone: stop.
struct Closed;

/// Runs until the feed's receiver is dropped or `pool` is closed, reading
/// new changes every `every`.
///
/// It starts after the last change made so far, and then sends
/// [`Invalidation::All`]: an entry cached before that read may predate a
/// change it will not report. Changes are numbered without gaps
/// (`AUTOINCREMENT`, whose counter a rollback rolls back too), so a gap
/// means pruned rows this poller never saw, and it sends
/// [`Invalidation::All`] too.
pub(crate) async fn run(pool: SqlitePool, every: Duration, tx: Sender<Invalidation>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor: Option<i64> = None;
    let mut failing = false;
    let mut last_prune: Option<Instant> = None;
    loop {
        tokio::select! {
            () = tx.closed() => break,
            () = pool.close_event() => break,
            _ = tick.tick() => {}
        }
        let outcome = match cursor {
            None => match starting_seq(&pool).await {
                Ok(seq) => {
                    cursor = Some(seq);
                    if send(&tx, Invalidation::All).await.is_err() {
                        break;
                    }
                    Ok(false)
                }
                Err(err) => Err(err),
            },
            Some(after) => match forward(&pool, after, &tx).await {
                Ok(Ok((seq, full))) => {
                    cursor = Some(seq);
                    Ok(full)
                }
                Ok(Err(Closed)) => break,
                Err(err) => Err(err),
            },
        };
        match outcome {
            Ok(full) => {
                if failing {
                    failing = false;
                    tracing::info!(target: TARGET, "reading key changes from SQLite again");
                }
                if full {
                    // More are waiting: read them without waiting a tick.
                    tick.reset_immediately();
                }
            }
            Err(err) => {
                if !failing {
                    failing = true;
                    tracing::warn!(
                        target: TARGET,
                        error = %err,
                        "cannot read keygate_key_changes (has `migrate()` or `keygate migrate` \
                         run?); other processes' key changes reach this cache only when its \
                         entries expire, until it can",
                    );
                } else {
                    tracing::debug!(target: TARGET, error = %err, "reading key changes failed");
                }
                continue;
            }
        }
        if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            if let Err(err) = prune(&pool).await {
                tracing::debug!(target: TARGET, error = %err, "pruning key changes failed");
            }
        }
    }
}

/// The number of the last change ever made (0 if none), pruned or not.
async fn starting_seq(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    // Fails if the table is missing, which is worth hearing about even
    // when the counter row below is absent.
    sqlx::query("SELECT 1 FROM keygate_key_changes LIMIT 1")
        .fetch_optional(pool)
        .await?;
    latest_seq(pool).await
}

/// Sends the changes after `after`; returns where the feed now stands and
/// whether more may be waiting.
///
/// The last number issued is read first, so every change up to it is
/// committed: any of them not found was pruned, and the feed sends
/// [`Invalidation::All`] (as it does if the numbers went backwards, say
/// because the file was restored from a backup).
async fn forward(
    pool: &SqlitePool,
    after: i64,
    tx: &Sender<Invalidation>,
) -> Result<Result<(i64, bool), Closed>, sqlx::Error> {
    let latest = latest_seq(pool).await?;
    if latest < after {
        tracing::warn!(
            target: TARGET,
            was = after,
            now = latest,
            "the key change log went backwards (database restored?); re-reading every cached key",
        );
        return Ok(send(tx, Invalidation::All).await.map(|()| (latest, false)));
    }
    if latest == after {
        return Ok(Ok((after, false)));
    }
    let rows = sqlx::query(
        "SELECT seq, key_id FROM keygate_key_changes \
         WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
    )
    .bind(after)
    .bind(latest)
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= BATCH;
    let mut last = after;
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let key_id: String = row.try_get("key_id")?;
        // `All` covers this row's key too.
        let message = if seq != last + 1 {
            missed(last + 1, seq - 1);
            Invalidation::All
        } else {
            key_id
                .parse::<KeyId>()
                .map_or(Invalidation::All, Invalidation::Key)
        };
        if send(tx, message).await.is_err() {
            return Ok(Err(Closed));
        }
        last = seq;
    }
    if !full && last < latest {
        // The newest changes are gone too.
        missed(last + 1, latest);
        if send(tx, Invalidation::All).await.is_err() {
            return Ok(Err(Closed));
        }
        last = latest;
    }
    Ok(Ok((last, full)))
}

/// The number of the last change issued (0 if none), from SQLite's
/// `AUTOINCREMENT` counter.
async fn latest_seq(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'keygate_key_changes'")
            .fetch_optional(pool)
            .await?;
    Ok(seq.unwrap_or(0))
}

fn missed(from: i64, to: i64) {
    tracing::warn!(
        target: TARGET,
        missed_from = from,
        missed_to = to,
        "key changes were pruned before this process read them; re-reading every cached key",
    );
}

async fn send(tx: &Sender<Invalidation>, message: Invalidation) -> Result<(), Closed> {
    tx.send(message).await.map_err(|_| Closed)
}

async fn prune(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let secs = i64::try_from(RETENTION.as_secs()).unwrap_or(i64::MAX);
    sqlx::query(
        "DELETE FROM keygate_key_changes \
         WHERE changed_at < CAST(strftime('%s', 'now') AS INTEGER) - ?1",
    )
    .bind(secs)
    .execute(pool)
    .await?;
    Ok(())
}
