//! Address lists and the client address behind trusted proxies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// A list of addresses and CIDR ranges, IPv4 and IPv6. IPv4-mapped IPv6
/// addresses are matched as the IPv4 address they carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetList(Vec<IpNet>);

impl NetList {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or
    /// /128). Every entry is checked; the error names the first bad one.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| parse_net(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// One network, in the form the lists and the block API accept.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = if s.contains('/') {
        IpNet::from_str(s).map_err(|_| format!("`{s}` is not an address or CIDR range"))?
    } else {
        let ip = IpAddr::from_str(s)
            .map_err(|_| format!("`{s}` is not an address or CIDR range"))?
            .to_canonical();
        IpNet::from(ip)
    };
    // `10.1.2.3/8` is almost always a typo for `10.0.0.0/8`: refuse it
    // rather than guess which was meant.
    if net.network() != net.addr() {
        return Err(format!(
            "`{s}` has host bits set; did you mean `{}`?",
            net.trunc()
        ));
    }
    Ok(match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net)
            }
            _ => net,
        },
        v4 => v4,
    })
}

/// Which forwarding header the trusted proxies set. Only that one is read:
/// a proxy that appends to `X-Forwarded-For` passes a client's own
/// `Forwarded` through untouched, so reading both would let the client
/// choose its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

/// The client of a request: the TCP peer, unless the peer is a trusted
/// proxy, in which case the proxies' header is read from the right,
/// skipping trusted proxies, and the first untrusted address is the client.
/// A header from an untrusted peer is ignored entirely; a malformed entry
/// (garbage a client prepended) stops the walk at the last address known
/// good. `values` are the header's lines, as bytes: a stray non-ASCII byte
/// spoils only its own entry.
pub fn client_address(
    peer: IpAddr,
    trusted: &NetList,
    header: ForwardedHeader,
    values: &[&[u8]],
) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let text: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let entries = text.iter().flat_map(|h| h.split(','));
    let hops: Vec<Option<IpAddr>> = match header {
        ForwardedHeader::Forwarded => entries.map(forwarded_for).collect(),
        ForwardedHeader::XForwardedFor => entries.map(|s| parse_hop(s.trim())).collect(),
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = ip.to_canonical();
                if !trusted.contains(client) {
                    return client;
                }
            }
            None => return client,
        }
    }
    client
}

fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_hop(v.trim().trim_matches('"'))
    })
}

/// `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`, `[2001:db8::1]:567`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(s) {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return IpAddr::from_str(inner).ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    IpAddr::from_str(host).ok().filter(IpAddr::is_ipv4)
}

/// The key a client is counted under: the address for IPv4, the /64 for
/// IPv6 (one subscriber usually holds a whole /64, so counting single
/// addresses would give them 2^64 budgets).
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(
                seg[0], seg[1], seg[2], seg[3], 0, 0, 0, 0,
            ))
        }
        v4 => v4,
    }
}

/// Networks blocked until a time (milliseconds). Single IPv4 addresses and
/// IPv6 /64s, the unit of automatic blocks and so nearly every entry under
/// attack, are found by hash; other ranges by a scan. A lookup costs the
/// same with ten thousand blocks as with one.
#[derive(Debug, Default)]
pub struct BlockSet {
    by_key: HashMap<IpAddr, i64>,
    ranges: Vec<(IpNet, i64)>,
}

impl BlockSet {
    pub fn new(blocks: impl IntoIterator<Item = (IpNet, i64)>) -> Self {
        let mut set = Self::default();
        for (net, until) in blocks {
            let key = match net {
                IpNet::V4(v4) if v4.prefix_len() == 32 => Some(IpAddr::V4(v4.addr())),
                IpNet::V6(v6) if v6.prefix_len() == 64 => Some(IpAddr::V6(v6.network())),
                _ => None,
            };
            match key {
                Some(k) => {
                    let e = set.by_key.entry(k).or_insert(until);
                    *e = (*e).max(until);
                }
                None => set.ranges.push((net, until)),
            }
        }
        set
    }

