//! Property tests of the text forms keygate reads from the outside world:
//! the key format, quotas and IP allowlist entries. Each one is fed
//! arbitrary text (never a panic) and well-formed values (round trips hold).
//!
//! 256 cases per property by default; `PROPTEST_CASES=100000 cargo test
//! -p keygate-core --test properties` runs more.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use keygate_core::{
    CHECKSUM_LEN, Environment, ID_LEN, IpNet, KeyFormat, KeyId, MAX_PREFIX_LEN, ParseError, Quota,
    Quotas, SECRET_LEN, parse_allowed_net,
};
use keygate_test_support::key::{BASE62, checksum_str as checksum};
use proptest::{collection::vec, prelude::*, sample::select};

fn prefix() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-z0-9]{{1,{MAX_PREFIX_LEN}}}")).expect("regex")
}

fn environment() -> impl Strategy<Value = Environment> {
    prop_oneof![Just(Environment::Live), Just(Environment::Test)]
}

/// A key of `format`'s shape built from proptest's randomness (not the OS
/// CSPRNG, so failures shrink and replay), with a correct checksum.
fn key_of(prefix: &str, env: Environment, body: &[u8]) -> String {
    let mut key = format!("{prefix}_{env}_");
    key.extend(
        body.iter()
            .map(|&i| char::from(BASE62[usize::from(i) % 62])),
    );
    let sum = checksum(key.as_bytes());
    key + &sum
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), ID_LEN + SECRET_LEN)
}

/// Text near the key format: right prefixes and separators, the right
/// length give or take, base62 mixed with a few characters that are not.
fn keyish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::string::string_regex("[A-Za-z0-9]{1,50}").expect("regex"),
        2 => select(vec!["kg_", "mbk_", "_live_", "_test_", "live", "test", "_"])
            .prop_map(str::to_owned),
        1 => select(vec!["é", "\u{0}", " ", "-", "\u{1F511}", "\u{ff}", "%"]).prop_map(str::to_owned),
    ];
    let noise = vec(piece, 0..8).prop_map(|parts| parts.concat());
    // Real keys, some with one byte overwritten, so the accepting paths
    // are reached as well as the refusing ones.
    let near = (
        environment(),
        body(),
        any::<prop::sample::Index>(),
        any::<u8>(),
        any::<bool>(),
    )
        .prop_map(|(env, body, at, b, change)| {
            let mut key = key_of("kg", env, &body).into_bytes();
            if change {
                let at = at.index(key.len());
                key[at] = b;
            }
            String::from_utf8_lossy(&key).into_owned()
        });
    prop_oneof![noise, near]
}

