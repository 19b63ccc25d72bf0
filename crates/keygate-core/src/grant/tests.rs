use std::time::Duration;

use super::*;

fn q(s: &str) -> Option<Quotas> {
    Some(s.parse().unwrap())
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn grantor() -> KeySettings {
    let mut metadata = Metadata::new();
    metadata.insert("plan".into(), "pro".into());
    KeySettings {
        scopes: Scopes::parse_list("read write keys:manage").unwrap(),
        environment: Environment::Live,
        expires_at: Some(OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1)),
        rate_limit: q("2/s"),
        allowed_ips: nets(&["203.0.113.7/32"]),
        metadata,
    }
}

fn dims(r: Result<(), Vec<GrantViolation>>) -> Vec<GrantDimension> {
    r.err()
        .unwrap_or_default()
        .iter()
        .map(|v| v.dimension)
        .collect()
}

#[test]
fn a_key_may_grant_itself_and_anything_narrower() {
    let g = grantor();
    assert_eq!(may_grant(&g, &g), Ok(()));
    let narrower = KeySettings {
        scopes: Scopes::from([Scope::READ]),
        expires_at: g.expires_at.map(|t| t - time::Duration::MINUTE),
        rate_limit: q("1/s"),
        metadata: Metadata::new(),
        ..g.clone()
    };
    assert_eq!(may_grant(&g, &narrower), Ok(()));
}

#[test]
fn every_wider_dimension_is_refused_and_all_are_reported() {
    use GrantDimension as D;
    let g = grantor();
    let mut metadata = Metadata::new();
    metadata.insert("plan".into(), "enterprise".into());
    let wider = KeySettings {
        scopes: Scopes::parse_list("read admin").unwrap(),
        environment: Environment::Live,
        expires_at: None,
        rate_limit: q("100000/s"),
        allowed_ips: Vec::new(),
        metadata,
    };
    assert_eq!(
        dims(may_grant(&g, &wider)),
        [
            D::Scopes,
            D::Expiry,
            D::RateLimit,
            D::AllowedIps,
            D::Metadata
        ]
    );
    let cases: Vec<(KeySettings, GrantDimension)> = vec![
        (
            KeySettings {
                scopes: Scopes::parse_list("read delete").unwrap(),
                ..g.clone()
            },
            D::Scopes,
        ),
        (
            KeySettings {
                expires_at: g.expires_at.map(|t| t + time::Duration::SECOND),
                ..g.clone()
            },
            D::Expiry,
        ),
        (
            KeySettings {
                rate_limit: None,
                ..g.clone()
            },
            D::RateLimit,
        ),
        (
            KeySettings {
                allowed_ips: nets(&["203.0.113.0/24"]),
                ..g.clone()
            },
            D::AllowedIps,
        ),
        (
            KeySettings {
                allowed_ips: nets(&["203.0.113.7/32", "198.51.100.1/32"]),
                ..g.clone()
            },
            D::AllowedIps,
        ),
    ];
    for (requested, dim) in cases {
        assert_eq!(dims(may_grant(&g, &requested)), [dim], "{requested:?}");
    }
}

#[test]
fn test_keys_grant_test_keys_only() {
    let g = KeySettings {
        environment: Environment::Test,
        ..grantor()
    };
    let live = KeySettings {
        environment: Environment::Live,
        ..g.clone()
    };
    assert_eq!(dims(may_grant(&g, &live)), [GrantDimension::Environment]);
    assert_eq!(may_grant(&g, &g), Ok(()));
}

#[test]
fn quotas_compare_by_burst_and_rate_for_every_grantor_period() {
    // (grantor, child, allowed)
    let table = [
        ("2/s", "2/s", true),
        ("2/s", "1/s", true),
        ("2/s", "3/s", false),
        // Same rate, but a burst of 120 where the grantor has 2.
        ("2/s", "120/min", false),
        ("2/s", "1/min", true),
        // A burst within bounds but a faster rate.
        ("2/s", "2/500ms", false),
        ("2/s", "2/s,1000/d", true),
        // The daily quota must be matched too.
        ("10/s,10000/d", "10/s", false),
        ("10/s,10000/d", "10/s,10000/d", true),
        ("10/s,10000/d", "5/s,5000/d", true),
        // One child quota may bound both: 1/min is slower than either.
        ("10/s,10000/d", "1/min", true),
        ("10000/d", "10000/d,1/s", true),
        ("10000/d", "20000/2d", false),
    ];
    let base = KeySettings {
        allowed_ips: Vec::new(),
        metadata: Metadata::new(),
        expires_at: None,
        ..grantor()
    };
    for (own, child, allowed) in table {
        let g = KeySettings {
            rate_limit: q(own),
            ..base.clone()
        };
        let c = KeySettings {
            rate_limit: q(child),
            ..base.clone()
        };
        assert_eq!(may_grant(&g, &c).is_ok(), allowed, "{own} granting {child}");
    }
    // An unlimited grantor may grant anything, an unlimited child never
    // comes from a limited grantor.
    let unlimited = KeySettings {
        rate_limit: None,
        ..base.clone()
    };
    assert!(may_grant(&unlimited, &base).is_ok());
    assert!(may_grant(&base, &unlimited).is_err());
}

