//! How a [`Rejection`] becomes a response: problem+json with the layer's
//! challenge and wording, a gRPC status, or the application's own handler.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use keygate_core::Environment;

use super::{Rejection, ceil_secs};
use crate::{
    Problem, Protocol,
    headers::{insert_credits_header, insert_rate_limit_headers},
};

impl Rejection {
    pub(crate) fn render(&self, ctx: &RenderContext) -> Response<Bytes> {
        match ctx.challenges.prerendered(self) {
            Some(answer) => answer.response(self.status()),
            None => self.render_fresh(ctx),
        }
    }

    /// Builds the whole answer: for refusals with per-request parts, and
    /// once per layer for those [`Prerendered`] keeps.
    fn render_fresh(&self, ctx: &RenderContext) -> Response<Bytes> {
        let problem = Problem::new(
            self.status(),
            self.code(),
            self.detail_with(&ctx.key_sources),
        );
        let problem = match self {
            Self::InsufficientScope { required } => {
                problem.with("required_scope", required.as_str())
            }
            Self::RateLimited { decision } => {
                problem.with("retry_after", ceil_secs(decision.retry_after))
            }
            Self::UsageExceeded {
                remaining,
                cost,
                retry_after,
            } => {
                let problem = problem
                    .with("credits_remaining", *remaining)
                    .with("cost", *cost);
                match retry_after {
                    Some(wait) => problem.with("retry_after", ceil_secs(*wait)),
                    None => problem,
                }
            }
            Self::Unavailable { retry_after } => {
                problem.with("retry_after", ceil_secs(*retry_after))
            }
            _ => problem,
        };
        let mut res = problem.to_response();
        let headers = res.headers_mut();
        match self {
            Self::RateLimited { decision } => {
                headers.insert(header::RETRY_AFTER, ceil_secs(decision.retry_after).into());
                insert_rate_limit_headers(headers, decision);
            }
            Self::UsageExceeded {
                remaining,
                retry_after,
                ..
            } => {
                insert_credits_header(headers, *remaining);
                if let Some(wait) = retry_after {
                    headers.insert(header::RETRY_AFTER, ceil_secs(*wait).into());
                }
            }
            Self::Unavailable { retry_after } => {
                headers.insert(header::RETRY_AFTER, ceil_secs(*retry_after).into());
            }
            _ => {
                if let Some(challenge) = ctx.challenge(self) {
                    headers.insert(header::WWW_AUTHENTICATE, challenge.clone());
                }
            }
        }
        res
    }
}

/// How a layer renders rejections: its challenge and wording, and the
/// application's handler if it set one. Shared by the layer and, through
/// request extensions, by route layers and extractors, so one API answers
/// in one format.
#[derive(Clone)]
pub(crate) struct Renderer {
    pub(crate) ctx: RenderContext,
    pub(crate) handler: Option<crate::RejectionHandler>,
    /// The layer's protocol: a gRPC layer answers every refusal as a gRPC
    /// status, whatever the request looks like.
    pub(crate) protocol: Protocol,
}

impl Default for Renderer {
    /// Renders like [`Rejection::to_response`].
    fn default() -> Self {
        Self {
            ctx: RenderContext::default_ref().clone(),
            handler: None,
            protocol: Protocol::Http,
        }
    }
}

impl Renderer {
    pub(crate) fn render(&self, rejection: &Rejection) -> Response<Bytes> {
        match (self.protocol, &self.handler) {
            (Protocol::Grpc, _) => rejection.to_grpc_response(),
            (_, Some(handler)) => handler(rejection),
            (_, None) => rejection.render(&self.ctx),
        }
    }

    /// Whether this renders exactly like [`Rejection::to_response`].
    pub(crate) fn is_default(&self) -> bool {
        self.protocol == Protocol::Http
            && self.handler.is_none()
            && self.ctx == *RenderContext::default_ref()
    }
}

/// The layer's renderer, carried in request extensions (when it differs
/// from the default) so route-level checks and extractors render
/// rejections the same way as the layer.
#[derive(Clone)]
pub(crate) struct RejectionRenderer(pub(crate) Arc<Renderer>);

impl RejectionRenderer {
    /// Renders with the layer's renderer from `ext`, or the default.
    pub(crate) fn render_from(ext: &http::Extensions, rejection: &Rejection) -> Response<Bytes> {
        Self::render_with(ext.get::<Self>(), rejection)
    }

    /// Renders with `renderer`, or the default.
    pub(crate) fn render_with(renderer: Option<&Self>, rejection: &Rejection) -> Response<Bytes> {
        match renderer {
            Some(r) => r.0.render(rejection),
            None => rejection.to_response(),
        }
    }
}

