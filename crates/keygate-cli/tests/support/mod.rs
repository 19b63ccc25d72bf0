//! What the `keygate serve` tests share: a database with keys made by the
//! real binary, the server started from a configuration file, an upstream
//! that reports what reached it, and a small HTTP/1.1 client.

#![allow(dead_code, unreachable_pub)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A directory of its own for one test, removed at the end.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "keygate_{name}_{}_{n}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A migrated SQLite database, and the `keygate` binary pointed at it.
pub struct Site {
    pub dir: Dir,
    pub db_url: String,
    /// The PostgreSQL schema, for a site on PostgreSQL.
    pub schema: Option<String>,
}

impl Site {
    pub fn new(name: &str) -> Self {
        let dir = Dir::new(name);
        let db_url = format!("sqlite://{}", dir.path("keys.db").display());
        let site = Self {
            dir,
            db_url,
            schema: None,
        };
        site.keygate(&["migrate"]);
        site
    }

    /// A fresh schema of the PostgreSQL database at `url`.
    pub fn postgres(name: &str, url: &str) -> Self {
        let dir = Dir::new(name);
        let schema = format!(
            "kg_serve_{}",
            dir.0
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
                .rsplit('_')
                .next()
                .unwrap_or("x")
        );
        let site = Self {
            dir,
            db_url: url.to_owned(),
            schema: Some(schema),
        };
        site.keygate(&["migrate"]);
        site
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
        cmd.args(args)
            .env("KEYGATE_DATABASE_URL", &self.db_url)
            .env_remove("KEYGATE_PREFIX")
            .env_remove("KEYGATE_SCHEMA")
            .env_remove("KEYGATE_CONFIG")
            .env_remove("KEYGATE_LISTEN")
            .env_remove("KEYGATE_REDIS_URL");
        if let Some(schema) = &self.schema {
            cmd.env("KEYGATE_SCHEMA", schema);
        }
        cmd
    }

    /// Runs `keygate args`, which must succeed, and returns its stdout.
    pub fn keygate(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("keygate runs");
        assert!(
            out.status.success(),
            "keygate {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// Issues a key for `owner` and returns `(key, id)`.
    pub fn key(&self, owner: &str, scopes: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "--json", "keys", "create", "--owner", owner, "--name", "test key", "--scopes", scopes,
        ];
        args.extend_from_slice(extra);
        let doc: Value = serde_json::from_str(&self.keygate(&args)).expect("JSON");
        let key = doc["key"].as_str().expect("the new key").to_owned();
        let id = doc["id"].as_str().expect("its id").to_owned();
        (key, id)
    }
}

/// A running `keygate serve`; stopped (SIGTERM) when dropped.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `keygate serve --config <file> --listen 127.0.0.1:0` and waits
    /// until it listens.
    pub fn start(site: &Site, config: &Path, extra: &[&str]) -> Self {
        let mut args = vec![
            "serve",
            "--config",
            config.to_str().expect("a UTF-8 path"),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = site
            .command(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("keygate serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("an address"),
            Err(_) => {
                let _ = child.kill();
                panic!("keygate serve did not start:\n{}", log.lock().unwrap());
            }
        };
        Self { child, addr, log }
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for it to exit.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let status = self.terminate();
        // The reader thread may still be copying the last lines.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.log())
    }

    fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().expect("killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An upstream that answers every request 200 with a JSON document of what
/// reached it (method, URI, headers), and remembers how many it saw.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Upstream {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut headers = serde_json::Map::new();
                for (name, value) in req.headers() {
                    let entry = headers
                        .entry(name.as_str().to_owned())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = entry {
                        list.push(
                            String::from_utf8_lossy(value.as_bytes())
                                .into_owned()
                                .into(),
                        );
                    }
                }
                let doc = serde_json::json!({
                    "method": req.method().as_str(),
                    "uri": req.uri().to_string(),
                    "headers": headers,
                });
                ([("content-type", "application/json")], doc.to_string())
            }
        });
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            hits,
            _runtime: runtime,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// The problem+json `code` of a refusal.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }

    /// What the upstream saw of header `name` (its values).
    pub fn upstream_saw(&self, name: &str) -> Vec<String> {
        self.json()["headers"][name.to_ascii_lowercase()]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|s| s.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => parse(&raw),
        // A proxy that refuses the request line at once (nginx, for a `#`
        // in the target) may close with our headers unread, which resets
        // the connection, sometimes before its 400 is read: the request was
        // refused all the same.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && raw.is_empty() => Resp {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
        },
        Err(e) => panic!("read: {e}"),
    }
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A port free right now on 127.0.0.1 (for a proxy that must be told one).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts connections at `addr`.
pub fn wait_for(addr: SocketAddr, what: &str, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The program `name`, if installed. Without it the test is skipped, saying
/// so, unless `CI=true`, where a missing tool fails the run.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed, and CI=true: .ci/run installs it (apt-get install {name})"
        );
        eprintln!(
            "skipped: {name} is not installed (apt-get install {name}); CI=true makes this a failure"
        );
    }
    found
}

/// The repository's file `path` (e.g. `docs/proxies/nginx.conf`).
pub fn repo_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}
