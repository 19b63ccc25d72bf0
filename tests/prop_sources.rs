//! Property tests of key extraction through the real layer on an axum
//! router: arbitrary header bytes, query strings and `Authorization`
//! values, repeated and conflicting. The answer is always one a client can
//! act on (200, 400, 401 or 403, never a 5xx or a panic), a request is
//! admitted only when every key it carries is the one valid key, and the
//! inner service never sees the credential once it is stripped.
//!
//! 256 cases per property by default; `PROPTEST_CASES` raises it.

mod common;

use axum::{Json, Router, body::Body, routing};
use common::Reply;
use http::{HeaderValue, Method, Request, StatusCode, header};
use keygate::{
    Keygate,
    core::{Environment, KeyFormat, MemoryStore, NewKey, Owner, Scope},
};
use keygate_test_support::form::{decode, encode};
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestCaseError};
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// One valid key, and the same service built both ways: keys required, and
/// keys optional (requests without one pass as anonymous).
struct World {
    rt: Runtime,
    key: String,
    required: Router,
    optional: Router,
}

impl World {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let keys = Keygate::builder(MemoryStore::new())
            .query_param("api_key")
            .bearer(true)
            .strip_credential(true)
            .build();
        let key = rt.block_on(async {
            keys.manager()
                .create(
                    NewKey::new(Owner::user("u1"), "reader").scopes([Scope::READ, Scope::WRITE]),
                )
                .await
                .expect("create key")
                .key
                .expose_secret()
                .to_owned()
        });
        let routes = || Router::new().route("/echo", routing::any(echo));
        Self {
            key,
            required: routes().layer(keys.layer()),
            optional: routes().layer(keys.layer().optional(true)),
            rt,
        }
    }

    fn send(&self, optional: bool, req: Request<Body>) -> Reply {
        let app = if optional {
            &self.optional
        } else {
            &self.required
        };
        self.rt.block_on(common::send(app, req))
    }
}

/// What the inner service saw.
async fn echo(req: Request<Body>) -> Json<Value> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Json(json!({ "query": req.uri().query(), "headers": headers }))
}

/// A value placed where a key may go.
#[derive(Clone, Debug)]
enum Val {
    /// The valid key.
    Real,
    /// Any other text (a well-formed unknown key, a typo, garbage).
    Text(String),
}

impl Val {
    fn text<'a>(&'a self, key: &'a str) -> &'a str {
        match self {
            Self::Real => key,
            Self::Text(t) => t,
        }
    }
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        3 => Just(Val::Real),
        4 => other_text().prop_map(Val::Text),
    ]
}

/// Text that is not the valid key (it cannot be by chance: the valid key
/// has 190 random bits).
fn other_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Another well-formed key of this application: unknown to the store.
        any::<bool>().prop_map(|live| {
            let env = if live {
                Environment::Live
            } else {
                Environment::Test
            };
            let format = KeyFormat::new("kg").expect("prefix");
            format
                .generate(env)
                .expect("randomness")
                .expose_secret()
                .to_owned()
        }),
        "kg_(live|test)_[A-Za-z0-9]{0,60}",
        "[!-~]{0,60}",
        any::<String>(),
        Just(String::new()),
    ]
}

/// `Authorization` header values.
#[derive(Clone, Debug)]
enum Auth {
    /// `{scheme}{pad}{token}{pad}` with `scheme` a spelling of `Bearer `.
    Bearer {
        scheme: &'static str,
        pad: String,
        token: Val,
    },
    /// A value keygate must leave alone: another scheme, or a bearer token
    /// that is not one of this application's keys.
    Foreign(String),
    /// Raw bytes; whether keygate reads them is not modelled here.
    Raw(Vec<u8>),
}

fn auth() -> impl Strategy<Value = Auth> {
    let bearer_token = prop_oneof![
        2 => Just(Val::Real),
        // Tokens with this application's prefix are taken for its keys.
        1 => "kg_[!-~]{1,60}".prop_map(Val::Text),
    ];
    prop_oneof![
        3 => (select(vec!["Bearer ", "bearer ", "BEARER ", "bEaReR "]), "[ \t]{0,2}", bearer_token)
            .prop_map(|(scheme, pad, token)| Auth::Bearer { scheme, pad, token }),
        2 => prop_oneof![
            "Bearer eyJ[A-Za-z0-9._-]{0,40}",
            "Bearer kg",
            "Bearer kgx_[A-Za-z0-9]{0,20}",
            "Basic [A-Za-z0-9+/=]{0,20}",
            "Token kg_live_[A-Za-z0-9]{0,48}",
            "Bearer\tkg_live_[A-Za-z0-9]{0,48}",
            "Bearerkg_live_[A-Za-z0-9]{0,48}",
        ]
        .prop_map(Auth::Foreign),
        1 => vec(any::<u8>(), 0..60).prop_map(Auth::Raw),
    ]
}

