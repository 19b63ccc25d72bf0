//! `keygate serve` behind real proxies — nginx (`auth_request`) and Caddy
//! (`forward_auth`) — configured with the files the README shows
//! (`docs/proxies/`), ports changed, in front of an upstream that reports
//! what reached it. Every request goes client → proxy → keygate → upstream
//! over loopback.
//!
//! nginx and Caddy come from Debian's packages (`.ci/run` installs them);
//! without them these tests say they were skipped, and with `CI=true` they
//! fail.

mod support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use support::{Dir, Serve, Site, Upstream, free_port, http, repo_file, tool, wait_for};

/// The documented ports, and what the tests put in their place.
struct Ports {
    keygate: SocketAddr,
    upstream: SocketAddr,
    proxy: u16,
}

impl Ports {
    fn apply(&self, text: &str) -> String {
        text.replace("127.0.0.1:9090", &self.keygate.to_string())
            .replace("127.0.0.1:8080", &self.upstream.to_string())
            .replace("127.0.0.1:8000", &format!("127.0.0.1:{}", self.proxy))
    }
}

/// A proxy process, killed when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Proxy {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(nginx: &std::path::Path, dir: &Dir, ports: &Ports) -> Proxy {
    // The documented server block, inside the least a main configuration
    // needs to run unprivileged in a directory of its own.
    let site = ports.apply(&repo_file("docs/proxies/nginx.conf"));
    let d = dir.0.display();
    let main = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/proxy.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         {site}\n}}\n"
    );
    let conf = dir.path("nginx.conf");
    std::fs::write(&conf, main).expect("write nginx.conf");
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off; master_process off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let proxy = Proxy {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], ports.proxy)),
        log: dir.path("proxy.log"),
    };
    wait_for(proxy.addr, "nginx", || proxy.log());
    proxy
}

fn start_caddy(caddy: &std::path::Path, dir: &Dir, ports: &Ports) -> Proxy {
    // The documented site, after global options that keep Caddy to this
    // directory and off its admin port.
    let site = ports.apply(&repo_file("docs/proxies/Caddyfile"));
    let conf = dir.path("Caddyfile");
    std::fs::write(
        &conf,
        format!("{{\n\tadmin off\n\tauto_https off\n}}\n{site}"),
    )
    .expect("write Caddyfile");
    let log = dir.path("proxy.log");
    let child = Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", &dir.0)
        .env("XDG_DATA_HOME", dir.path("data"))
        .env("XDG_CONFIG_HOME", dir.path("config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("caddy starts");
    let proxy = Proxy {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], ports.proxy)),
        log,
    };
    wait_for(proxy.addr, "caddy", || proxy.log());
    proxy
}

/// The keys the scenario uses, issued by the real CLI.
struct Keys {
    read: String,
    read_id: String,
    quota: String,
    metered: String,
}

fn keys(site: &Site) -> Keys {
    let (read, read_id) = site.key("user:alice", "read", &[]);
    let (quota, _) = site.key("service:batch", "read", &["--rate-limit", "2/min"]);
    let (metered, _) = site.key("service:metered", "read", &["--credits", "2"]);
    Keys {
        read,
        read_id,
        quota,
        metered,
    }
}