proptest! {
    #[test]
    fn any_text_parses_or_is_refused_without_panicking(s in any::<String>(), p in prefix()) {
        let format = KeyFormat::new(p).expect("valid prefix");
        let _ = format.parse(&s);
    }

    /// Whatever the parser accepts has the documented shape and a correct
    /// checksum by an independent computation, and its id is the 10
    /// characters after the environment.
    #[test]
    fn whatever_parses_is_a_well_formed_key(s in keyish(), p in select(vec!["kg", "kgx", "mbk"])) {
        let format = KeyFormat::new(p).expect("valid prefix");
        if let Ok(parsed) = format.parse(&s) {
            prop_assert_eq!(s.len(), format.key_len());
            let head = format!("{p}_{}_", parsed.environment());
            prop_assert!(s.starts_with(&head));
            let body = &s[head.len()..];
            prop_assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
            prop_assert_eq!(parsed.id().to_string(), &body[..ID_LEN]);
            let (signed, sum) = s.split_at(s.len() - CHECKSUM_LEN);
            prop_assert_eq!(checksum(signed.as_bytes()), sum);
            prop_assert_eq!(parsed.expose_secret(), s.as_str());
        }
    }

    #[test]
    fn generated_keys_parse_back(p in prefix(), env in environment()) {
        let format = KeyFormat::new(p.clone()).expect("valid prefix");
        let key = format.generate(env).expect("OS randomness");
        let parsed = format.parse(key.expose_secret()).expect("a generated key parses");
        prop_assert_eq!(parsed.id(), key.id());
        prop_assert_eq!(parsed.environment(), env);
        prop_assert_eq!(key.expose_secret().len(), format.key_len());
        // The redacted form is the public head and nothing of the secret.
        prop_assert_eq!(key.redacted(), format!("{p}_{env}_{}", key.id()));
    }

    #[test]
    fn well_formed_keys_parse_to_their_parts(p in prefix(), env in environment(), body in body()) {
        let format = KeyFormat::new(p).expect("valid prefix");
        let key = key_of(format.prefix(), env, &body);
        let parsed = format.parse(&key).expect("well-formed");
        prop_assert_eq!(parsed.environment(), env);
        let id_at = format.prefix().len() + 6;
        prop_assert_eq!(parsed.id().to_string(), &key[id_at..id_at + ID_LEN]);
    }

    /// Any one character replaced by any other (ASCII or not) makes the
    /// key invalid: CRC32 catches every single-byte change, and its 6-digit
    /// base62 form is one-to-one.
    #[test]
    fn one_changed_character_is_refused(
        env in environment(),
        body in body(),
        at in any::<prop::sample::Index>(),
        with in any::<char>(),
    ) {
        let format = KeyFormat::new("mbk").expect("valid prefix");
        let key = key_of("mbk", env, &body);
        let at = at.index(key.len());
        let old = char::from(key.as_bytes()[at]);
        prop_assume!(with != old);
        let mut changed = key[..at].to_owned();
        changed.push(with);
        changed.push_str(&key[at + 1..]);
        // `test` and `live` are both valid environments, but not by a
        // single character's change.
        prop_assert!(format.parse(&changed).is_err(), "accepted {:?}", changed);
    }

    /// Two neighbouring characters swapped: a burst CRC32 always detects.
    #[test]
    fn swapped_neighbours_are_refused(env in environment(), body in body(), at in any::<prop::sample::Index>()) {
        let format = KeyFormat::new("mbk").expect("valid prefix");
        let key = key_of("mbk", env, &body);
        let at = at.index(key.len() - 1);
        let mut bytes = key.clone().into_bytes();
        prop_assume!(bytes[at] != bytes[at + 1]);
        bytes.swap(at, at + 1);
        let swapped = String::from_utf8(bytes).expect("ascii");
        prop_assert!(format.parse(&swapped).is_err());
    }

    #[test]
    fn a_character_added_or_removed_is_a_length_error(
        env in environment(),
        body in body(),
        at in any::<prop::sample::Index>(),
        extra in any::<char>(),
    ) {
        let format = KeyFormat::new("mbk").expect("valid prefix");
        let key = key_of("mbk", env, &body);
        let at = at.index(key.len());
        let mut shorter = key.clone();
        shorter.remove(at);
        prop_assert_eq!(format.parse(&shorter).unwrap_err(), ParseError::Length);
        let mut longer = key.clone();
        longer.insert(at, extra);
        prop_assert_eq!(format.parse(&longer).unwrap_err(), ParseError::Length);
    }

    /// A key of one application is never a key of another.
    #[test]
    fn keys_of_another_prefix_are_refused(a in prefix(), b in prefix(), env in environment(), body in body()) {
        prop_assume!(a != b);
        let key = key_of(&a, env, &body);
        prop_assert!(KeyFormat::new(b).expect("valid prefix").parse(&key).is_err());
    }

    #[test]
    fn prefixes_are_accepted_exactly_when_documented(p in "\\PC{0,20}") {
        let ok = (1..=MAX_PREFIX_LEN).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        prop_assert_eq!(KeyFormat::new(p).is_ok(), ok);
    }

    #[test]
    fn key_ids_round_trip_and_refuse_anything_else(s in "[A-Za-z0-9_é-]{0,12}") {
        match s.parse::<KeyId>() {
            Ok(id) => {
                prop_assert!(s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric()));
                prop_assert_eq!(id.to_string(), s.clone());
                let json = serde_json::to_string(&id).expect("serialize");
                prop_assert_eq!(serde_json::from_str::<KeyId>(&json).expect("deserialize"), id);
            }
            Err(_) => prop_assert!(s.len() != ID_LEN || !s.bytes().all(|b| b.is_ascii_alphanumeric())),
        }
    }
}

// ---- quotas -------------------------------------------------------------

/// Every period a quota may have: whole milliseconds from 1 ms to 366 days,
/// weighted towards the round ones people write.
fn period_ms() -> impl Strategy<Value = u64> {
    const MAX_MS: u64 = 366 * 86_400_000;
    prop_oneof![
        1..=MAX_MS,
        (1..=366u64).prop_map(|d| d * 86_400_000),
        (1..=8_784u64).prop_map(|h| h * 3_600_000),
        (1..=527_040u64).prop_map(|m| m * 60_000),
        (1..=31_622_400u64).prop_map(|s| s * 1_000),
    ]
}

fn quota() -> impl Strategy<Value = Quota> {
    (1..=u32::MAX, period_ms()).prop_map(|(n, ms)| {
        Quota::new(n, Duration::from_millis(ms)).expect("in range by construction")
    })
}

