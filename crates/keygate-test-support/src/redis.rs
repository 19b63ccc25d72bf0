//! The test Redis: a checked client, key prefixes of each test's own, and
//! keygate-redis's `InvalidatingStore` as a conformance fixture.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keygate_core::MemoryStore;
use keygate_redis::{
    InvalidatingStore, RedisInvalidation,
    redis::{self, Client},
};

use crate::{
    env::{REDIS_URL_VAR, redis_url},
    fixture::Fixture,
};

/// The test Redis, or `None` (after saying so) when the tests should skip.
///
/// # Panics
///
/// With `CI=true` and no server configured, or whenever the configured
/// server does not answer within 3 s.
pub async fn test_redis() -> Option<Client> {
    let url = redis_url()?;
    let client = Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("{REDIS_URL_VAR}={url:?} is not a Redis URL: {e}"));
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(3), ping).await {
        Ok(Ok(_)) => Some(client),
        Ok(Err(e)) => panic!("{REDIS_URL_VAR}={url:?} is set but Redis does not answer: {e}"),
        Err(_) => panic!("{REDIS_URL_VAR}={url:?} is set but Redis does not answer within 3 s"),
    }
}

/// A key prefix (or channel name) no other test or run uses:
/// `{namespace}:{pid}:{nanos}:{test}`.
pub fn unique_prefix(namespace: &str, test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{namespace}:{}:{nanos}:{test}", std::process::id())
}

/// Deletes every key under `prefix`.
pub async fn clean_up(client: &Client, prefix: &str) {
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis answers");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<i64>(&mut conn)
            .await
            .expect("DEL");
    }
}

/// A memory store behind an [`InvalidatingStore`] publishing on a channel
/// of its own; `None` when Redis is not configured (outside CI).
pub async fn invalidating() -> Option<Fixture<InvalidatingStore<MemoryStore>>> {
    let client = test_redis().await?;
    let channel = unique_prefix("keygate-test", "conformance");
    let bus = RedisInvalidation::with_channel(client, channel);
    Some(Fixture::new(
        InvalidatingStore::new(MemoryStore::new(), bus),
        || {},
    ))
}