/// What a client sees through the proxy, and what reaches the upstream.
fn scenario(proxy: &Proxy, upstream: &Upstream, serve: &Serve, keys: &Keys) {
    let at = proxy.addr;
    let ctx = || format!("proxy log:\n{}\nkeygate log:\n{}", proxy.log(), serve.log());

    // No key: 401 with the challenge and keygate's problem, upstream untouched.
    let r = http(at, "GET", "/notes", &[]);
    assert_eq!(r.status, 401, "{r:#?}\n{}", ctx());
    assert_eq!(r.code(), "missing_key", "{r:#?}");
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/problem+json"),
        "{r:#?}"
    );
    assert!(
        r.header("www-authenticate")
            .unwrap_or("")
            .starts_with("ApiKey"),
        "{r:#?}"
    );
    assert_eq!(upstream.hits(), 0, "a refused request reached the upstream");

    // A read key on GET: the upstream answers, and learns who called.
    let r = http(at, "GET", "/notes?page=2", &[("X-API-Key", &keys.read)]);
    assert_eq!(r.status, 200, "{r:#?}\n{}", ctx());
    assert_eq!(r.json()["uri"], "/notes?page=2");
    assert_eq!(r.upstream_saw("x-keygate-key-id"), [keys.read_id.as_str()]);
    assert_eq!(r.upstream_saw("x-keygate-owner"), ["user:alice"]);
    assert_eq!(r.upstream_saw("x-keygate-scopes"), ["read"]);
    assert_eq!(r.upstream_saw("x-keygate-environment"), ["live"]);
    assert!(
        r.upstream_saw("x-api-key").is_empty(),
        "the key reached the upstream: {r:#?}"
    );
    assert_eq!(upstream.hits(), 1);

    // Identity headers a client sends never reach the upstream: with a
    // valid key they are replaced, without one the request stops at 401.
    let forged = [
        ("X-Keygate-Owner", "user:root"),
        ("X-Keygate-Scopes", "admin"),
        ("x-keygate-key-id", "AAAAAAAAAA"),
        // keygate sends none for a key without a quota (or credits): it
        // must not survive from the client either.
        ("X-Keygate-RateLimit-Remaining", "999999"),
        ("X-Keygate-Credits-Remaining", "999999"),
        // Read as X-Keygate-Owner by frameworks that map `-` and `_` alike.
        ("X_Keygate_Owner", "user:root"),
    ];
    let mut headers = forged.to_vec();
    headers.push(("X-API-Key", &keys.read));
    let r = http(at, "GET", "/notes", &headers);
    assert_eq!(r.status, 200, "{r:#?}");
    assert_eq!(r.upstream_saw("x-keygate-owner"), ["user:alice"], "{r:#?}");
    assert_eq!(r.upstream_saw("x-keygate-scopes"), ["read"], "{r:#?}");
    assert_eq!(
        r.upstream_saw("x-keygate-key-id"),
        [keys.read_id.as_str()],
        "{r:#?}"
    );
    assert!(r.upstream_saw("x_keygate_owner").is_empty(), "{r:#?}");
    for name in [
        "x-keygate-ratelimit-remaining",
        "x-keygate-credits-remaining",
    ] {
        assert!(
            r.upstream_saw(name).iter().all(String::is_empty),
            "{name}: {r:#?}"
        );
    }
    let hits = upstream.hits();
    let r = http(at, "GET", "/notes", &forged);
    assert_eq!(r.status, 401, "{r:#?}");
    assert_eq!(upstream.hits(), hits);

    // The method's scope: a read key may not DELETE, whatever the client
    // claims the method was.
    for claim in [
        &[][..],
        &[("X-Forwarded-Method", "GET"), ("X-Original-Method", "GET")][..],
        &[
            ("X-Forwarded-Uri", "/public"),
            ("X-Original-URI", "/public"),
        ][..],
    ] {
        let mut headers = claim.to_vec();
        headers.push(("X-API-Key", &keys.read));
        let r = http(at, "DELETE", "/notes/1", &headers);
        assert_eq!(r.status, 403, "{claim:?}: {r:#?}\n{}", ctx());
        assert_eq!(r.code(), "insufficient_scope", "{r:#?}");
        assert_eq!(r.json()["required_scope"], "delete");
    }
    // The route table: /admin needs `admin`, however the path is spelled.
    for path in [
        "/admin",
        "/admin/keys",
        "/%61dmin/keys",
        "/admin;x/keys",
        "//admin",
    ] {
        let r = http(at, "GET", path, &[("X-API-Key", &keys.read)]);
        assert_eq!(r.status, 403, "{path}: {r:#?}\n{}", ctx());
        assert_eq!(r.json()["required_scope"], "admin", "{path}");
    }
    // Paths that mean `/notes` to one upstream and `/admin` to another, and
    // method overrides an upstream might obey after keygate judged: refused.
    for (path, headers) in [
        ("/admin/../notes", vec![]),
        ("/admin/..%2fnotes", vec![]),
        ("/admin/%2e%2e/notes", vec![]),
        ("/admin/..;/notes", vec![]),
        ("/admin/..%5cnotes", vec![]),
        ("/notes#/../admin", vec![]),
        ("/notes?_method=DELETE", vec![]),
        ("/notes", vec![("X-HTTP-Method-Override", "DELETE")]),
    ] {
        let mut headers = headers;
        headers.push(("X-API-Key", keys.read.as_str()));
        let r = http(at, "GET", path, &headers);
        // 0: the proxy reset the connection on the request line (see `http`).
        assert!(
            r.status == 400 || (r.status == 0 && path.contains('#')),
            "{path}: {r:#?}\n{}",
            ctx()
        );
    }
    assert_eq!(
        upstream.hits(),
        hits,
        "a refused request reached the upstream"
    );

    // Quota: 2 a minute, then 429 with Retry-After and the RateLimit fields.
    for left in ["1", "0"] {
        let r = http(at, "GET", "/notes", &[("X-API-Key", &keys.quota)]);
        assert_eq!(r.status, 200, "{r:#?}");
        assert_eq!(
            r.upstream_saw("x-keygate-ratelimit-remaining"),
            [left],
            "{r:#?}"
        );
    }
    let r = http(at, "GET", "/notes", &[("X-API-Key", &keys.quota)]);
    assert_eq!(r.status, 429, "{r:#?}\n{}", ctx());
    assert_eq!(r.code(), "rate_limited");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{r:#?}");
    assert_eq!(r.header("ratelimit-remaining"), Some("0"), "{r:#?}");

    // Credits: 2, then 429 usage_exceeded, with what is left; the upstream
    // learns the balance (never a client's figure).
    for left in ["1", "0"] {
        let r = http(
            at,
            "GET",
            "/notes",
            &[
                ("X-API-Key", &keys.metered),
                ("X-Keygate-Credits-Remaining", "999999"),
            ],
        );
        assert_eq!(r.status, 200, "{r:#?}\n{}", ctx());
        assert_eq!(
            r.upstream_saw("x-keygate-credits-remaining"),
            [left],
            "{r:#?}"
        );
    }
    let hits = upstream.hits();
    let r = http(at, "GET", "/notes", &[("X-API-Key", &keys.metered)]);
    assert_eq!(r.status, 429, "{r:#?}\n{}", ctx());
    assert_eq!(r.code(), "usage_exceeded");
    assert_eq!(r.header("x-credits-remaining"), Some("0"), "{r:#?}");
    assert_eq!(
        upstream.hits(),
        hits,
        "an exhausted key reached the upstream"
    );

    // A key that is not one: 401 invalid (no lookup for garbage).
    let r = http(at, "GET", "/notes", &[("X-API-Key", "kg_live_nonsense")]);
    assert_eq!(r.status, 401, "{r:#?}");
    assert_eq!(r.code(), "malformed_key");
}

