//! A driver for instruction counts, which stay the same from run to run on
//! a shared machine where times do not: it sends `N` requests through one
//! variant's router, set up as `request_path` sets it up (`with_state`, a
//! warm cache), and does nothing else. Run it under callgrind twice, with
//! `N` and with 0 requests; the difference over `N` is the count per
//! request:
//!
//! ```sh
//! cargo bench --bench instructions --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     target/release/deps/instructions-<hash> keygate 20000
//! ```
//!
//! Variants: `bare`, `tower_governor`, `tower_governor_headers`,
//! `tower_http_validate`, `hand_written`, `keygate`, `keygate_headers`. Under valgrind
//! `sha2` cannot use SHA-NI and runs its software SHA-256, so keygate's
//! count includes a hash that costs far more instructions than natively.

use std::{env, hint::black_box, process::ExitCode};

use axum::http::StatusCode;
use keygate_test_support::bench::{self, ApiKeyHeader, app, call, request, service};
use tower_governor::governor::GovernorConfigBuilder;

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let (Some(variant), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: instructions <variant> <requests>");
        return ExitCode::FAILURE;
    };
    let rt = bench::runtime();
    let store = keygate::core::MemoryStore::new();
    let keys = bench::builder(store.clone()).build();
    let with_headers = bench::builder(store).rate_limit_headers(true).build();
    let header = rt.block_on(bench::read_key(&keys));
    let router = match variant.as_str() {
        "bare" => app(),
        "tower_governor" => app().layer(tower_governor::GovernorLayer::new(
            GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .key_extractor(ApiKeyHeader)
                .finish()
                .expect("non-zero period and burst"),
        )),
        "tower_governor_headers" => app().layer(tower_governor::GovernorLayer::new(
            GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .key_extractor(ApiKeyHeader)
                .use_headers()
                .finish()
                .expect("non-zero period and burst"),
        )),
        "tower_http_validate" => app().layer(bench::validate_header(header.clone())),
        "hand_written" => app().layer(bench::hand_written(&header)),
        "keygate" => app().layer(keys.layer()),
        "keygate_headers" => app().layer(with_headers.layer()),
        other => {
            eprintln!("unknown variant {other}");
            return ExitCode::FAILURE;
        }
    };
    let svc = service(router);
    rt.block_on(async {
        // Warm: the first request fills the cache and the limiter's state.
        let res = call(svc.clone(), request(Some(&header))).await;
        assert_eq!(res.status(), StatusCode::OK, "{variant} must admit");
        for _ in 0..n {
            black_box(call(svc.clone(), request(Some(&header))).await.status());
        }
    });
    ExitCode::SUCCESS
}
