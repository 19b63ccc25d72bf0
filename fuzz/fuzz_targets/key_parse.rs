//! The key parser on arbitrary input, and on real keys with one byte
//! changed or two neighbours swapped (which must always be refused).
#![no_main]

use std::sync::OnceLock;

use keygate::core::{CHECKSUM_LEN, Environment, ID_LEN, KeyFormat};
use keygate_test_support::key::{BASE62, checksum};
use libfuzzer_sys::fuzz_target;

struct World {
    format: KeyFormat,
    key: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let format = KeyFormat::new("kg").unwrap();
        let key = format
            .generate(Environment::Live)
            .unwrap()
            .expose_secret()
            .to_owned();
        World { format, key }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    match data {
        // One byte of a real key replaced.
        [0, at, with] => {
            let mut key = w.key.clone().into_bytes();
            let at = usize::from(*at) % key.len();
            if key[at] == *with {
                return;
            }
            key[at] = *with;
            if let Ok(s) = std::str::from_utf8(&key) {
                assert!(w.format.parse(s).is_err(), "accepted a changed key");
            }
        }
        // Two neighbouring bytes of a real key swapped.
        [1, at] => {
            let mut key = w.key.clone().into_bytes();
            let at = usize::from(*at) % (key.len() - 1);
            if key[at] == key[at + 1] {
                return;
            }
            key.swap(at, at + 1);
            let s = std::str::from_utf8(&key).unwrap();
            assert!(w.format.parse(s).is_err(), "accepted a swapped key");
        }
        // A well-formed key made from the input: always accepted, with the
        // id and environment it was made with.
        [2, env, rest @ ..] if rest.len() >= ID_LEN + 32 => {
            let env = if env & 1 == 0 { "live" } else { "test" };
            let mut key = format!("kg_{env}_").into_bytes();
            key.extend(
                rest[..ID_LEN + 32]
                    .iter()
                    .map(|&b| BASE62[usize::from(b) % 62]),
            );
            let sum = checksum(&key);
            key.extend(sum);
            let s = std::str::from_utf8(&key).unwrap();
            let parsed = w.format.parse(s).expect("a well-formed key");
            assert_eq!(parsed.environment().as_str(), env);
            assert_eq!(parsed.id().as_str().as_bytes(), &key[8..8 + ID_LEN]);
        }
        _ => {
            let Ok(s) = std::str::from_utf8(data) else {
                return;
            };
            if let Ok(parsed) = w.format.parse(s) {
                let b = s.as_bytes();
                assert_eq!(b.len(), w.format.key_len());
                assert!(s.starts_with("kg_live_") || s.starts_with("kg_test_"));
                assert!(b[8..].iter().all(u8::is_ascii_alphanumeric));
                let (signed, sum) = b.split_at(b.len() - CHECKSUM_LEN);
                assert_eq!(checksum(signed), sum);
                assert_eq!(parsed.id().as_str().as_bytes(), &b[8..8 + ID_LEN]);
            }
        }
    }
});