fn run(kind: &str, start: impl FnOnce(&Dir, &Ports) -> Proxy) {
    let site = Site::new(kind);
    let keys = keys(&site);
    let upstream = Upstream::start();
    // The documented keygate configuration, pointed at the test's database.
    let config = site.dir.path("serve.toml");
    std::fs::write(
        &config,
        repo_file(&format!("docs/proxies/serve-{kind}.toml"))
            .replace("sqlite://keygate.db", &site.db_url),
    )
    .expect("write serve.toml");
    let serve = Serve::start(&site, &config, &[]);
    let ports = Ports {
        keygate: serve.addr,
        upstream: upstream.addr,
        proxy: free_port(),
    };
    let proxy = start(&site.dir, &ports);
    scenario(&proxy, &upstream, &serve, &keys);
}

#[test]
fn nginx_auth_request_in_front_of_an_upstream() {
    let Some(nginx) = tool("nginx") else { return };
    run("nginx", |dir, ports| start_nginx(&nginx, dir, ports));
}

#[test]
fn caddy_forward_auth_in_front_of_an_upstream() {
    let Some(caddy) = tool("caddy") else { return };
    run("caddy", |dir, ports| start_caddy(&caddy, dir, ports));
}

/// The README shows the files these tests run, verbatim.
#[test]
fn the_readme_shows_the_tested_configurations() {
    let readme = repo_file("README.md");
    for file in [
        "docs/proxies/nginx.conf",
        "docs/proxies/Caddyfile",
        "docs/proxies/serve-nginx.toml",
        "docs/proxies/serve-caddy.toml",
    ] {
        assert!(
            readme.contains(repo_file(file).trim_end()),
            "README.md does not show {file} as it is"
        );
    }
}