/// A query segment: a name, and a value unless the segment has no `=`.
#[derive(Clone, Debug)]
struct Segment {
    name: &'static str,
    /// Whether `name` decodes to `api_key`.
    ours: bool,
    value: Option<(Val, bool)>,
}

fn segment() -> impl Strategy<Value = Segment> {
    let names = vec![
        ("api_key", true),
        ("api%5Fkey", true),
        ("api%5fkey", true),
        ("%61pi_key", true),
        ("%61%70%69%5F%6B%65%79", true),
        ("API_KEY", false),
        ("api_key2", false),
        ("apikey", false),
        ("api+key", false),
        ("api_key%00", false),
        ("api%20key", false),
        ("q", false),
    ];
    // `(value, encode everything)`: percent-encoding all bytes of the key
    // must not hide it from keygate.
    (
        select(names),
        prop::option::weighted(0.9, (val(), any::<bool>())),
    )
        .prop_map(|((name, ours), value)| Segment { name, ours, value })
}

#[derive(Clone, Debug)]
struct Case {
    optional: bool,
    method: Method,
    headers: Vec<Val>,
    raw_headers: Vec<Vec<u8>>,
    auth: Vec<Auth>,
    query: Vec<Segment>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        select(vec![Method::GET, Method::POST, Method::DELETE]),
        vec(val(), 0..3),
        vec(vec(any::<u8>(), 0..40), 0..2),
        vec(auth(), 0..3),
        vec(segment(), 0..4),
    )
        .prop_map(
            |(optional, method, headers, raw_headers, auth, query)| Case {
                optional,
                method,
                headers,
                raw_headers,
                auth,
                query,
            },
        )
}

/// What keygate must answer, modelled from its documentation rather than
/// its code.
#[derive(Debug, PartialEq)]
enum Expect {
    /// 200 (or 403 for a method the key's scopes do not cover).
    Admit,
    /// 200 without a key, in optional mode.
    Anonymous,
    Missing,
    /// Two different values: 400 `conflicting_keys`.
    Conflict,
    /// One value, not the valid key: 401.
    Refuse,
    /// A value keygate cannot read as text: 401 `malformed_key`, or 400 if
    /// two readable values already differ.
    Unreadable,
    /// Raw `Authorization` bytes, whose reading is not modelled: anything
    /// but a 5xx, and an admission only if the modelled sources alone would
    /// be admitted.
    Unknown {
        admit_ok: bool,
    },
}

/// Builds the request, and what keygate must answer to it.
fn build(case: &Case, key: &str) -> (Request<Body>, Expect) {
    let mut uri = "/echo".to_owned();
    let mut read: Vec<String> = Vec::new();
    let mut unreadable = false;
    let mut unknown = false;
    if !case.query.is_empty() {
        let segments: Vec<String> = case
            .query
            .iter()
            .map(|s| match &s.value {
                None => s.name.to_owned(),
                Some((v, all)) => format!("{}={}", s.name, encode(v.text(key), *all)),
            })
            .collect();
        uri = format!("/echo?{}", segments.join("&"));
        for s in case.query.iter().filter(|s| s.ours) {
            read.push(s.value.as_ref().map_or("", |(v, _)| v.text(key)).to_owned());
        }
    }
    let mut req = Request::builder().method(case.method.clone()).uri(&uri);
    let headers = req.headers_mut().expect("valid so far");
    let mut header_read = Vec::new();
    for v in &case.headers {
        // Values `http` refuses outright (CR, LF, NUL…) cannot be sent.
        if let Ok(value) = HeaderValue::from_bytes(v.text(key).as_bytes()) {
            match value.to_str() {
                Ok(s) => header_read.push(s.to_owned()),
                Err(_) => unreadable = true,
            }
            headers.append("x-api-key", value);
        }
    }
    for raw in &case.raw_headers {
        if let Ok(value) = HeaderValue::from_bytes(raw) {
            match value.to_str() {
                Ok(s) => header_read.push(s.to_owned()),
                Err(_) => unreadable = true,
            }
            headers.append("x-api-key", value);
        }
    }
    for a in &case.auth {
        let bytes = match a {
            Auth::Bearer { scheme, pad, token } => {
                read.push(token.text(key).to_owned());
                format!("{scheme}{pad}{}{pad}", token.text(key)).into_bytes()
            }
            Auth::Foreign(s) => s.clone().into_bytes(),
            Auth::Raw(b) => {
                let Ok(value) = HeaderValue::from_bytes(b) else {
                    continue;
                };
                unknown = true;
                headers.append(header::AUTHORIZATION, value);
                continue;
            }
        };
        let value = HeaderValue::from_bytes(&bytes).expect("generated to be valid");
        headers.append(header::AUTHORIZATION, value);
    }
    let req = req.body(Body::empty()).expect("valid request");
    read.extend(header_read);
    let mut distinct = read.clone();
    distinct.sort();
    distinct.dedup();
    let expect = if unreadable {
        Expect::Unreadable
    } else if distinct.len() > 1 {
        Expect::Conflict
    } else if distinct.is_empty() && case.optional {
        Expect::Anonymous
    } else if distinct.is_empty() {
        Expect::Missing
    } else if distinct[0] == key {
        Expect::Admit
    } else {
        Expect::Refuse
    };
    let expect = if unknown {
        Expect::Unknown {
            admit_ok: matches!(expect, Expect::Admit | Expect::Anonymous),
        }
    } else {
        expect
    };
    (req, expect)
}