/// What rendering needs from the layer's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RenderContext {
    /// Where the layer reads keys, in words: "the `X-API-Key` header or
    /// `Authorization: Bearer`". Messages tell callers to send keys there.
    pub(crate) key_sources: Box<str>,
    challenges: Challenges,
}

impl RenderContext {
    pub(crate) fn new(realm: &str, header: &str, key_sources: String) -> Self {
        let quote = |s: &str| s.replace(['"', '\\'], "");
        let params = format!("realm=\"{}\", header=\"{}\"", quote(realm), quote(header));
        Self {
            challenges: Challenges::new(&params, &key_sources),
            key_sources: key_sources.into_boxed_str(),
        }
    }

    /// The rendering of [`Rejection::to_response`], built once.
    pub(crate) fn default_ref() -> &'static Self {
        static DEFAULT: LazyLock<RenderContext> = LazyLock::new(|| {
            RenderContext::new("api", "X-API-Key", "the `X-API-Key` header".to_owned())
        });
        &DEFAULT
    }

    /// The `WWW-Authenticate` challenge for a rejection, if it is a 401.
    pub(crate) fn challenge(&self, rejection: &Rejection) -> Option<&HeaderValue> {
        self.challenges.get(rejection)
    }
}

/// The `WWW-Authenticate` value of each 401, one field per rejection, and
/// the whole answer of the 401s that have no per-request part: built once
/// per layer configuration, so such a refusal only clones a body and a
/// header value (a forged-key flood costs no JSON encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Challenges {
    missing_key: Prerendered,
    malformed_key: Prerendered,
    invalid_key: Prerendered,
    revoked_key: Prerendered,
    expired_key: Prerendered,
    // Its detail names the key's environment: rendered per request.
    wrong_environment: HeaderValue,
}

/// A 401's problem+json body and challenge, rendered once.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Prerendered {
    body: Bytes,
    challenge: HeaderValue,
}

impl Prerendered {
    fn new(rejection: &Rejection, challenge: HeaderValue, key_sources: &str) -> Self {
        let problem = Problem::new(
            rejection.status(),
            rejection.code(),
            rejection.detail_with(key_sources),
        );
        Self {
            body: problem.to_response().into_body(),
            challenge,
        }
    }

    /// The same response [`Rejection::render_fresh`] builds.
    fn response(&self, status: http::StatusCode) -> Response<Bytes> {
        let mut res = Problem::response(status, self.body.clone());
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        res
    }
}

impl Challenges {
    fn new(params: &str, key_sources: &str) -> Self {
        // Only a realm or header name with characters a header value cannot
        // hold fails; then the challenge goes without them.
        let of = |rejection: &Rejection| {
            challenge(params, rejection)
                .or_else(|| challenge("", rejection))
                .unwrap_or_else(|| HeaderValue::from_static("ApiKey"))
        };
        let prerendered =
            |rejection: Rejection| Prerendered::new(&rejection, of(&rejection), key_sources);
        Self {
            missing_key: prerendered(Rejection::MissingKey),
            malformed_key: prerendered(Rejection::MalformedKey),
            invalid_key: prerendered(Rejection::InvalidKey),
            revoked_key: prerendered(Rejection::RevokedKey),
            expired_key: prerendered(Rejection::ExpiredKey),
            wrong_environment: of(&Rejection::WrongEnvironment {
                environment: Environment::Live,
            }),
        }
    }

    /// The answer rendered once for `rejection`, if it has one.
    fn prerendered(&self, rejection: &Rejection) -> Option<&Prerendered> {
        match rejection {
            Rejection::MissingKey => Some(&self.missing_key),
            Rejection::MalformedKey => Some(&self.malformed_key),
            Rejection::InvalidKey => Some(&self.invalid_key),
            Rejection::RevokedKey => Some(&self.revoked_key),
            Rejection::ExpiredKey => Some(&self.expired_key),
            _ => None,
        }
    }

    /// `None` for everything but a 401.
    fn get(&self, rejection: &Rejection) -> Option<&HeaderValue> {
        match rejection {
            Rejection::WrongEnvironment { .. } => Some(&self.wrong_environment),
            _ => self.prerendered(rejection).map(|p| &p.challenge),
        }
    }
}

