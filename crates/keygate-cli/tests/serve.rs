//! `keygate serve` as a black box: the real binary, its configuration file,
//! requests as a proxy would send them (and as an attacker would), over
//! loopback.

mod support;

use std::{net::SocketAddr, time::Duration};

use support::{Resp, Serve, Site, http};

/// Asks the auth endpoint about `method target`, as Caddy would.
fn ask(at: SocketAddr, method: &str, target: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("X-Forwarded-Method", method), ("X-Forwarded-Uri", target)];
    headers.extend_from_slice(extra);
    http(at, "GET", "/auth", &headers)
}

/// Starts `keygate serve` with `config`, behind Caddy unless it says.
fn serve(site: &Site, config: &str) -> Serve {
    let path = site.dir.path("serve.toml");
    let config = if config.contains("[proxy]") {
        config.to_owned()
    } else {
        format!("{config}\n[proxy]\nkind = \"caddy\"\n")
    };
    std::fs::write(&path, config).expect("write the configuration");
    Serve::start(site, &path, &[])
}

#[test]
fn only_trusted_proxies_are_believed() {
    let site = Site::new("serve_trust");
    let (key, _) = site.key("user:alice", "read,delete", &[]);
    let s = serve(
        &site,
        "[proxy]\nkind = \"caddy\"\ntrusted = [\"10.0.0.0/8\"]\n",
    );
    // The test connects from 127.0.0.1, which is not a trusted proxy: its
    // description of a request is worth nothing, even with a good key.
    let r = ask(s.addr, "GET", "/notes", &[("X-API-Key", &key)]);
    assert_eq!(r.status, 403, "{r:#?}");
    assert_eq!(r.code(), "untrusted_proxy");
    assert!(r.header("x-keygate-key-id").is_none());
    let metrics = http(s.addr, "GET", "/metrics", &[]).body;
    assert!(
        metrics.contains("keygate_decisions_total{outcome=\"untrusted_proxy\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_key_is_judged_on_the_request_the_proxy_describes() {
    let site = Site::new("serve_describe");
    let (key, id) = site.key("user:alice", "read", &[]);
    let s = serve(
        &site,
        "[keys]\nquery = \"api_key\"\n[[routes]]\npath = \"/billing\"\nmethods = [\"GET\"]\nscope = \"billing:read\"\n",
    );
    // The auth request's own method and path do not count.
    let r = ask(s.addr, "DELETE", "/notes/1", &[("X-API-Key", &key)]);
    assert_eq!(r.status, 403, "{r:#?}");
    assert_eq!(r.json()["required_scope"], "delete");
    let r = ask(s.addr, "GET", "/notes", &[("X-API-Key", &key)]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-keygate-key-id"), Some(id.as_str()));
    assert_eq!(r.header("x-keygate-owner"), Some("user:alice"));
    assert_eq!(r.header("x-keygate-key-name"), Some("test key"));
    assert_eq!(r.header("x-keygate-ratelimit-remaining"), Some(""));
    // The key in the original URL's query, as configured.
    let r = ask(s.addr, "GET", &format!("/notes?api_key={key}"), &[]);
    assert_eq!(r.status, 200, "{r:#?}");
    // Routes for some methods only.
    let r = ask(s.addr, "GET", "/billing/2026", &[("X-API-Key", &key)]);
    assert_eq!(r.status, 403, "{r:#?}");
    assert_eq!(r.json()["required_scope"], "billing:read");
    // Upstreams answer HEAD with their GET handler: the GET rule covers it.
    let r = ask(s.addr, "HEAD", "/billing/2026", &[("X-API-Key", &key)]);
    assert_eq!(r.status, 403, "{r:#?}");
    let r = ask(s.addr, "OPTIONS", "/billing/2026", &[("X-API-Key", &key)]);
    assert_eq!(r.status, 200, "OPTIONS has no billing rule: {r:#?}");
}

#[test]
fn descriptions_that_cannot_be_trusted_are_refused() {
    let site = Site::new("serve_hostile");
    let (key, _) = site.key("user:alice", "read", &[]);
    let s = serve(&site, "");
    let k = ("X-API-Key", key.as_str());
    // Missing: the proxy is misconfigured; say so, admit nothing.
    let r = http(s.addr, "GET", "/auth", &[k, ("X-Forwarded-Uri", "/notes")]);
    assert_eq!(
        (r.status, r.code().as_str()),
        (500, "proxy_misconfigured"),
        "{r:#?}"
    );
    let r = http(s.addr, "GET", "/auth", &[k, ("X-Forwarded-Method", "GET")]);
    assert_eq!(
        (r.status, r.code().as_str()),
        (500, "proxy_misconfigured"),
        "{r:#?}"
    );
    // Twice (a client's copy the proxy appended to instead of replacing):
    // which one is true cannot be told.
    for (name, a, b) in [
        ("X-Forwarded-Method", "GET", "DELETE"),
        ("X-Forwarded-Uri", "/notes", "/admin"),
    ] {
        let mut headers = vec![
            k,
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/notes"),
        ];
        headers.retain(|(n, _)| *n != name);
        headers.push((name, a));
        headers.push((name, b));
        let r = http(s.addr, "GET", "/auth", &headers);
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "malformed_request"),
            "{name}: {r:#?}"
        );
    }
    // Another proxy's description headers: a client's, so refused.
    for (name, value) in [("X-Original-Method", "GET"), ("X-Original-URI", "/notes")] {
        let r = ask(s.addr, "DELETE", "/notes", &[k, (name, value)]);
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "malformed_request"),
            "{name}: {r:#?}"
        );
    }
    // Method overrides an upstream might obey after keygate judged the
    // request's own method.
    for (target, header) in [
        ("/notes", Some(("X-HTTP-Method-Override", "DELETE"))),
        ("/notes", Some(("x-http-method", "DELETE"))),
        ("/notes", Some(("X-Method-Override", "DELETE"))),
        ("/notes?_method=DELETE", None),
        ("/notes?a=1&%5Fmethod=DELETE", None),
    ] {
        let mut headers = vec![k];
        headers.extend(header);
        let r = ask(s.addr, "GET", target, &headers);
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "method_override"),
            "{target} {header:?}: {r:#?}"
        );
    }
    // Garbage never panics and never admits.
    let long = format!("/{}", "a/".repeat(4000));
    let percent = format!("/{}", "%25".repeat(2000));
    for (method, target, status) in [
        ("G\u{7f}T", "/notes", 400),
        ("", "/notes", 400),
        ("GET", "", 400),
        ("GET", "notes", 400),
        ("GET", "/a b", 400),
        ("GET", "/%00", 400),
        ("GET", "/%2525252525252561dmin", 400),
        ("GET", "http://[::1", 400),
        ("GET", "*", 400),
        // Long, or percent signs that decode to no escape: plain paths a
        // read key may GET.
        ("GET", long.as_str(), 200),
        ("GET", percent.as_str(), 200),
    ] {
        let r = ask(s.addr, method, target, &[k]);
        assert_eq!(r.status, status, "{method:?} {target:?}: {r:#?}");
    }
    let r = ask(s.addr, "GET", "/notes", &[k]);
    assert_eq!(r.status, 200, "still serving: {}", s.log());
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

