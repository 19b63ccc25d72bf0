//! Cross-node cache invalidation over Redis pub/sub, for deployments whose
//! key store has no feed of its own (PostgreSQL has LISTEN/NOTIFY).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use keygate_core::{
    Backoff, Invalidation, InvalidationFeed, KeyId, KeyRecord, KeyStore, KeyUpdate, Owner, Page,
    Replacement, Rotation, StoreError, UsageBucket, UsageDelta, time::OffsetDateTime,
};
use redis::{
    AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};
use tokio::sync::{
    OnceCell,
    mpsc::{self, Sender, UnboundedReceiver, error::TrySendError},
};

use crate::Error;

const TARGET: &str = "keygate::store";

/// The default pub/sub channel.
pub const DEFAULT_CHANNEL: &str = "keygate:invalidate";

/// Messages a feed holds before it folds further ones into one
/// [`Invalidation::All`].
const FEED_CAPACITY: usize = 1024;
/// How long a publish may take before it is given up (and logged).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a subscription checks that its connection is alive: a
/// connection that died without closing would otherwise go unnoticed.
const PING_EVERY: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes and subscribes to key invalidations on a Redis pub/sub
/// channel, so a key revoked on one node is dropped from every node's cache.
///
/// Wrap a store in [`InvalidatingStore`] to publish on every change and hand
/// keygate the feed; or call [`publish`](Self::publish) and
/// [`subscribe`](Self::subscribe) yourself.
///
/// A feed sends [`Invalidation::All`] each time its subscription is (re)made:
/// messages published while it was not subscribed are lost, and it cannot
/// know which keys they named. Clones share the publishing connection.
#[derive(Clone)]
pub struct RedisInvalidation {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    channel: String,
    publisher: OnceCell<ConnectionManager>,
}

impl RedisInvalidation {
    /// Invalidation on [`DEFAULT_CHANNEL`].
    pub fn new(client: Client) -> Self {
        Self::with_channel(client, DEFAULT_CHANNEL)
    }

    /// Invalidation on `channel`; every node sharing a key store must use
    /// the same one.
    pub fn with_channel(client: Client, channel: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                channel: channel.into(),
                publisher: OnceCell::new(),
            }),
        }
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Tells every subscriber that key `id` changed.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] or [`Error::Timeout`] (after 1 s) if Redis does not
    /// take the message.
    pub async fn publish(&self, id: KeyId) -> Result<(), Error> {
        self.send(id.as_str()).await
    }

    /// Tells every subscriber that any key may have changed (e.g. after a
    /// bulk edit in the store).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub async fn publish_all(&self) -> Result<(), Error> {
        self.send("*").await
    }

    async fn send(&self, payload: &str) -> Result<(), Error> {
        let inner = &self.inner;
        let publish = async {
            let conn = inner
                .publisher
                .get_or_try_init(|| async {
                    ConnectionManager::new_lazy_with_config(
                        inner.client.clone(),
                        ConnectionManagerConfig::new()
                            .set_number_of_retries(2)
                            .set_connection_timeout(Some(PUBLISH_TIMEOUT)),
                    )
                })
                .await?;
            let mut conn = conn.clone();
            redis::cmd("PUBLISH")
                .arg(&inner.channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await?;
            Ok(())
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, publish)
            .await
            .unwrap_or(Err(Error::Timeout(PUBLISH_TIMEOUT)))
    }

    /// Subscribes to the channel: a task (on the current tokio runtime)
    /// forwards what other nodes publish until the feed is dropped,
    /// resubscribing with backoff whenever the connection is lost.
    ///
    /// # Errors
    ///
    /// [`Error::NoRuntime`] outside a tokio runtime; [`Error::Redis`] if the
    /// client's settings are unusable.
    pub fn subscribe(&self) -> Result<InvalidationFeed, Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        // Subscriptions on a multiplexed connection need RESP3.
        let info = self.inner.client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))?;
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        handle.spawn(run(client, self.inner.channel.clone(), tx));
        Ok(rx)
    }
}

impl fmt::Debug for RedisInvalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisInvalidation")
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

/// Why a subscription ended.
enum Stop {
    /// The feed's receiver is gone.
    Closed,
    /// The connection is lost: resubscribe.
    Lost(String),
}

