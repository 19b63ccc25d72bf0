//! `keygate serve`: keygate as a forward-auth server for a proxy (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`) in front of
//! a service in any language.
//!
//! The proxy asks the auth endpoint about each request, describing it in
//! headers it sets itself; the endpoint runs keygate's layer on the request
//! so described and answers 200 with identity headers, which the proxy
//! copies to the upstream request, or the layer's refusal, which the proxy
//! sends to the client. `/healthz`, `/readyz` and `/metrics` sit beside it.

mod config;
mod forward;
mod metrics;
mod routes;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use keygate::{KeySources, Keygate};
use keygate_core::{AuditLog, DynKeyStore, KeyId};
use keygate_redis::{RedisLimiter, redis};

pub(crate) use self::config::{Overrides, ServeConfig};
use self::{
    forward::Gate,
    metrics::{Metrics, TimedStore},
};
use crate::{db::Database, error::CliError, output};

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the server until Ctrl-C or SIGTERM, then writes pending usage and
/// audit events and returns.
pub(crate) async fn run(config: ServeConfig) -> Result<(), CliError> {
    init_logging();
    let hasher = crate::hasher(config.pepper_env.as_deref())?;
    let db = Database::open_with(&config.database_url, config.schema.as_deref(), false, 16).await?;
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn DynKeyStore> =
        Arc::new(TimedStore::new(Arc::clone(&db.keys), Arc::clone(&metrics)));

    let mut sources = KeySources::new()
        .headers(config.sources.headers.iter().cloned())
        .bearer(config.sources.bearer);
    if let Some(query) = &config.sources.query {
        sources = sources.query(query.clone());
    }
    let counted = Arc::clone(&metrics);
    let problem_header = config.proxy.problem.clone();
    let mut builder = Keygate::builder_from_arc(Arc::clone(&store))
        .key_format(config.prefix.clone())
        .hasher(hasher)
        .sources(sources)
        // The key never reaches an upstream through us: our answer carries
        // identity headers, not the request.
        .strip_credential(false)
        .rate_limit_headers(true)
        .trust_forwarded_header(config.proxy.client.clone())
        .trusted_proxies(config.proxy.trusted.iter().copied())
        .on_rejection(move |rejection| {
            counted.decided(rejection.code());
            let mut res = rejection.to_response();
            if let Some(name) = &problem_header
                && let Ok(value) = HeaderValue::from_maybe_shared(res.body().clone())
            {
                res.headers_mut().insert(name.clone(), value);
            }
            res
        });
    if let Some(quotas) = config.default_rate_limit.clone() {
        builder = builder.default_rate_limit(quotas);
    }
    if let Some(environment) = config.environment {
        builder = builder.environment(environment);
    }
    let audit = config
        .persist_audit
        .then(|| AuditLog::spawn(Arc::clone(&db.audit), 4096));
    if let Some(log) = &audit {
        builder = builder.audit_log(log.clone());
    }
    if let Some(url) = &config.redis_url {
        builder = builder.rate_limiter(redis_limiter(url).await?);
    }
    let keys = builder.build();
    let gate = Arc::new(Gate::new(&keys, &config, Arc::clone(&metrics)));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            CliError::new(format!("cannot listen on {}: {e}", config.listen)).hint(
                "choose another address with --listen, KEYGATE_LISTEN or `listen` in the file",
            )
        })?;
    let bound = listener.local_addr().unwrap_or(config.listen);
    for warning in config.warnings() {
        output::stderr(&format!("warning: {warning}\n"));
    }
    output::stderr(&format!(
        "keygate serve listening on http://{bound}  (auth endpoint {}; keys in {})\n",
        config.auth_path, db.url
    ));

    let app = router(
        &config.auth_path,
        gate,
        Ops {
            keys: keys.clone(),
            // Readiness probes are not cache misses: ask the store itself.
            store: Arc::clone(&db.keys),
            metrics,
        },
    );
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;

    // Nothing counted is lost: usage, then the audit trail.
    if let Err(e) = keys.shutdown().await {
        output::stderr(&format!(
            "warning: could not write the last usage counts: {e}\n"
        ));
    }
    if let Some(log) = audit {
        log.flush().await;
    }
    db.close().await;
    served.map_err(|e| CliError::new(format!("the server stopped: {e}")))
}

/// What the operational endpoints read.
#[derive(Clone)]
struct Ops {
    keys: Keygate,
    store: Arc<dyn DynKeyStore>,
    metrics: Arc<Metrics>,
}

fn router(auth_path: &str, gate: Arc<Gate>, ops: Ops) -> Router {
    // Below the path too, for proxies that append the original path to it
    // (Envoy's `path_prefix`).
    let auth = Router::new()
        .route(auth_path, any(forward::auth))
        .route(&format!("{auth_path}/{{*rest}}"), any(forward::auth))
        .with_state(gate);
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops);
    auth.merge(ops)
}

/// Ready when the store answers a lookup in time.
async fn readyz(State(ops): State<Ops>) -> Response {
    // Any id will do: the answer (found or not) is what counts.
    let probe = "0000000000".parse::<KeyId>().ok();
    let answered = match probe {
        Some(id) => tokio::time::timeout(READY_TIMEOUT, ops.store.find(id))
            .await
            .is_ok_and(|r| r.is_ok()),
        None => false,
    };
    if answered {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the key store does not answer\n",
        )
            .into_response()
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    let text = ops.metrics.render(ops.keys.verifier().cached_keys());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn redis_limiter(url: &str) -> Result<RedisLimiter, CliError> {
    let shown = crate::db::redact(url);
    let unusable = |e: &dyn std::fmt::Display| {
        CliError::new(format!("cannot use Redis at {shown}: {e}"))
            .hint("check --redis-url (or KEYGATE_REDIS_URL, or redis_url in the file)")
    };
    let client = redis::Client::open(url).map_err(|e| unusable(&e))?;
    let limiter = RedisLimiter::new(client).map_err(|e| unusable(&e))?;
    match tokio::time::timeout(Duration::from_secs(5), limiter.ping()).await {
        Ok(Ok(())) => Ok(limiter),
        Ok(Err(e)) => Err(unusable(&e)),
        Err(_) => Err(unusable(&"no answer within 5s")),
    }
}

/// Ctrl-C, or SIGTERM (what service managers and containers send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    output::stderr("keygate serve: stopping; writing usage counts\n");
}

/// Audit events and warnings to stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
