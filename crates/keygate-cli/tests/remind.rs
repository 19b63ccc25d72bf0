//! `keygate keys remind`: the real binary delivers each due reminder once,
//! as a signed webhook a verifying receiver accepts, however often cron
//! runs it.

mod support;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use support::Site;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A verifying receiver on 127.0.0.1, on its own runtime; `fail` answers
/// 503 to that many verified messages first.
struct Receiver {
    url: String,
    verified: Arc<AtomicUsize>,
    taken: Arc<Mutex<Vec<serde_json::Value>>>,
    _runtime: tokio::runtime::Runtime,
}

fn receiver(fail: usize) -> Receiver {
    use axum::{Router, body::Bytes, http::StatusCode, routing::post};
    use keygate_webhook::{WebhookSecret, WebhookVerifier};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let verified = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(Mutex::new(Vec::new()));
    let (v, t) = (Arc::clone(&verified), Arc::clone(&taken));
    let layer = WebhookVerifier::standard(WebhookSecret::standard(SECRET).expect("secret"))
        .build()
        .layer();
    let app = Router::new()
        .route(
            "/hooks",
            post(move |body: Bytes| async move {
                if v.fetch_add(1, Ordering::SeqCst) < fail {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                t.lock()
                    .expect("lock")
                    .push(serde_json::from_slice(&body).expect("JSON"));
                StatusCode::NO_CONTENT
            }),
        )
        .route_layer(layer);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/hooks"),
        verified,
        taken,
        _runtime: runtime,
    }
}

fn remind(site: &Site, url: &str, secret: &str) -> std::process::Output {
    site.command(&["--json", "keys", "remind", "--webhook-url", url])
        .env("KEYGATE_WEBHOOK_SECRET", secret)
        .output()
        .expect("keygate runs")
}

#[test]
fn each_due_reminder_is_delivered_once_however_often_cron_runs() {
    let site = Site::new("remind");
    let (_, soon) = site.key("user:alice", "read", &["--expires-in", "2d"]);
    site.key("user:bob", "read", &["--expires-in", "90d"]);
    site.key("user:carol", "read", &[]);
    // The receiver is down for the first two messages: retried in the run.
    let rx = receiver(2);
    for run in 0..3 {
        let out = remind(&site, &rx.url, SECRET);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "run {run}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(
            report["sent"].as_array().expect("sent").len(),
            usize::from(run == 0),
            "{report:#}"
        );
        assert!(!stderr.contains(SECRET) && !String::from_utf8_lossy(&out.stdout).contains(SECRET));
    }
    let taken = rx.taken.lock().expect("lock").clone();
    assert_eq!(taken.len(), 1, "{taken:#?}");
    assert_eq!(taken[0]["type"], "key.expiring");
    assert_eq!(taken[0]["data"]["key_id"], soon);
    assert_eq!(taken[0]["data"]["threshold_seconds"], 3 * 86_400);
    assert_eq!(rx.verified.load(Ordering::SeqCst), 3);
    // The audit trail says so.
    let audit = site.keygate(&["--json", "audit", "--key", &soon]);
    assert!(audit.contains("\"remind\""), "{audit}");
}

#[test]
fn a_refused_delivery_fails_the_run_and_is_tried_again() {
    let site = Site::new("remind_refused");
    site.key("user:alice", "read", &["--expires-in", "12h"]);
    let rx = receiver(0);
    let wrong = "whsec_c2VjcmV0IG9mIGFub3RoZXIgc2VuZGVyISE=";
    let out = remind(&site, &rx.url, wrong);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not be delivered"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["failed"], 1, "{report:#}");
    let printed = site
        .command(&["keys", "remind", "--webhook-url", &rx.url])
        .env("KEYGATE_WEBHOOK_SECRET", wrong)
        .output()
        .expect("keygate runs");
    assert!(
        String::from_utf8_lossy(&printed.stdout).contains("No reminders delivered"),
        "a failed run does not say nothing was due"
    );
    assert!(remind(&site, &rx.url, SECRET).status.success());
    assert!(remind(&site, &rx.url, SECRET).status.success());
    assert_eq!(rx.taken.lock().expect("lock").len(), 1);
}

#[test]
fn without_a_webhook_the_due_reminders_are_printed_once() {
    let site = Site::new("remind_print");
    site.key("user:alice", "read", &["--expires-in", "10d"]);
    let first = site.keygate(&["keys", "remind"]);
    assert!(
        first.contains("kg_live_") && first.contains("expiring"),
        "{first}"
    );
    let second = site.keygate(&["keys", "remind"]);
    assert!(
        second.contains("No reminders due") && second.contains("1 already sent"),
        "{second}"
    );
    // Custom thresholds: a 30-day reminder is a claim of its own, once.
    let third = site.keygate(&["keys", "remind", "--thresholds", "30d"]);
    assert!(third.contains("expiring"), "{third}");
    let fourth = site.keygate(&["keys", "remind", "--thresholds", "30d"]);
    assert!(fourth.contains("No reminders due"), "{fourth}");
}