async fn run(client: Client, channel: String, tx: Sender<Invalidation>) {
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            () = tx.closed() => return,
            () = backoff.wait() => {}
        }
        let (push_tx, mut pushes) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_push_sender(push_tx)
            .set_connection_timeout(Some(PING_TIMEOUT))
            .set_response_timeout(Some(PING_TIMEOUT));
        let connected = tokio::select! {
            () = tx.closed() => return,
            connected = subscribe(&client, &channel, &config) => connected,
        };
        let conn = match connected {
            Ok(conn) => conn,
            Err(err) => {
                let wait = backoff.failed();
                tracing::warn!(
                    target: TARGET,
                    %channel,
                    error = %err,
                    retry_in_ms = wait.as_millis(),
                    "cannot subscribe to key invalidations",
                );
                continue;
            }
        };
        tracing::debug!(target: TARGET, %channel, "subscribed to key invalidations");
        let since = Instant::now();
        let stop = match send_all(&mut pushes, &tx).await {
            Ok(()) => receive(conn, &mut pushes, &tx).await,
            Err(stop) => stop,
        };
        let Stop::Lost(reason) = stop else { return };
        backoff.lost(since.elapsed());
        tracing::warn!(
            target: TARGET,
            %channel,
            reason,
            "lost the key invalidation subscription; resubscribing",
        );
    }
}

async fn subscribe(
    client: &Client,
    channel: &str,
    config: &AsyncConnectionConfig,
) -> Result<MultiplexedConnection, redis::RedisError> {
    let mut conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    conn.subscribe(channel).await?;
    Ok(conn)
}

async fn receive(
    mut conn: MultiplexedConnection,
    pushes: &mut UnboundedReceiver<PushInfo>,
    tx: &Sender<Invalidation>,
) -> Stop {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let push = tokio::select! {
            biased;
            () = tx.closed() => return Stop::Closed,
            push = pushes.recv() => push,
            _ = ping.tick() => {
                let pong = tokio::time::timeout(
                    PING_TIMEOUT,
                    redis::cmd("PING").query_async::<redis::Value>(&mut conn),
                )
                .await;
                match pong {
                    Ok(Ok(_)) => continue,
                    Ok(Err(err)) => return Stop::Lost(err.to_string()),
                    Err(_) => return Stop::Lost("PING timed out".to_owned()),
                }
            }
        };
        let Some(push) = push else {
            return Stop::Lost("connection closed".to_owned());
        };
        let message = match message(&push) {
            Push::Message(m) => m,
            Push::Disconnected => return Stop::Lost("disconnected".to_owned()),
            Push::Other => continue,
        };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Stop::Closed,
            // The consumer is behind: rather than buffer without bound or
            // drop this one, tell it to start over once it has room.
            Err(TrySendError::Full(_)) => {
                if let Err(stop) = send_all(pushes, tx).await {
                    return stop;
                }
            }
        }
    }
}

enum Push {
    Message(Invalidation),
    Disconnected,
    Other,
}

fn message(push: &PushInfo) -> Push {
    match push.kind {
        PushKind::Message => {
            // A payload that is not a key id (`*`, or anything typed by hand
            // with redis-cli) means "anything may have changed".
            let key = push
                .data
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .and_then(|s| s.parse::<KeyId>().ok());
            Push::Message(key.map_or(Invalidation::All, Invalidation::Key))
        }
        PushKind::Disconnection => Push::Disconnected,
        _ => Push::Other,
    }
}

/// Sends [`Invalidation::All`], waiting for room in the feed; messages
/// already received are covered by it.
async fn send_all(
    pushes: &mut UnboundedReceiver<PushInfo>,
    tx: &Sender<Invalidation>,
) -> Result<(), Stop> {
    let permit = tx.reserve().await.map_err(|_| Stop::Closed)?;
    let mut lost = false;
    while let Ok(push) = pushes.try_recv() {
        lost |= matches!(message(&push), Push::Disconnected);
    }
    permit.send(Invalidation::All);
    if lost {
        Err(Stop::Lost("disconnected".to_owned()))
    } else {
        Ok(())
    }
}

/// A [`KeyStore`] that publishes an invalidation on [`RedisInvalidation`]
/// after every change (insert, update, revoke) and subscribes keygate to
/// them, so revocations reach every node's cache.
///
/// A failed publish is logged, not returned: the change is already stored,
/// and the other nodes' caches still expire by their TTL.
///
/// ```no_run
/// use keygate_core::MemoryStore;
/// use keygate_redis::{InvalidatingStore, RedisInvalidation};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = RedisInvalidation::new(redis::Client::open("redis://127.0.0.1/")?);
/// let store = InvalidatingStore::new(MemoryStore::new(), bus);
/// // Keygate::builder(store) …
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct InvalidatingStore<S> {
    store: S,
    bus: RedisInvalidation,
}

impl<S> InvalidatingStore<S> {
    /// Wraps `store`, publishing its changes on `bus`.
    pub fn new(store: S, bus: RedisInvalidation) -> Self {
        Self { store, bus }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.store
    }