#[test]
fn the_default_quota_stands_in_for_a_missing_one() {
    let mut record_settings = grantor();
    record_settings.rate_limit = None;
    let default: Quotas = "1/s".parse().unwrap();
    let g = grantor(); // 2/s
    let child_default = KeySettings {
        rate_limit: Some(default),
        ..record_settings.clone()
    };
    assert!(may_grant(&g, &child_default).is_ok());
    let child_unlimited = KeySettings {
        rate_limit: None,
        ..record_settings
    };
    assert!(may_grant(&g, &child_unlimited).is_err());
}

#[test]
fn allowlists_nest_across_families_and_mapped_forms() {
    let g = KeySettings {
        allowed_ips: nets(&["10.0.0.0/8", "2001:db8::/32"]),
        ..grantor()
    };
    let ok = KeySettings {
        allowed_ips: nets(&["10.1.0.0/16", "2001:db8:1::/48", "10.2.3.4/32"]),
        ..g.clone()
    };
    assert!(may_grant(&g, &ok).is_ok());
    for wide in [
        "0.0.0.0/0",
        "::/0",
        "::ffff:0:0/96",
        "11.0.0.0/8",
        "2001::/16",
    ] {
        let c = KeySettings {
            allowed_ips: nets(&[wide]),
            ..g.clone()
        };
        let err = may_grant(&g, &c).unwrap_err();
        assert_eq!(err[0].index, Some(0), "{wide}");
    }
    // An unrestricted grantor may grant any list.
    let anywhere = KeySettings {
        allowed_ips: Vec::new(),
        ..grantor()
    };
    assert!(may_grant(&anywhere, &g).is_ok());
}

#[test]
fn metadata_is_passed_on_not_invented() {
    let g = grantor();
    let mut forged = g.clone();
    forged.metadata.insert("tier".into(), "gold".into());
    let err = may_grant(&g, &forged).unwrap_err();
    assert_eq!(err[0].entry.as_deref(), Some("tier"));
    let mut dropped = g.clone();
    dropped.metadata.clear();
    assert!(may_grant(&g, &dropped).is_ok());
}

#[test]
fn admin_grants_everything() {
    let admin = KeySettings {
        scopes: Scopes::from([Scope::ADMIN]),
        ..grantor()
    };
    let anything = KeySettings {
        scopes: Scopes::parse_list("admin billing:write").unwrap(),
        environment: Environment::Live,
        expires_at: None,
        rate_limit: None,
        allowed_ips: Vec::new(),
        metadata: Metadata::new(),
    };
    assert!(may_grant(&admin, &anything).is_ok());
}

#[test]
fn random_settings_never_let_a_child_exceed_its_grantor() {
    // A small deterministic search: for every pair drawn from a pool of
    // settings, a granted child's limits are inside the grantor's in
    // every dimension, checked independently of `may_grant`.
    let quotas = [
        None,
        q("1/s"),
        q("2/s"),
        q("100/min"),
        q("2/s,1000/d"),
        q("10/d"),
    ];
    let expiries = [None, Some(OffsetDateTime::UNIX_EPOCH), g_exp()];
    let ips = [
        nets(&[]),
        nets(&["10.0.0.0/8"]),
        nets(&["10.1.0.0/16"]),
        nets(&["0.0.0.0/0"]),
    ];
    let mut pool = Vec::new();
    for rate_limit in &quotas {
        for expires_at in expiries {
            for allowed_ips in &ips {
                pool.push(KeySettings {
                    scopes: Scopes::from([Scope::READ]),
                    environment: Environment::Live,
                    expires_at,
                    rate_limit: rate_limit.clone(),
                    allowed_ips: allowed_ips.clone(),
                    metadata: Metadata::new(),
                });
            }
        }
    }
    let window = Duration::from_secs(86_400 * 3);
    let admitted = |s: &KeySettings| -> Option<u128> {
        // Most requests over `window`: the tightest quota's bound.
        s.rate_limit.as_ref().map(|qs| {
            qs.iter()
                .map(|q| {
                    u128::from(q.limit())
                        + u128::from(q.limit()) * window.as_nanos() / q.period().as_nanos()
                })
                .min()
                .unwrap_or(u128::MAX)
        })
    };
    for g in &pool {
        for c in &pool {
            if may_grant(g, c).is_err() {
                continue;
            }
            if let Some(limit) = admitted(g) {
                assert!(admitted(c).is_some_and(|n| n <= limit), "{g:?} {c:?}");
            }
            if let Some(at) = g.expires_at {
                assert!(c.expires_at.is_some_and(|c| c <= at));
            }
            if !g.allowed_ips.is_empty() {
                assert!(!c.allowed_ips.is_empty());
                for probe in ["10.1.2.3", "10.9.9.9", "8.8.8.8"] {
                    let ip = probe.parse().unwrap();
                    if crate::record::ip_allowed(&c.allowed_ips, ip) {
                        assert!(crate::record::ip_allowed(&g.allowed_ips, ip));
                    }
                }
            }
        }
    }
}

fn g_exp() -> Option<OffsetDateTime> {
    Some(OffsetDateTime::UNIX_EPOCH + time::Duration::DAY)
}
