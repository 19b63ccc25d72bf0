//! A trivial axum server for end-to-end benchmarks, bare or behind keygate
//! (see `scripts/bench-http.sh`).
//!
//! ```sh
//! cargo run --release --example bench_server -- keygate 127.0.0.1:3801
//! ```
//!
//! Modes: `bare` (no authentication), `governor` (`tower_governor` keyed by
//! the `X-API-Key` value, a quota that never rejects: the rate limiter alone)
//! and `keygate` (memory store, warm cache, read-scoped key, a per-key quota
//! that never rejects). The first line printed is `KEY=<key>` (the key to
//! send; any value works for `governor`, none is needed for `bare`), then
//! `READY`.

use std::net::SocketAddr;

use axum::{Router, routing::get};
use keygate::{
    Keygate,
    core::{MemoryStore, NewKey, Owner, Quota, Scope},
};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "keygate".to_owned());
    let addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:3801").parse()?;

    let app = Router::new().route("/", get(|| async { "ok" }));
    let (app, key) = match mode.as_str() {
        "bare" => (app, String::new()),
        "governor" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .key_extractor(keygate_test_support::bench::ApiKeyHeader)
                .finish()
                .ok_or("governor rejected its configuration")?;
            let layer = tower_governor::GovernorLayer::new(config);
            (app.layer(layer), "bench_governor_key".to_owned())
        }
        "keygate" => {
            let keys = Keygate::builder(MemoryStore::new())
                .prefix("bench")
                .default_rate_limit(Quota::per_second(1_000_000_000))
                .build();
            let created = keys
                .manager()
                .create(NewKey::new(Owner::service("bench"), "bench").scopes([Scope::READ]))
                .await?;
            (
                app.layer(keys.layer()),
                created.key.expose_secret().to_owned(),
            )
        }
        other => {
            return Err(format!("unknown mode {other:?}: use bare, governor or keygate").into());
        }
    };
    println!("KEY={key}");
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("READY");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
