//! Start-up and shutdown shared by the examples that serve HTTP
//! (`examples/quickstart`, `examples/dual-auth`): logging, the listening
//! address, and a graceful stop that writes the last usage counts.

use std::{error::Error, net::SocketAddr};

use axum::Router;
use keygate::Keygate;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), so keygate's
/// `keygate::audit` events show beside what the example prints.
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
}

/// A listener on `KEYGATE_ADDR` (default `127.0.0.1:3000`), announced as
/// `name`, and the address it got.
pub(crate) async fn listen(name: &str) -> Result<(TcpListener, SocketAddr), Box<dyn Error>> {
    let addr = std::env::var("KEYGATE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await.map_err(|e| {
        format!("cannot listen on {addr}: {e} (set KEYGATE_ADDR to another address)")
    })?;
    let addr = listener.local_addr()?;
    println!("keygate {name} listening on http://{addr}  (Ctrl-C to stop)");
    Ok((listener, addr))
}

/// Serves `app` until Ctrl-C, then writes the usage `keys` counted since its
/// last periodic flush to the store.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    keys: &Keygate,
) -> Result<(), Box<dyn Error>> {
    // `ConnectInfo` gives keygate the client's address (audit logs, IP
    // allowlists).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("shutting down");
    })
    .await?;
    keys.shutdown().await?;
    Ok(())
}