    /// How many blocks (by network) the set holds.
    pub fn len(&self) -> usize {
        self.by_key.len() + self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `ip` is inside a block that lasts past `now`.
    pub fn blocks(&self, ip: IpAddr, now: i64) -> bool {
        let ip = ip.to_canonical();
        self.by_key.get(&rate_key(ip)).is_some_and(|u| *u > now)
            || self
                .ranges
                .iter()
                .any(|(net, until)| *until > now && net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sets_find_addresses_64s_and_ranges_until_they_expire() {
        let net = |s: &str| parse_net(s).unwrap();
        let set = BlockSet::new([
            (net("198.51.100.7"), 100),
            (net("198.51.100.7"), 300),
            (net("2001:db8:1:2::/64"), 100),
            (net("2001:db8:9::5"), 100),
            (net("203.0.113.0/24"), 100),
            (net("2001:db8:aa::/48"), 100),
        ]);
        for (addr, until) in [
            ("198.51.100.7", 300),
            ("::ffff:198.51.100.7", 300),
            ("2001:db8:1:2:abcd::1", 100),
            ("2001:db8:9::5", 100),
            ("203.0.113.250", 100),
            ("2001:db8:aa:ff::1", 100),
        ] {
            assert!(set.blocks(ip(addr), until - 1), "{addr}");
            assert!(!set.blocks(ip(addr), until), "{addr} after its end");
        }
        for addr in [
            "198.51.100.8",
            "2001:db8:1:3::1",
            "2001:db8:9::6",
            "203.0.114.1",
        ] {
            assert!(!set.blocks(ip(addr), 0), "{addr}");
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lists_match_v4_v6_and_mapped_addresses() {
        let l = NetList::parse(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]).unwrap();
        assert!(l.contains(ip("10.200.1.1")));
        assert!(!l.contains(ip("11.0.0.1")));
        assert!(l.contains(ip("2001:db8:1::5")));
        assert!(!l.contains(ip("2001:db9::5")));
        assert!(l.contains(ip("192.0.2.7")));
        assert!(!l.contains(ip("192.0.2.8")));
        assert!(l.contains(ip("::ffff:10.1.2.3")), "v4-mapped");
        let mapped = NetList::parse(&["::ffff:10.0.0.0/104"]).unwrap();
        assert!(mapped.contains(ip("10.9.9.9")));
    }

    #[test]
    fn bad_entries_are_refused_with_their_text() {
        assert!(NetList::parse(&["10.0.0.0/33"])
            .unwrap_err()
            .contains("10.0.0.0/33"));
        assert!(NetList::parse(&["example.com"]).is_err());
        let e = NetList::parse(&["10.1.2.3/8"]).unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        use ForwardedHeader::*;
        let trusted = NetList::parse(&["10.0.0.0/8"]).unwrap();
        let none = NetList::default();
        let xff =
            |peer: &str, t: &NetList, v: &[&[u8]]| client_address(ip(peer), t, XForwardedFor, v);
        // An untrusted peer's header is ignored.
        assert_eq!(
            xff("203.0.113.9", &trusted, &[b"1.2.3.4"]),
            ip("203.0.113.9")
        );
        assert_eq!(xff("10.0.0.1", &none, &[b"1.2.3.4"]), ip("10.0.0.1"));
        // Through a trusted proxy: the rightmost untrusted hop. A client
        // that prepends a spoofed address does not get to choose.
        assert_eq!(
            xff("10.0.0.1", &trusted, &[b"6.6.6.6, 198.51.100.4, 10.0.0.2"]),
            ip("198.51.100.4")
        );
        // A non-ASCII byte a client prepends spoils only its own entry.
        assert_eq!(
            xff("10.0.0.1", &trusted, &[b"\xff\xfe, 198.51.100.4"]),
            ip("198.51.100.4")
        );
        assert_eq!(
            client_address(
                ip("10.0.0.1"),
                &trusted,
                Forwarded,
                &[b"for=6.6.6.6, for=\"[2001:db8::7]:443\";proto=https"]
            ),
            ip("2001:db8::7")
        );
        // Only the configured header counts.
        assert_eq!(
            client_address(ip("10.0.0.1"), &trusted, XForwardedFor, &[]),
            ip("10.0.0.1")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(xff("10.0.0.1", &trusted, &[b"junk"]), ip("10.0.0.1"));
        assert_eq!(xff("10.0.0.1", &trusted, &[b"1.2.3.4:80"]), ip("1.2.3.4"));
    }
    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        assert_eq!(rate_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(rate_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
    }
}
