#![cfg(feature = "manage")]
//! The key-management page (`keygate::manage::ui`) through a real router:
//! every file it needs is served from the binary, same-origin, under the
//! strict CSP; nothing in it names another origin, runs inline, builds
//! HTML from strings or touches browser storage; `config.json` tells the
//! page how the service reads keys. scripts/ui-test.sh drives the same
//! page in a real browser.

use axum::{Router, routing::get};
use http::{HeaderName, Method, StatusCode};
use keygate::{
    Keygate,
    core::{MemoryStore, NewKey, Owner, Scope},
    manage::{UI_CSP, Ui, UiSignIn},
};
use keygate_test_support::{
    key::issue,
    reply::{Reply, json_request},
};
use tower::ServiceExt;

/// A service with the management API and its page at `/admin`, and an
/// `admin` key.
async fn service(keys: &Keygate, page: Router) -> (Router, String) {
    let app = Router::new()
        .route("/notes", get(|| async { "notes" }))
        .layer(keys.layer())
        .nest("/admin", keygate::manage::router(keys).merge(page));
    let admin = issue(
        keys.manager(),
        NewKey::new(Owner::service("ops"), "ops admin").scopes([Scope::ADMIN]),
    )
    .await;
    (app, admin)
}

async fn get_path(app: &Router, path: &str) -> Reply {
    let req = json_request(Method::GET, path, None, None);
    Reply::read(app.clone().oneshot(req).await.unwrap()).await
}

/// Every answer of the page, files and refusals alike, carries the same
/// hardening headers.
fn assert_secured(reply: &Reply, what: &str) {
    assert_eq!(
        reply.header("content-security-policy"),
        Some(UI_CSP),
        "{what}"
    );
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
}

/// The files the page names in its HTML: each relative, so same-origin.
fn files_named_by(html: &str) -> Vec<String> {
    let mut files = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = &part[..part.find('"').unwrap()];
            assert!(
                !url.contains("//") && !url.contains(':') && !url.starts_with('/'),
                "{url} is not a file beside the page"
            );
            files.push(url.to_owned());
        }
    }
    files
}

/// The page, its script, style sheet and icon are served from the binary
/// under [`UI_CSP`], with their content types; the CSP is the strict one
/// (nothing inline, no eval, this origin only, Trusted Types required);
/// `/ui` redirects to `/ui/` where the page's relative links resolve, and
/// unknown files are 404s with the same headers.
#[tokio::test]
async fn the_page_is_served_from_the_binary_under_a_strict_csp() {
    let keys = Keygate::builder(MemoryStore::new()).prefix("mbk").build();
    let (app, _) = service(&keys, keygate::manage::ui(&keys)).await;

    let redirect = get_path(&app, "/admin/ui").await;
    assert_eq!(redirect.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.header("location"), Some("/admin/ui/"));
    assert_secured(&redirect, "redirect");

    let page = get_path(&app, "/admin/ui/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.content_type(), "text/html; charset=utf-8");
    assert_secured(&page, "page");

    let files = files_named_by(page.text());
    assert_eq!(files, ["app.js", "favicon.svg", "app.css"]);
    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("config.json", "application/json"),
    ] {
        let reply = get_path(&app, &format!("/admin/ui/{file}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{file}");
        assert_eq!(reply.content_type(), kind, "{file}");
        assert_secured(&reply, file);
    }
    let missing = get_path(&app, "/admin/ui/../keys").await;
    assert_ne!(missing.status, StatusCode::OK);
    let missing = get_path(&app, "/admin/ui/no-such-file.js").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_secured(&missing, "404");

    for directive in [
        "default-src 'none'",
        "script-src 'self';",
        "style-src 'self';",
        "img-src 'self';",
        "connect-src 'self';",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ] {
        assert!(UI_CSP.contains(directive), "{directive}");
    }
    for loose in ["unsafe", "data:", "http:", "https:", "*", "blob:"] {
        assert!(!UI_CSP.contains(loose), "{loose}");
    }
}

/// Nothing in the page's files reaches another origin or could run code
/// the CSP exists to stop: no URL with a scheme (the SVG's XML namespace
/// is a name, never fetched), no inline script, style or event handler, no
/// HTML built from strings, no `eval`, and no browser storage a key could
/// be left in.
#[tokio::test]
async fn nothing_in_the_page_references_another_origin_runs_inline_or_stores_keys() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let (app, _) = service(&keys, keygate::manage::ui(&keys)).await;
    let mut all = String::new();
    for file in ["", "app.js", "app.css", "favicon.svg", "config.json"] {
        let reply = get_path(&app, &format!("/admin/ui/{file}")).await;
        let text = reply
            .text()
            .replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for origin in ["http://", "https://", "//cdn", "ws://", "wss://"] {
            assert!(!text.contains(origin), "{file:?} names {origin}");
        }
        all.push_str(&text);
    }

    let html = get_path(&app, "/admin/ui/").await.text().to_owned();
    assert_eq!(html.matches("<script").count(), 1, "one script");
    assert!(html.contains("<script src=\"app.js\" defer></script>"));
    assert!(!html.contains("<style"), "no inline style sheet");
    assert!(!html.contains(" style="), "no style attribute");
    assert!(
        !html
            .split_whitespace()
            .any(|w| w.starts_with("on") && w.contains('=')),
        "no inline event handler"
    );

    let js = get_path(&app, "/admin/ui/app.js").await.text().to_owned();
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "Function(",
        "setTimeout(\"",
        "localStorage.",
        "sessionStorage.",
        "indexedDB.",
        "document.cookie",
        "window.name",
        "caches.",
        "serviceWorker",
    ] {
        assert!(!js.contains(forbidden), "app.js uses {forbidden}");
    }
    assert!(js.contains("textContent"));
    // Calls go beside the page, to the API it is mounted with.
    assert!(js.contains("\"../\" + path"));
    assert!(
        !all.contains("@import") && !all.contains("url("),
        "no CSS fetches"
    );
}

