//! The invalidation feed of [`PostgresStore`](crate::PostgresStore): a task
//! that LISTENs on the store's channel and forwards what it hears.

use std::time::{Duration, Instant};

use keygate_core::{Backoff, Invalidation, KeyId};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc::{Sender, error::TrySendError};

/// Messages the feed holds before it folds further ones into one
/// [`Invalidation::All`].
pub(crate) const FEED_CAPACITY: usize = 1024;

/// The receiver is gone: stop.
struct Closed;

/// Runs until the feed's receiver is dropped or `pool` is closed.
///
/// After every (re)connection, once LISTEN is in effect, it sends
/// [`Invalidation::All`]: notifications published while it was not listening
/// are lost, and it cannot know which keys they named.
pub(crate) async fn run(pool: PgPool, channel: String, tx: Sender<Invalidation>) {
    // A connection of its own, held for as long as the feed lives, so the
    // feed takes nothing from the store's pool.
    let listen_pool = PgPoolOptions::new()
        .max_connections(2)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            () = tx.closed() => break,
            () = pool.close_event() => break,
            () = backoff.wait() => {}
        }
        let connected = tokio::select! {
            () = tx.closed() => break,
            () = pool.close_event() => break,
            connected = connect(&listen_pool, &channel) => connected,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(err) => {
                let wait = backoff.failed();
                tracing::warn!(
                    target: "keygate::store",
                    %channel,
                    error = %err,
                    retry_in_ms = wait.as_millis(),
                    "cannot listen for key invalidations",
                );
                continue;
            }
        };
        tracing::debug!(target: "keygate::store", %channel, "listening for key invalidations");
        let since = Instant::now();
        if send_all(&mut listener, &tx).await.is_err() {
            break;
        }
        let Err(err) = receive(&mut listener, &pool, &tx).await else {
            break;
        };
        drop(listener);
        backoff.lost(since.elapsed());
        tracing::warn!(
            target: "keygate::store",
            %channel,
            error = %err,
            "lost the key invalidation listener; reconnecting",
        );
    }
    // End the feed first: closing the pool may wait for its connection.
    drop(tx);
    listen_pool.close().await;
}

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Reconnection is done here, with backoff, and followed by
    // `Invalidation::All`; the listener must not do it silently.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await?;
    Ok(listener)
}

/// Forwards notifications until the connection fails (`Err`, with the reason
/// to log) or the feed should stop (`Ok`).
async fn receive(
    listener: &mut PgListener,
    pool: &PgPool,
    tx: &Sender<Invalidation>,
) -> Result<(), sqlx::Error> {
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return Ok(()),
            () = pool.close_event() => return Ok(()),
            next = listener.try_recv() => next,
        };
        let notification = match next {
            Ok(Some(notification)) => notification,
            Ok(None) => return Err(sqlx::Error::Protocol("connection closed".into())),
            Err(err) => return Err(err),
        };
        // An empty or foreign payload (`NOTIFY keygate_invalidate` typed by
        // hand after editing keys in SQL) means "anything may have changed".
        let message = notification
            .payload()
            .parse::<KeyId>()
            .map_or(Invalidation::All, Invalidation::Key);
        let sent = match tx.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Closed(_)) => Err(Closed),
            // The consumer is behind: rather than buffer without bound or drop
            // this one, tell it to start over once it has room.
            Err(TrySendError::Full(_)) => send_all(listener, tx).await,
        };
        if sent.is_err() {
            return Ok(());
        }
    }
}

/// Sends [`Invalidation::All`], waiting for room in the feed.
async fn send_all(listener: &mut PgListener, tx: &Sender<Invalidation>) -> Result<(), Closed> {
    let permit = tx.reserve().await.map_err(|_| Closed)?;
    // Notifications already received are covered by this `All`.
    while listener.next_buffered().is_some() {}
    permit.send(Invalidation::All);
    Ok(())
}
