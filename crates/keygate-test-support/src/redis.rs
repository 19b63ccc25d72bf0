//! The test Redis: a checked client, key prefixes of each test's own, and
//! keygate-redis's `InvalidatingStore` and `RedisCredits` as conformance
//! fixtures.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use keygate_core::MemoryStore;
use keygate_redis::{
    InvalidatingStore, RedisCredits, RedisInvalidation,
    redis::{self, Client},
};

use crate::{
    conformance::bank::Banks,
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

/// Two [`RedisCredits`] built separately (two connections, as two nodes
/// hold them) on one fresh key prefix, for the bank conformance cases; the
/// prefix's keys are deleted when the fixture is dropped, even after a
/// panic. `None` when Redis is not configured (outside CI).
///
/// # Panics
///
/// As [`test_redis`]; or if a bank cannot be built.
pub async fn credit_banks() -> Option<Fixture<Banks>> {
    let client = test_redis().await?;
    let prefix = unique_prefix("keygate-test", "credits");
    let bank = || {
        RedisCredits::builder(client.clone())
            .key_prefix(&prefix)
            // Generous: these tests are about Redis's answers, on a busy
            // machine running a debug build.
            .timeout(Duration::from_secs(2))
            .build()
            .expect("a bank")
    };
    let banks = Banks {
        a: Arc::new(bank()),
        b: Arc::new(bank()),
    };
    Some(Fixture::new(banks, move || {
        clean_up_blocking(&client, &prefix);
    }))
}

/// [`clean_up`] over a blocking connection, for cleanups that run in
/// `Drop`; failures are ignored (the keys are a test's own).
pub fn clean_up_blocking(client: &Client, prefix: &str) {
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(3)) else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _ = redis::cmd("DEL").arg(&keys).query::<i64>(&mut conn);
    }
}
