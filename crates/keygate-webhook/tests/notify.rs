//! Reminders delivered as signed webhooks: keygate-core's
//! `KeyManager::send_reminders` with a `WebhookNotifier`, to a local
//! receiver that verifies every message with the webhook layer and fails
//! as told.

#![cfg(feature = "notify")]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Bytes, http::StatusCode, routing::post};
use keygate::core::{
    FakeClock, KeyFormat, KeyHasher, KeyManager, MemoryStore, NewKey, Owner, ReminderPolicy,
};
use keygate_webhook::{WebhookNotifier, WebhookSecret, WebhookSigner, WebhookVerifier};

const DAY: Duration = Duration::from_secs(86_400);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A receiver on 127.0.0.1 behind the webhook layer: answers 500 to its
/// first `fail` verified messages, then 204, and keeps the bodies it took.
struct Receiver {
    url: String,
    verified: Arc<AtomicUsize>,
    taken: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn receiver(secret: &str, fail: usize) -> Receiver {
    let verified = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(Mutex::new(Vec::new()));
    let (v, t) = (Arc::clone(&verified), Arc::clone(&taken));
    let layer = WebhookVerifier::standard(WebhookSecret::standard(secret).unwrap())
        .build()
        .layer();
    let app = Router::new()
        .route(
            "/hooks/keygate",
            post(move |body: Bytes| async move {
                if v.fetch_add(1, Ordering::SeqCst) < fail {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                t.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                StatusCode::NO_CONTENT
            }),
        )
        .route_layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/hooks/keygate"),
        verified,
        taken,
    }
}

fn notifier(url: &str, secret: &str) -> WebhookNotifier {
    WebhookNotifier::new(
        url,
        WebhookSigner::standard(WebhookSecret::standard(secret).unwrap()),
    )
    .unwrap()
    .backoff(Duration::from_millis(10))
}

#[tokio::test]
async fn each_threshold_reaches_the_receiver_once_signed_and_retried_through_failures() {
    let clock = FakeClock::starting_now();
    let manager = KeyManager::new(
        Arc::new(MemoryStore::new()),
        KeyFormat::new("mbk").unwrap(),
        KeyHasher::sha256(),
        Arc::new(clock.clone()),
    );
    let key = manager
        .create(NewKey::new(Owner::user("alice"), "laptop").expires_in(20 * DAY))
        .await
        .unwrap()
        .record
        .id;
    // The receiver fails twice: the notifier retries within the run.
    let rx = receiver(SECRET, 2).await;
    let hooks = notifier(&rx.url, SECRET);
    let policy = ReminderPolicy::default();

    clock.advance(7 * DAY);
    for _ in 0..3 {
        manager.send_reminders(&policy, &hooks).await.unwrap();
    }
    clock.advance(11 * DAY);
    for _ in 0..3 {
        manager.send_reminders(&policy, &hooks).await.unwrap();
    }
    let taken = rx.taken.lock().unwrap().clone();
    assert_eq!(taken.len(), 2, "one per threshold: {taken:#?}");
    assert_eq!(
        rx.verified.load(Ordering::SeqCst),
        4,
        "two failed attempts, two deliveries"
    );
    for (doc, days) in taken.iter().zip([14, 3]) {
        assert_eq!(doc["type"], "key.expiring");
        assert_eq!(doc["data"]["key_id"], key.as_str());
        assert_eq!(doc["data"]["key_head"], format!("mbk_live_{key}"));
        assert_eq!(doc["data"]["owner"], "user:alice");
        assert_eq!(doc["data"]["threshold_seconds"], days * 86_400);
    }
    let text = serde_json::to_string(&taken).unwrap();
    assert!(!text.contains("digest"), "{text}");
}

#[tokio::test]
async fn a_receiver_that_refuses_the_signature_is_not_retried_and_the_reminder_waits() {
    let clock = FakeClock::starting_now();
    let manager = KeyManager::new(
        Arc::new(MemoryStore::new()),
        KeyFormat::new("mbk").unwrap(),
        KeyHasher::sha256(),
        Arc::new(clock.clone()),
    );
    manager
        .create(NewKey::new(Owner::user("a"), "k").expires_in(DAY / 2))
        .await
        .unwrap();
    let rx = receiver(SECRET, 0).await;
    // Signed with another secret: the receiver's layer answers 401.
    let wrong = notifier(&rx.url, "whsec_c2VjcmV0IG9mIGFub3RoZXIgc2VuZGVyISE=");
    let report = manager
        .send_reminders(&ReminderPolicy::default(), &wrong)
        .await
        .unwrap();
    assert_eq!((report.sent.len(), report.failed), (0, 1));
    assert_eq!(rx.verified.load(Ordering::SeqCst), 0);
    // Given back: the right signer delivers it on the next run, once.
    let right = notifier(&rx.url, SECRET);
    for _ in 0..2 {
        manager
            .send_reminders(&ReminderPolicy::default(), &right)
            .await
            .unwrap();
    }
    assert_eq!(rx.taken.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_receiver_gives_up_after_its_attempts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hooks = notifier(&format!("http://127.0.0.1:{port}/gone"), SECRET).attempts(3);
    let clock = FakeClock::starting_now();
    let manager = KeyManager::new(
        Arc::new(MemoryStore::new()),
        KeyFormat::new("mbk").unwrap(),
        KeyHasher::sha256(),
        Arc::new(clock),
    );
    manager
        .create(NewKey::new(Owner::user("a"), "k").expires_in(DAY / 2))
        .await
        .unwrap();
    let report = manager
        .send_reminders(&ReminderPolicy::default(), &hooks)
        .await
        .unwrap();
    assert_eq!(report.failed, 1);
}

#[test]
fn only_absolute_http_urls_are_taken() {
    let signer = || WebhookSigner::standard(WebhookSecret::standard(SECRET).unwrap());
    for bad in [
        "",
        "/relative",
        "https://example.com/x",
        "ftp://x/y",
        "http://",
    ] {
        assert!(WebhookNotifier::new(bad, signer()).is_err(), "{bad}");
    }
    assert!(WebhookNotifier::new("http://127.0.0.1:9/x", signer()).is_ok());
}