/// Text near the quota grammar: numbers, units in every spelling, slashes,
/// commas and spaces, with a little noise.
fn quota_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => (0..=u64::MAX).prop_map(|n| n.to_string()),
        4 => (0..=1_000u32).prop_map(|n| n.to_string()),
        3 => select(vec![
            "ms", "s", "sec", "second", "seconds", "m", "min", "minute", "minutes", "h", "hour",
            "hours", "d", "day", "days", "w", "fortnight",
        ])
        .prop_map(str::to_owned),
        3 => select(vec!["/", ",", " ", "\t", "+", "-", "."]).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    vec(piece, 0..12).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn quotas_round_trip_through_their_text_form(q in quota()) {
        let text = q.to_string();
        prop_assert_eq!(text.parse::<Quota>(), Ok(q), "{}", text);
        let json = serde_json::to_string(&q).expect("serialize");
        prop_assert_eq!(serde_json::from_str::<Quota>(&json).expect("deserialize"), q);
    }

    #[test]
    fn quota_lists_round_trip_as_text_and_as_json_lists(qs in vec(quota(), 1..=Quotas::MAX)) {
        let quotas = Quotas::new(qs.clone()).expect("1 to MAX quotas");
        let text = quotas.to_string();
        prop_assert_eq!(text.parse::<Quotas>(), Ok(quotas.clone()), "{}", text);
        let list: Vec<String> = qs.iter().map(ToString::to_string).collect();
        let from_list: Quotas =
            serde_json::from_value(serde_json::json!(list)).expect("a JSON list of quotas");
        prop_assert_eq!(from_list, quotas.clone());
        // A set: sorted by period, no duplicates, every input kept.
        let slice = quotas.as_slice();
        prop_assert!(slice.windows(2).all(|w| (w[0].period(), w[0].limit()) < (w[1].period(), w[1].limit())));
        prop_assert!(qs.iter().all(|q| slice.contains(q)));
    }

    /// Arbitrary text: no panic, and whatever is accepted is in range and
    /// prints to a canonical form that reads back the same.
    #[test]
    fn any_text_is_a_quota_in_range_or_an_error(s in prop_oneof![quota_text(), any::<String>()]) {
        if let Ok(q) = s.parse::<Quota>() {
            prop_assert!(q.limit() >= 1);
            prop_assert!(q.period() >= Duration::from_millis(1));
            prop_assert!(q.period() <= Duration::from_secs(366 * 86_400));
            prop_assert_eq!(q.period().subsec_nanos() % 1_000_000, 0);
            prop_assert_eq!(q.to_string().parse::<Quota>(), Ok(q));
        }
        if let Ok(qs) = s.parse::<Quotas>() {
            prop_assert!((1..=Quotas::MAX).contains(&qs.len()));
            prop_assert_eq!(qs.to_string().parse::<Quotas>(), Ok(qs.clone()));
        }
        let _ = serde_json::from_value::<Quotas>(serde_json::Value::String(s));
    }

    #[test]
    fn quota_text_with_spaces_reads_the_same(q in quota(), pad in "[ \t]{0,3}") {
        let text = q.to_string();
        let (n, per) = text.split_once('/').expect("n/unit");
        let spaced = format!("{pad}{n}{pad}/{pad}{per}{pad}");
        prop_assert_eq!(spaced.parse::<Quota>(), Ok(q));
    }
}

// ---- IP allowlist entries ----------------------------------------------

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        // IPv4-mapped IPv6, which dual-stack sockets report.
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ]
}

fn net() -> impl Strategy<Value = (IpAddr, u8)> {
    ip().prop_flat_map(|ip| {
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        (Just(ip), 0..=max)
    })
}

/// Text near CIDR notation: digits, dots, colons, slashes, hex.
fn cidr_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => (0..=300u32).prop_map(|n| n.to_string()),
        2 => "[0-9a-fA-F]{1,5}",
        3 => select(vec![".", ":", "::", "/", " ", "%", "[", "]", "-"]).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    vec(piece, 0..16).prop_map(|parts| parts.concat())
}

proptest! {
    /// Arbitrary text: no panic; whatever is accepted has no host bits and
    /// reads back from its own display form.
    #[test]
    fn any_text_is_a_network_without_host_bits_or_none(s in prop_oneof![cidr_text(), any::<String>()]) {
        if let Some(net) = parse_allowed_net(&s) {
            prop_assert_eq!(net, net.trunc(), "host bits kept from {:?}", s);
            prop_assert_eq!(parse_allowed_net(&net.to_string()), Some(net));
        }
    }

    #[test]
    fn cidr_entries_round_trip_with_host_bits_cleared(
        (addr, len) in net(),
        pad in "[ \t]{0,2}",
    ) {
        let text = format!("{pad}{addr}/{len}{pad}");
        let net = parse_allowed_net(&text).expect("valid CIDR");
        prop_assert_eq!(net.prefix_len(), len);
        prop_assert_eq!(net, net.trunc());
        // Clearing host bits keeps the address inside the network.
        prop_assert!(net.contains(&addr));
        prop_assert_eq!(parse_allowed_net(&net.to_string()), Some(net));
    }

    #[test]
    fn single_addresses_are_host_networks(addr in ip()) {
        let net = parse_allowed_net(&addr.to_string()).expect("an address");
        prop_assert_eq!(net, IpNet::from(addr));
        prop_assert_eq!(net.prefix_len(), if addr.is_ipv4() { 32 } else { 128 });
    }

    /// Out-of-range prefix lengths are refused, not clamped.
    #[test]
    fn prefix_lengths_past_the_address_size_are_refused(addr in ip(), extra in 1..=300u32) {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        prop_assert_eq!(parse_allowed_net(&format!("{addr}/{}", max + extra)), None);
    }
}
