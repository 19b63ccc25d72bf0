//! The client's address, for IP allowlists: the connection's peer, or what
//! trusted proxies wrote in a forwarding header.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use keygate_core::IpNet;

/// How much of a forwarding header to believe.
#[derive(Clone, Debug)]
pub(crate) struct Forwarded {
    pub(crate) header: HeaderName,
    pub(crate) trust: Trust,
}

/// Which entries of a forwarding header come from proxies we run.
#[derive(Clone, Debug)]
pub(crate) enum Trust {
    /// This many proxies, each appending one entry: the client is the
    /// `hops`-th entry from the right. Fewer entries → unknown.
    Hops(usize),
    /// Proxies at these addresses: the connection must come from one of
    /// them, and the client is the rightmost entry outside them.
    Networks(Vec<IpNet>),
}

impl Forwarded {
    /// The client address, or `None` when it cannot be told (which fails
    /// closed: an allowlisted key is refused).
    pub(crate) fn client(&self, headers: &HeaderMap, connection: Option<IpAddr>) -> Option<IpAddr> {
        // Every instance of the header as one list, read from the right (the
        // entry the nearest proxy appended first); a proxy may append a
        // header line instead of an entry. An unreadable line reads as an
        // entry that is no address.
        let mut from_right = headers
            .get_all(&self.header)
            .iter()
            .rev()
            .flat_map(|value| value.to_str().unwrap_or("").rsplit(','))
            .map(str::trim);
        match &self.trust {
            Trust::Hops(hops) => parse_entry(from_right.nth(hops.checked_sub(1)?)?),
            Trust::Networks(nets) => {
                let trusted = |ip: &IpAddr| nets.iter().any(|n| n.contains(ip));
                // A connection that does not come from our proxy is the
                // client itself, whatever header it sent.
                let connection = connection?;
                if !trusted(&connection) {
                    return Some(connection);
                }
                let mut last = connection;
                for entry in from_right {
                    let ip = parse_entry(entry)?;
                    if !trusted(&ip) {
                        return Some(ip);
                    }
                    last = ip;
                }
                // Every hop is one of ours: the request began inside.
                Some(last)
            }
        }
    }
}

/// The connection's peer address, from whichever server put it in the
/// request's extensions: axum's `ConnectInfo` (or `MockConnectInfo` in
/// tests), tonic's `TcpConnectInfo`, or a plain `SocketAddr`. IPv4-mapped
/// IPv6 is read as IPv4.
pub(crate) fn connection_ip(ext: &http::Extensions) -> Option<IpAddr> {
    connection_node(ext).map(|ip| ip.to_canonical())
}

fn connection_node(ext: &http::Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    {
        use axum::extract::{ConnectInfo, connect_info::MockConnectInfo};
        if let Some(ci) = ext.get::<ConnectInfo<std::net::SocketAddr>>() {
            return Some(ci.0.ip());
        }
        if let Some(mock) = ext.get::<MockConnectInfo<std::net::SocketAddr>>() {
            return Some(mock.0.ip());
        }
    }
    #[cfg(feature = "tonic")]
    if let Some(addr) = ext
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
    {
        return Some(addr.ip());
    }
    ext.get::<std::net::SocketAddr>()
        .map(std::net::SocketAddr::ip)
}

/// One forwarding entry: `203.0.113.7`, `203.0.113.7:443`, `2001:db8::1`,
/// `[2001:db8::1]:443`, or RFC 7239's `for=…` (with `;`-separated
/// parameters and quotes), IPv4-mapped IPv6 read as IPv4. Anything else,
/// including `unknown` and obfuscated identifiers, is no address.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    parse_node(entry).map(|ip| ip.to_canonical())
}

fn parse_node(entry: &str) -> Option<IpAddr> {
    let node = match entry.split(';').map(str::trim).find_map(|pair| {
        pair.get(..4)
            .filter(|k| k.eq_ignore_ascii_case("for="))
            .map(|_| &pair[4..])
    }) {
        Some(node) => node.trim_matches('"'),
        None if entry.contains('=') => return None,
        None => entry,
    };
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse().ok();
    }
    let (ip, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn hops(n: usize) -> Forwarded {
        Forwarded {
            header: HeaderName::from_static("x-forwarded-for"),
            trust: Trust::Hops(n),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn hops_count_from_the_right() {
        let h = headers(&["1.1.1.1, 2.2.2.2", "3.3.3.3"]);
        assert_eq!(hops(1).client(&h, None), ip("3.3.3.3"));
        assert_eq!(hops(2).client(&h, None), ip("2.2.2.2"));
        assert_eq!(hops(3).client(&h, None), ip("1.1.1.1"));
        assert_eq!(hops(4).client(&h, None), None, "fewer entries than hops");
        assert_eq!(hops(0).client(&h, None), None);
        assert_eq!(hops(1).client(&HeaderMap::new(), None), None);
    }

    #[test]
    fn networks_skip_our_own_proxies_from_the_right() {
        let f = Forwarded {
            header: HeaderName::from_static("x-forwarded-for"),
            trust: Trust::Networks(vec!["10.0.0.0/8".parse().unwrap()]),
        };
        let h = headers(&["6.6.6.6, 1.1.1.1, 10.0.0.2"]);
        assert_eq!(f.client(&h, ip("10.0.0.1")), ip("1.1.1.1"));
        // Not from our proxy: the connection is the client.
        assert_eq!(f.client(&h, ip("9.9.9.9")), ip("9.9.9.9"));
        // No connection address: cannot tell.
        assert_eq!(f.client(&h, None), None);
        // Garbage before reaching an outside address: cannot tell.
        assert_eq!(f.client(&headers(&["1.1.1.1, junk"]), ip("10.0.0.1")), None);
        // All inside.
        assert_eq!(
            f.client(&headers(&["10.9.9.9"]), ip("10.0.0.1")),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn entries_in_every_common_shape() {
        for (entry, want) in [
            ("203.0.113.7", ip("203.0.113.7")),
            ("203.0.113.7:443", ip("203.0.113.7")),
            ("2001:db8::1", ip("2001:db8::1")),
            ("[2001:db8::1]:443", ip("2001:db8::1")),
            (
                "for=192.0.2.60;proto=http;by=203.0.113.43",
                ip("192.0.2.60"),
            ),
            (
                "proto=http;For=\"[2001:db8:cafe::17]:4711\"",
                ip("2001:db8:cafe::17"),
            ),
            ("::ffff:10.0.0.1", ip("10.0.0.1")),
            ("[::ffff:10.0.0.1]:80", ip("10.0.0.1")),
            ("for=unknown", None),
            ("for=_hidden", None),
            ("by=1.2.3.4", None),
            ("unknown", None),
            ("", None),
            ("1.2.3.4:99999", None),
            ("1.2.3.4.5", None),
        ] {
            assert_eq!(parse_entry(entry), want, "{entry}");
        }
    }
}
