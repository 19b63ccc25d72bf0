//! The verify step alone: keygate's check of a presented key beside
//! `bcrypt::verify` of the same key, in one run (issue 5.1).
//!
//! * `keygate_parse_sha256_ct_eq` — what the layer does with a key once it
//!   has the stored digest: [`KeyFormat::parse`] (prefix, environment,
//!   alphabet, CRC32 checksum, id), one SHA-256 of the key and a
//!   constant-time compare with the stored digest;
//! * `keygate_sha256_ct_eq` — the same without the parse;
//! * `bcrypt_verify_cost_10` — `bcrypt::verify` of the same key against a
//!   cost-10 hash of it, what a store of bcrypt hashes pays per request
//!   (ten samples: each call takes tens of milliseconds).
//!
//! Run with `cargo bench --bench verify_step`; results in `BENCHMARKS.md`.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, SamplingMode};
use keygate::core::{Environment, KeyFormat, KeyHasher};

fn verify_step(c: &mut Criterion) {
    let format = KeyFormat::new("bench").expect("a valid prefix");
    let hasher = KeyHasher::sha256();
    let key = format.generate(Environment::Live).expect("OS randomness");
    let key = key.expose_secret();
    let stored = hasher.digest(key);
    let bcrypt_hash = bcrypt::hash(key, 10).expect("bcrypt hashes");
    assert!(bcrypt::verify(key, &bcrypt_hash).expect("a valid hash"));

    let mut group = c.benchmark_group("verify_step");
    group.bench_function("keygate_parse_sha256_ct_eq", |b| {
        b.iter(|| {
            let parsed = format.parse(black_box(key)).expect("the key parses");
            hasher.digest(parsed.expose_secret()).ct_eq(&stored)
        });
    });
    group.bench_function("keygate_sha256_ct_eq", |b| {
        b.iter(|| hasher.digest(black_box(key)).ct_eq(&stored));
    });
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("bcrypt_verify_cost_10", |b| {
        b.iter(|| bcrypt::verify(black_box(key), &bcrypt_hash).expect("a valid hash"));
    });
    group.finish();
}

keygate_test_support::bench_main!(keygate_test_support::bench::settings(2); verify_step);