fn problem_code(reply: &Reply) -> Result<String, TestCaseError> {
    prop_assert_eq!(reply.content_type(), "application/problem+json");
    let json = reply.json_or_null();
    prop_assert_eq!(
        json["status"].as_u64(),
        Some(u64::from(reply.status.as_u16()))
    );
    json["code"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| TestCaseError::fail(format!("no code in {json}")))
}

/// On admission with a key, the inner service saw no trace of it where
/// keygate reads keys.
fn check_stripped(reply: &Reply, key: &str) -> Result<(), TestCaseError> {
    let json = reply.json_or_null();
    let headers = json["headers"].as_array().cloned().unwrap_or_default();
    for pair in &headers {
        let name = pair[0].as_str().unwrap_or_default();
        let value = pair[1].as_str().unwrap_or_default();
        prop_assert_ne!(name, "x-api-key", "the key header reached the handler");
        prop_assert!(
            !(name == "authorization" && value.contains(key)),
            "the bearer key reached the handler"
        );
    }
    if let Some(query) = json["query"].as_str() {
        for segment in query.split('&') {
            let name = segment.split_once('=').map_or(segment, |(n, _)| n);
            prop_assert_ne!(decode(name), b"api_key".to_vec(), "query {:?}", query);
        }
    }
    Ok(())
}

#[test]
fn every_mix_of_sources_gets_the_documented_answer() {
    let world = World::new();
    common::prop_runner()
        .run(&case(), |case| {
            let (req, expect) = build(&case, &world.key);
            let reply = world.send(case.optional, req);
            let status = reply.status;
            prop_assert!(
                [200, 400, 401, 403].contains(&status.as_u16()),
                "{} for {:?}",
                status,
                expect
            );
            if status == StatusCode::OK {
                prop_assert!(
                    matches!(
                        expect,
                        Expect::Admit | Expect::Anonymous | Expect::Unknown { admit_ok: true }
                    ),
                    "admitted, expected {:?}",
                    expect
                );
                check_stripped(&reply, &world.key)?;
                return Ok(());
            }
            let code = problem_code(&reply)?;
            let code = code.as_str();
            match expect {
                Expect::Admit if case.method == Method::DELETE => {
                    prop_assert_eq!(code, "insufficient_scope");
                }
                Expect::Admit | Expect::Anonymous => {
                    prop_assert!(
                        false,
                        "refused ({}) a request with only the valid key",
                        code
                    );
                }
                Expect::Missing => prop_assert_eq!(code, "missing_key"),
                Expect::Conflict => prop_assert_eq!(code, "conflicting_keys"),
                Expect::Refuse => {
                    prop_assert!(["malformed_key", "invalid_key"].contains(&code), "{}", code);
                }
                Expect::Unreadable => prop_assert!(
                    ["malformed_key", "conflicting_keys"].contains(&code),
                    "{}",
                    code
                ),
                Expect::Unknown { .. } => prop_assert!(
                    [
                        "missing_key",
                        "malformed_key",
                        "invalid_key",
                        "conflicting_keys",
                        "insufficient_scope"
                    ]
                    .contains(&code),
                    "{}",
                    code
                ),
            }
            Ok(())
        })
        .unwrap();
}

/// Raw bytes in the query and in every header keygate reads: whatever
/// `http` lets through gets a 4xx problem, never a 5xx or a panic.
#[test]
fn raw_bytes_in_query_and_headers_never_break_the_layer() {
    let world = World::new();
    let strategy = (
        any::<bool>(),
        vec(any::<u8>(), 0..80),
        vec(
            (
                select(vec!["x-api-key", "authorization"]),
                vec(any::<u8>(), 0..80),
            ),
            0..4,
        ),
    );
    common::prop_runner()
        .run(&strategy, |(optional, query, headers)| {
            let uri = format!("/echo?{}", String::from_utf8_lossy(&query));
            let Ok(uri) = uri.parse::<http::Uri>() else {
                return Ok(());
            };
            let mut req = Request::builder().uri(uri);
            for (name, value) in &headers {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    req = req.header(*name, value);
                }
            }
            let req = req.body(Body::empty()).expect("valid request");
            let reply = world.send(optional, req);
            if reply.status == StatusCode::OK {
                // Only anonymous requests can pass: random bytes are not the key.
                prop_assert!(optional);
                return Ok(());
            }
            prop_assert!(
                [400, 401].contains(&reply.status.as_u16()),
                "{}",
                reply.status
            );
            problem_code(&reply)?;
            Ok(())
        })
        .unwrap();
}
