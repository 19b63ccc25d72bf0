//! Hostile requests through a real router: they never panic, never answer
//! 500, never admit a wrong key, never hand a stripped key to the inner
//! service, and forwarding headers an attacker writes fail closed.

mod common;

use common::{TestApp, bare, builder, from_addr, issue, issue_scoped, keyed, with_header};
use http::{HeaderName, Method, StatusCode};
use keygate::core::{IpNet, NewKey, Owner, Scope};

#[tokio::test]
async fn hostile_sources_never_500_and_never_admit_a_non_key() {
    let keys = builder().query_param("api_key").bearer(true).build();
    let key = issue_scoped(&keys, [Scope::READ]).await;
    let app = TestApp::new(&keys);
    let long = "k".repeat(200_000);
    let mut reqs = vec![
        with_header(bare(Method::GET, "/echo"), "x-api-key", long.as_bytes()),
        with_header(bare(Method::GET, "/echo"), "authorization", b"Bearer"),
        with_header(bare(Method::GET, "/echo"), "authorization", b"Bearer "),
        with_header(bare(Method::GET, "/echo"), "authorization", b"Bearer kg_"),
        with_header(
            bare(Method::GET, "/echo"),
            "authorization",
            b"Bearer kg_\xff\xfe",
        ),
        with_header(
            bare(Method::GET, "/echo"),
            "authorization",
            b"bEaReR \t kg_x \t",
        ),
        bare(Method::GET, "/echo?api_key=%"),
        bare(Method::GET, "/echo?api_key=%ZZ%"),
        bare(Method::GET, "/echo?api_key=%FF%FE"),
        bare(Method::GET, "/echo?api_key"),
        bare(Method::GET, "/echo?api_key=&api_key="),
        bare(Method::GET, "/echo?=&&&=api_key"),
        bare(
            Method::GET,
            &format!("/echo?api_key={}", key.replace("_", "+")),
        ),
        bare(Method::GET, &format!("/echo?api_key={key}%00")),
        bare(
            Method::GET,
            &format!("/echo?api_key={}", &key[..key.len() - 1]),
        ),
        bare(
            Method::GET,
            &format!("/echo?api%5fkey={key}&api_key={key}x"),
        ),
        with_header(
            bare(Method::GET, &format!("/echo?api_key={key}")),
            "authorization",
            format!("Bearer {key} ").as_bytes(),
        ),
    ];
    // Unicode lookalikes the same byte length as the key.
    let mut cyr = key[..key.len() - 2].to_owned();
    cyr.push('а'); // U+0430, two bytes
    reqs.push(bare(Method::GET, &format!("/echo?api_key={cyr}")));
    for req in reqs {
        let uri = req.uri().to_string();
        let res = app.send(req).await;
        assert_ne!(res.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        // Everything above either carries no usable key or a broken one,
        // except the bearer-with-trailing-space + query pair, which is the
        // same key twice.
        if res.status == StatusCode::OK {
            assert!(uri.starts_with("/echo?api_key=kg_"), "{uri} admitted");
            assert!(!res.text().contains(common::secret_part(&key)), "{uri}");
        }
    }
}

#[tokio::test]
async fn hostile_forwarding_headers_never_500_and_fail_closed() {
    for trust in ["hops1", "hops3", "nets"] {
        let b = builder().trust_forwarded_header(HeaderName::from_static("forwarded"));
        let b = match trust {
            "hops1" => b.trusted_hops(1),
            "hops3" => b.trusted_hops(3),
            _ => b.trusted_proxies(["172.16.0.0/12".parse::<IpNet>().unwrap()]),
        };
        let keys = b.build();
        let key = issue(
            &keys,
            NewKey::new(Owner::service("o"), "o")
                .scopes([Scope::READ])
                .allowed_ips(["10.0.0.0/8".parse::<IpNet>().unwrap()]),
        )
        .await;
        let app = TestApp::new(&keys);
        for value in [
            &b"for=10.0.0.1, for=\"6.6.6.6"[..],
            b"for=\"10.0.0.1, for=6.6.6.6\"",
            b"for=10.0.0.1;for=6.6.6.6",
            b"For=\"[::ffff:10.0.0.1]\"",
            b"for=\xc3\xa9\xc3\xa9",
            b"for=10.0.0.1\x80",
            b",,,,,,,,",
            b"for=",
            b"for=[",
            b"for=[]:",
            b"for=1.2.3.4:",
            b"for=10.0.0.1:0",
            b"for=\"\"",
        ] {
            // What our proxies append after the client's own claims.
            let (appended, peer): (&[u8], &str) = match trust {
                "hops3" => (
                    b", for=6.6.6.6, for=172.16.0.1, for=172.16.0.2",
                    "172.16.0.3:1",
                ),
                // One proxy, counted (`hops1`) or by network.
                _ => (b", for=6.6.6.6", "172.16.0.1:1"),
            };
            let line = [value, appended].concat();
            let res = app
                .send(from_addr(
                    with_header(keyed(Method::GET, "/notes", &key), "forwarded", &line),
                    peer,
                ))
                .await;
            assert_ne!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_ne!(
                res.status,
                StatusCode::OK,
                "{trust}: {:?} admitted from 6.6.6.6",
                String::from_utf8_lossy(value)
            );
        }
    }
}

#[tokio::test]
async fn unusual_methods_need_admin_and_head_options_need_read() {
    let keys = builder().build();
    let read = issue_scoped(&keys, [Scope::READ]).await;
    let write = issue_scoped(&keys, [Scope::WRITE, Scope::DELETE]).await;
    let app = TestApp::new(&keys);
    for m in ["TRACE", "CONNECT", "PURGE", "get", "Get", "PROPFIND", "X"] {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        for k in [&read, &write] {
            let res = app.send(keyed(m.clone(), "/any", k)).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{m}");
        }
    }
    for m in [Method::HEAD, Method::OPTIONS] {
        let res = app.send(keyed(m.clone(), "/any", &write)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{m}");
        app.send(keyed(m, "/any", &read)).await.assert_ok();
    }
}