#[test]
fn allowlisted_keys_are_judged_by_the_client_address_the_proxy_saw() {
    let site = Site::new("serve_allow");
    let (key, _) = site.key("service:office", "read", &["--allow-ip", "203.0.113.0/24"]);
    let s = serve(&site, "");
    let k = ("X-API-Key", key.as_str());
    let r = ask(
        s.addr,
        "GET",
        "/notes",
        &[k, ("X-Forwarded-For", "203.0.113.7")],
    );
    assert_eq!(r.status, 200, "{r:#?}");
    let r = ask(
        s.addr,
        "GET",
        "/notes",
        &[k, ("X-Forwarded-For", "198.51.100.1")],
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "ip_not_allowed"),
        "{r:#?}"
    );
    // A client that prepends the right address gains nothing: the proxy's
    // own entry (the rightmost) is the one read.
    let r = ask(
        s.addr,
        "GET",
        "/notes",
        &[k, ("X-Forwarded-For", "203.0.113.7, 198.51.100.1")],
    );
    assert_eq!(r.status, 403, "{r:#?}");
    // No forwarded address: the request began at the proxy (loopback),
    // which the allowlist does not hold.
    let r = ask(s.addr, "GET", "/notes", &[k]);
    assert_eq!(
        (r.status, r.code().as_str()),
        (403, "ip_not_allowed"),
        "{r:#?}"
    );
}