/// `ApiKey {params}`, adding `error="{code}"` for every 401 but
/// `missing_key`.
fn challenge(params: &str, rejection: &Rejection) -> Option<HeaderValue> {
    let mut value = format!("ApiKey {params}");
    if *rejection != Rejection::MissingKey {
        if !params.is_empty() {
            value.push_str(", ");
        }
        value.push_str("error=\"");
        value.push_str(rejection.code());
        value.push('"');
    }
    HeaderValue::from_str(value.trim_end()).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use keygate_core::{Decision, Quota, Scope};

    use super::*;

    #[test]
    fn a_realm_a_header_cannot_hold_is_left_out_of_the_challenge() {
        let ctx = RenderContext::new("caf\u{e9}\nbar", "X-API-Key", "there".to_owned());
        assert_eq!(ctx.challenge(&Rejection::MissingKey).unwrap(), "ApiKey");
        assert_eq!(
            ctx.challenge(&Rejection::RevokedKey).unwrap(),
            r#"ApiKey error="revoked_key""#
        );
        assert_eq!(ctx.challenge(&Rejection::IpNotAllowed), None);
        let ctx = RenderContext::new(r#"my "notes\ api"#, "X-Notes-Key", "there".to_owned());
        assert_eq!(
            ctx.challenge(&Rejection::MalformedKey).unwrap(),
            r#"ApiKey realm="my notes api", header="X-Notes-Key", error="malformed_key""#
        );
    }

    #[test]
    fn prerendered_answers_are_the_fresh_ones() {
        for ctx in [
            RenderContext::default_ref().clone(),
            RenderContext::new(
                "notes",
                "X-Notes-Key",
                "the `X-Notes-Key` header".to_owned(),
            ),
        ] {
            for r in [
                Rejection::MissingKey,
                Rejection::MalformedKey,
                Rejection::InvalidKey,
                Rejection::RevokedKey,
                Rejection::ExpiredKey,
            ] {
                assert!(ctx.challenges.prerendered(&r).is_some(), "{r}");
                let (kept, fresh) = (r.render(&ctx), r.render_fresh(&ctx));
                assert_eq!(kept.status(), fresh.status(), "{r}");
                assert_eq!(kept.headers(), fresh.headers(), "{r}");
                assert_eq!(kept.body(), fresh.body(), "{r}");
            }
        }
    }

    #[test]
    fn every_case_renders_problem_json() {
        let d = Decision {
            allowed: false,
            quota: Quota::per_second(5),
            remaining: 0,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(200),
        };
        for r in [
            Rejection::MissingKey,
            Rejection::MalformedKey,
            Rejection::ConflictingKeys,
            Rejection::InvalidKey,
            Rejection::RevokedKey,
            Rejection::ExpiredKey,
            Rejection::WrongEnvironment {
                environment: Environment::Test,
            },
            Rejection::InsufficientScope {
                required: Scope::WRITE,
            },
            Rejection::IpNotAllowed,
            Rejection::RateLimited { decision: d },
            Rejection::Unavailable {
                retry_after: Duration::from_secs(1),
            },
            Rejection::LayerMissing,
        ] {
            let res = r.to_response();
            assert_eq!(res.status(), r.status());
            assert_eq!(res.headers()["content-type"], "application/problem+json");
            let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
            assert_eq!(v["code"], r.code());
            assert_eq!(v["status"], r.status().as_u16());
            assert!(!v["detail"].as_str().unwrap().is_empty());
            assert_eq!(
                res.headers().contains_key("www-authenticate"),
                r.status() == StatusCode::UNAUTHORIZED,
                "{r}"
            );
            if let Some(challenge) = res.headers().get("www-authenticate") {
                let challenge = challenge.to_str().unwrap();
                assert!(
                    challenge.starts_with(r#"ApiKey realm="api", header="X-API-Key""#),
                    "{challenge}"
                );
                let error = challenge
                    .split_once(", error=")
                    .map(|(_, e)| e.trim_matches('"'));
                let expected = (r != Rejection::MissingKey).then(|| r.code());
                assert_eq!(
                    error, expected,
                    "the challenge's error is the code: {challenge}"
                );
            }
        }
        let r = Rejection::RateLimited { decision: d };
        assert!(
            r.detail().ends_with("Retry after 1 second."),
            "{}",
            r.detail()
        );
        let slow = Rejection::Unavailable {
            retry_after: Duration::from_millis(2500),
        };
        assert!(
            slow.detail().ends_with("Retry after 3 seconds."),
            "{}",
            slow.detail()
        );
        let res = Rejection::RateLimited { decision: d }.to_response();
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["ratelimit-limit"], "5");
        assert_eq!(res.headers()["ratelimit-remaining"], "0");
        assert_eq!(res.headers()["ratelimit-reset"], "2");
    }
}
