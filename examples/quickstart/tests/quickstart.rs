//! The quickstart as a newcomer runs it: started in an empty directory, the
//! keys it prints answer 200, 401, 403 and 429, and its metered key is
//! refused with `usage_exceeded` at its 21st request, also after a restart.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

/// The quickstart's process, stopped however the test ends.
struct Quickstart {
    child: Child,
    addr: String,
    keys: Vec<(String, String)>,
}

impl Quickstart {
    /// Starts the quickstart in `dir` and reads what it prints up to its
    /// curl commands.
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
            .current_dir(dir)
            .env("KEYGATE_ADDR", "127.0.0.1:0")
            .env("KEYGATE_DATABASE_URL", "")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the quickstart starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        // Reads for as long as the quickstart runs, after `start` has
        // stopped listening too: a pipe closed while the quickstart still
        // prints would make its `println!` panic, killing the server under
        // the requests that follow.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut started = Self {
            child,
            addr: String::new(),
            keys: Vec::new(),
        };
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the quickstart prints its address, keys and commands");
            if let Some(rest) = line.strip_prefix("keygate quickstart listening on http://") {
                started.addr = rest.split_whitespace().next().unwrap().to_owned();
            } else if let Some((var, key)) = line.split_once('=')
                && var.starts_with("KEYGATE_")
                && var.ends_with("_KEY")
            {
                started.keys.push((var.to_owned(), key.to_owned()));
            } else if line.starts_with("# 200") {
                break;
            }
        }
        assert!(!started.addr.is_empty(), "no address printed");
        started
    }

    fn key(&self, var: &str) -> &str {
        &self
            .keys
            .iter()
            .find(|(v, _)| v == var)
            .unwrap_or_else(|| panic!("{var} was not printed: {:?}", self.keys))
            .1
    }

    /// Stops it the way Ctrl-C does, and waits.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; the status and the response headers (names in
/// lower case).
fn get(addr: &str, path: &str, key: Option<&str>) -> (u16, Vec<(String, String)>) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let key = key.map_or_else(String::new, |k| format!("X-API-Key: {k}\r\n"));
    // One write: the whole request in one segment.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{key}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            // A server that closes a `Connection: close` exchange may reset
            // it once it has answered: what arrived is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !response.is_empty() => {
                break;
            }
            Err(e) => panic!("reading the answer to GET {path}: {e}"),
        }
    }
    let response = String::from_utf8_lossy(&response);
    let (head, _) = response.split_once("\r\n\r\n").expect("a whole response");
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status.parse().unwrap(), headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn today() -> String {
    // The credits refill at midnight UTC: a run that crosses it sees them
    // whole again.
    let out = Command::new("date").args(["-u", "+%F"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_printed_keys_answer_and_the_metered_key_runs_out_restart_or_not() {
    let dir = std::env::temp_dir().join(format!("keygate-quickstart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let day = today();

    let first = Quickstart::start(&dir);
    let (read, admin, metered) = (
        first.key("KEYGATE_READ_KEY").to_owned(),
        first.key("KEYGATE_ADMIN_KEY").to_owned(),
        first.key("KEYGATE_METERED_KEY").to_owned(),
    );
    let addr = first.addr.clone();
    assert_eq!(get(&addr, "/notes", Some(&read)).0, 200);
    assert_eq!(get(&addr, "/notes", None).0, 401);
    assert_eq!(get(&addr, "/admin/stats", Some(&read)).0, 403);
    assert_eq!(get(&addr, "/admin/stats", Some(&admin)).0, 200);
    assert!(
        get(&addr, "/notes", Some(&read))
            .1
            .iter()
            .all(|(n, _)| n != "x-credits-remaining"),
        "the read key is not metered"
    );
    for left in (0..20).rev() {
        let (status, headers) = get(&addr, "/notes", Some(&metered));
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "x-credits-remaining"),
            Some(left.to_string().as_str())
        );
    }
    let (status, headers) = get(&addr, "/notes", Some(&metered));
    assert_eq!(status, 429, "the 21st request of the day");
    assert_eq!(header(&headers, "x-credits-remaining"), Some("0"));
    let retry: u64 = header(&headers, "retry-after")
        .expect("the refill time")
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    first.stop();

    // A restart neither refunds nor forgets, and reprints no keys.
    let second = Quickstart::start(&dir);
    assert!(second.keys.is_empty(), "{:?}", second.keys);
    let (status, _) = get(&second.addr, "/notes", Some(&metered));
    if today() == day {
        assert_eq!(status, 429, "still refused after the restart");
    } else {
        eprintln!("midnight UTC passed during the test: the credits were refilled");
    }
    assert_eq!(get(&second.addr, "/notes", Some(&read)).0, 200);
    second.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