#[test]
fn a_revocation_reaches_the_running_server() {
    let site = Site::new("serve_revoke");
    let (key, id) = site.key("user:alice", "read", &[]);
    let s = serve(&site, "");
    let k = ("X-API-Key", key.as_str());
    assert_eq!(ask(s.addr, "GET", "/notes", &[k]).status, 200);
    site.keygate(&["keys", "revoke", &id]);
    // SQLite: other processes' changes are polled every few hundred ms.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = ask(s.addr, "GET", "/notes", &[k]);
        if r.status == 401 {
            assert_eq!(r.code(), "revoked_key");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still admitted: {r:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn operations_endpoints_and_a_graceful_stop_that_keeps_the_usage() {
    let site = Site::new("serve_ops");
    let (key, id) = site.key("user:alice", "read", &[]);
    let s = serve(&site, "");
    assert_eq!(http(s.addr, "GET", "/healthz", &[]).status, 200);
    assert_eq!(http(s.addr, "GET", "/readyz", &[]).status, 200);
    for _ in 0..3 {
        assert_eq!(
            ask(s.addr, "GET", "/notes", &[("X-API-Key", &key)]).status,
            200
        );
    }
    assert_eq!(ask(s.addr, "GET", "/notes", &[]).status, 401);
    let m = http(s.addr, "GET", "/metrics", &[]);
    assert!(
        m.header("content-type")
            .unwrap_or("")
            .contains("openmetrics"),
        "{m:#?}"
    );
    for line in [
        "keygate_decisions_total{outcome=\"admitted\"} 3",
        "keygate_decisions_total{outcome=\"missing_key\"} 1",
        "keygate_cached_keys 1",
        "keygate_auth_duration_seconds_count 4",
    ] {
        assert!(m.body.contains(line), "{line}:\n{}", m.body);
    }
    // One lookup for the key; a second when the change feed's first poll
    // distrusts the cache as it starts, on a slow machine. Never one each.
    let lookups: u64 = m
        .body
        .lines()
        .find_map(|l| l.strip_prefix("keygate_store_lookups_total "))
        .and_then(|n| n.parse().ok())
        .expect("store lookups");
    assert!((1..=2).contains(&lookups), "{}", m.body);
    // The usage flush runs every few seconds; a stop must not wait for it.
    let (status, log) = s.stop();
    assert!(status.success(), "{status:?}\n{log}");
    let usage: serde_json::Value =
        serde_json::from_str(&site.keygate(&["--json", "keys", "usage", &id])).expect("JSON");
    let total: u64 = usage
        .as_array()
        .or_else(|| usage["buckets"].as_array())
        .expect("buckets")
        .iter()
        .map(|b| b["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 3, "{usage:#}\n{log}");
}

#[test]
fn check_prints_the_effective_route_table_and_refuses_mistakes() {
    let site = Site::new("serve_check");
    let config = site.dir.path("serve.toml");
    std::fs::write(
        &config,
        "listen = \"0.0.0.0:9090\"\n[proxy]\nkind = \"nginx\"\n[[routes]]\npath = \"/\"\nscope = \"api\"\n[[routes]]\npath = \"/admin/*\"\nscope = \"admin\"\n[[routes]]\npath = \"/reports\"\nmethods = [\"GET\"]\nscope = \"reports\"\n",
    )
    .expect("write");
    let out = site.keygate(&[
        "serve",
        "--check",
        "--config",
        config.to_str().expect("UTF-8"),
    ]);
    let admin = out.find("/admin/…").expect("the admin rule");
    let root = out.find("needs api").expect("the root rule");
    assert!(admin < root, "most specific first:\n{out}");
    assert!(out.contains("GET,HEAD"), "a GET rule covers HEAD:\n{out}");
    assert!(out.contains("warning: listening on 0.0.0.0:9090"), "{out}");
    for (text, says) in [
        ("listen = \"everywhere\"", "listen"),
        (
            "[[routes]]\npath = \"/a\"\nscope = \"a\"\n[[routes]]\npath = \"/a\"\nscope = \"b\"",
            "overlaps",
        ),
        ("[proxy]\nkind = \"haproxy\"", "proxy.kind"),
        ("", "proxy.kind is not set"),
        (
            "[proxy]\nkind = \"nginx\"\ntrusted = [\"0.0.0.0/0\"]",
            "every address",
        ),
        ("unknown = 1", "unknown field"),
    ] {
        // Each mistake alone: a proxy kind unless the case is about it.
        let body = if text.is_empty() || text.contains("[proxy]") {
            text.to_owned()
        } else {
            format!("{text}\n[proxy]\nkind = \"nginx\"\n")
        };
        std::fs::write(&config, body).expect("write");
        let out = site
            .command(&[
                "serve",
                "--check",
                "--config",
                config.to_str().expect("UTF-8"),
            ])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
    }
}

#[test]
fn quotas_are_shared_by_servers_through_redis() {
    let Some(redis) = keygate_test_support::env::redis_url() else {
        return;
    };
    let site = Site::new("serve_redis");
    let (key, _) = site.key("service:batch", "read", &["--rate-limit", "3/min"]);
    let a = serve(&site, &format!("redis_url = \"{redis}\"\n"));
    let b = serve(&site, &format!("redis_url = \"{redis}\"\n"));
    let k = ("X-API-Key", key.as_str());
    assert_eq!(ask(a.addr, "GET", "/n", &[k]).status, 200);
    assert_eq!(ask(b.addr, "GET", "/n", &[k]).status, 200);
    assert_eq!(ask(a.addr, "GET", "/n", &[k]).status, 200);
    for at in [a.addr, b.addr] {
        let r = ask(at, "GET", "/n", &[k]);
        assert_eq!(
            (r.status, r.code().as_str()),
            (429, "rate_limited"),
            "{r:#?}"
        );
    }
}

#[test]
fn a_revocation_on_postgres_reaches_the_server_at_once() {
    let Some(url) = keygate_test_support::env::postgres_url() else {
        return;
    };
    let site = Site::postgres("serve_pg", &url);
    let (key, id) = site.key("user:alice", "read", &[]);
    let s = serve(&site, "");
    let k = ("X-API-Key", key.as_str());
    assert_eq!(
        ask(s.addr, "GET", "/notes", &[k]).status,
        200,
        "{}",
        s.log()
    );
    site.keygate(&["keys", "revoke", &id]);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = ask(s.addr, "GET", "/notes", &[k]);
        if r.status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still admitted: {r:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A metered key's balance reaches the upstream as an identity header, and
/// its exhaustion is the layer's 429 `usage_exceeded`, told to the client
/// with what is left; a key that is not metered gets the header empty.
#[test]
fn a_metered_keys_balance_is_an_identity_header_and_runs_out() {
    let site = Site::new("serve_credits");
    let (metered, _) = site.key("user:alice", "read", &["--credits", "2"]);
    let (free, _) = site.key("user:bob", "read", &[]);
    let s = serve(&site, "");
    for left in ["1", "0"] {
        let r = ask(s.addr, "GET", "/notes", &[("X-API-Key", &metered)]);
        assert_eq!(r.status, 200, "{r:#?}");
        assert_eq!(r.header("x-keygate-credits-remaining"), Some(left));
    }
    let r = ask(s.addr, "GET", "/notes", &[("X-API-Key", &metered)]);
    assert_eq!(r.status, 429, "{r:#?}");
    assert_eq!(r.code(), "usage_exceeded");
    assert_eq!(r.header("x-credits-remaining"), Some("0"));
    assert!(r.header("x-keygate-credits-remaining").is_none());
    let r = ask(s.addr, "GET", "/notes", &[("X-API-Key", &free)]);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.header("x-keygate-credits-remaining"), Some(""));
    let metrics = http(s.addr, "GET", "/metrics", &[]).body;
    assert!(
        metrics.contains("keygate_decisions_total{outcome=\"usage_exceeded\"} 1"),
        "{metrics}"
    );
}