/// `config.json` tells the page how the service's layer reads keys (its
/// first header, else bearer, else its query parameter), the key prefix and
/// the expiry-warning window; and a key sent the way it says is accepted by
/// the API, while the page itself needs no key.
#[tokio::test]
async fn config_json_says_how_to_send_the_key_the_api_accepts() {
    let keys = Keygate::builder(MemoryStore::new()).prefix("mbk").build();
    let (app, admin) = service(&keys, keygate::manage::ui(&keys)).await;
    let config = get_path(&app, "/admin/ui/config.json").await.json();
    assert_eq!(
        config,
        serde_json::json!({
            "sign_in": "api-key",
            "send_key": {"header": "x-api-key"},
            "key_prefix": "mbk",
            "expiry_warning_seconds": 7 * 86_400,
        })
    );
    // The page needs no key; the API behind it does, in that header.
    get_path(&app, "/admin/keys")
        .await
        .problem(StatusCode::UNAUTHORIZED, "missing_key");
    let req = json_request(Method::GET, "/admin/keys", Some(&admin), None);
    let list = Reply::read(app.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(list.status, StatusCode::OK);

    // Another header, and bearer only.
    let keys = Keygate::builder(MemoryStore::new())
        .headers([HeaderName::from_static("x-service-key")])
        .build();
    let (app, _) = service(&keys, keygate::manage::ui(&keys)).await;
    let config = get_path(&app, "/admin/ui/config.json").await.json();
    assert_eq!(
        config["send_key"],
        serde_json::json!({"header": "x-service-key"})
    );
    let keys = Keygate::builder(MemoryStore::new())
        .headers([])
        .bearer(true)
        .build();
    let (app, _) = service(&keys, keygate::manage::ui(&keys)).await;
    let config = get_path(&app, "/admin/ui/config.json").await.json();
    assert_eq!(config["send_key"], serde_json::json!({"bearer": true}));
}

/// Behind the application's session, the page is told to send no key and
/// to rely on the browser's cookies for this origin.
#[tokio::test]
async fn session_mode_is_one_setting() {
    let keys = Keygate::builder(MemoryStore::new()).build();
    let page = Ui::new(&keys).sign_in(UiSignIn::Session).router();
    let (app, _) = service(&keys, page).await;
    let config = get_path(&app, "/admin/ui/config.json").await.json();
    assert_eq!(config["sign_in"], "session");
    let js = get_path(&app, "/admin/ui/app.js").await.text().to_owned();
    assert!(
        js.contains("credentials: config.sign_in === \"session\" ? \"same-origin\" : \"omit\"")
    );
}