    /// The invalidation channel.
    pub fn invalidation(&self) -> &RedisInvalidation {
        &self.bus
    }

    /// The wrapped store.
    pub fn into_inner(self) -> S {
        self.store
    }

    async fn announce(&self, id: KeyId) {
        if let Err(err) = self.bus.publish(id).await {
            tracing::warn!(
                target: TARGET,
                key_id = %id,
                error = %err,
                "could not publish a key invalidation; other nodes keep their cached entry until it expires",
            );
        }
    }
}

impl<S: KeyStore> KeyStore for InvalidatingStore<S> {
    async fn find(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.store.find(id).await
    }

    async fn insert(&self, record: &KeyRecord) -> Result<(), StoreError> {
        self.store.insert(record).await?;
        // Other nodes may hold the id in their negative cache.
        self.announce(record.id).await;
        Ok(())
    }

    async fn update(&self, id: KeyId, changes: &KeyUpdate) -> Result<KeyRecord, StoreError> {
        let record = self.store.update(id, changes).await?;
        self.announce(id).await;
        Ok(record)
    }

    async fn rotate(&self, id: KeyId, replacement: &Replacement) -> Result<Rotation, StoreError> {
        let rotation = self.store.rotate(id, replacement).await?;
        if let Rotation::Rotated { old, new } = &rotation {
            self.announce(old.id).await;
            // Other nodes may hold the new id in their negative cache.
            self.announce(new.id).await;
        }
        Ok(rotation)
    }

    async fn revoke(&self, id: KeyId, at: OffsetDateTime) -> Result<Option<KeyRecord>, StoreError> {
        let record = self.store.revoke(id, at).await?;
        if record.is_some() {
            self.announce(id).await;
        }
        Ok(record)
    }

    async fn list_by_owner(&self, owner: &Owner, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list_by_owner(owner, page).await
    }

    async fn list_keys(
        &self,
        filter: &keygate_core::KeyFilter,
        now: OffsetDateTime,
        page: Page,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list_keys(filter, now, page).await
    }

    async fn list_expiring(
        &self,
        before: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list_expiring(before, limit).await
    }

    async fn record_usage(&self, batch: &[UsageDelta]) -> Result<(), StoreError> {
        self.store.record_usage(batch).await
    }

    async fn usage(
        &self,
        family: KeyId,
        since: OffsetDateTime,
    ) -> Result<Vec<UsageBucket>, StoreError> {
        self.store.usage(family, since).await
    }

    async fn count_active_by_owner(
        &self,
        owner: &Owner,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        self.store.count_active_by_owner(owner, now).await
    }

    async fn list_created_by(&self, family: KeyId) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.list_created_by(family).await
    }

    async fn list_live_ids(&self, limit: usize) -> Result<Vec<KeyId>, StoreError> {
        self.store.list_live_ids(limit).await
    }

    async fn claim_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.store.claim_reminder(id, threshold, at).await
    }

    async fn release_reminder(
        &self,
        id: KeyId,
        threshold: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.store.release_reminder(id, threshold).await
    }

    async fn credits(
        &self,
        account: KeyId,
        op: keygate_core::CreditOp,
        now: OffsetDateTime,
    ) -> Result<Option<keygate_core::CreditOutcome>, StoreError> {
        self.store.credits(account, op, now).await
    }

    fn subscribe(&self) -> Option<InvalidationFeed> {
        match self.bus.subscribe() {
            Ok(feed) => Some(feed),
            Err(err) => {
                tracing::warn!(target: TARGET, error = %err, "no key invalidation feed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keygate_core::{KeyFormat, KeyHasher, KeyManager, MemoryStore, NewKey, SystemClock};

    use super::*;

    /// The store is built without reaching Redis (so a test can wrap any
    /// store in it), and a change is stored even when Redis is down: the
    /// failed publish is logged, not returned.
    #[tokio::test]
    async fn changes_are_stored_when_redis_is_unreachable() {
        let bus = RedisInvalidation::new(Client::open("redis://127.0.0.1:1/").unwrap());
        let store = InvalidatingStore::new(MemoryStore::new(), bus);
        let keys = KeyManager::new(
            Arc::new(store.clone()),
            KeyFormat::new("kg").unwrap(),
            KeyHasher::sha256(),
            Arc::new(SystemClock),
        );
        let created = keys
            .create(NewKey::new(Owner::user("1"), "laptop"))
            .await
            .unwrap();
        let revoked = keys.revoke(created.record.id).await.unwrap();
        assert!(revoked.is_revoked());
        assert_eq!(
            store.get_ref().find(created.record.id).await.unwrap(),
            Some(revoked)
        );
    }
}
