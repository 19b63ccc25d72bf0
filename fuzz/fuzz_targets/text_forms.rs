//! The other text forms read from clients and configuration: quotas, quota
//! lists, IP allowlist entries, key ids, owners and scopes. Never a panic;
//! whatever is accepted prints to a form that reads back the same.
#![no_main]

use std::time::Duration;

use keygate::core::{KeyId, Owner, Quota, Quotas, Scope, parse_allowed_net};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = s.parse::<Quota>() {
        assert!(q.period() >= Duration::from_millis(1));
        assert!(q.period() <= Duration::from_secs(366 * 86_400));
        assert_eq!(q.to_string().parse::<Quota>(), Ok(q));
        let _ = q.to_governor();
    }
    if let Ok(qs) = s.parse::<Quotas>() {
        assert!((1..=Quotas::MAX).contains(&qs.len()));
        assert_eq!(qs.to_string().parse::<Quotas>(), Ok(qs.clone()));
    }
    if let Ok(qs) = serde_json::from_str::<Quotas>(s) {
        assert_eq!(qs.to_string().parse::<Quotas>(), Ok(qs));
    }
    if let Some(net) = parse_allowed_net(s) {
        assert_eq!(net, net.trunc());
        assert_eq!(parse_allowed_net(&net.to_string()), Some(net));
    }
    if let Ok(id) = s.parse::<KeyId>() {
        assert_eq!(id.to_string(), s);
    }
    if let Ok(owner) = s.parse::<Owner>() {
        assert_eq!(owner.to_string().parse::<Owner>().ok(), Some(owner));
    }
    if let Ok(scope) = s.parse::<Scope>() {
        assert_eq!(scope.as_str().parse::<Scope>().ok(), Some(scope));
    }
});
