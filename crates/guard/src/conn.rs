//! Who may hold the server's connections: a cap per client address (IPv6
//! by /64), the closing of idle connections under pressure (longest idle
//! first), and an idle timeout that shrinks as the server fills. Free of
//! I/O: the table holds whatever the server uses to reach a connection
//! (`T`), asks it only how long it has been idle, and says which to close.
//!
//! Invariants: `counts` holds, per key, the number of entries attributed to
//! it, so an address never holds more than `per_address` connections; an
//! entry marked closing is not counted toward `max` (it is on its way out),
//! so a new client can take its place at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::net::rate_key;

/// The limits of the connection table.
#[derive(Debug, Clone, Copy)]
pub struct ConnPolicy {
    /// Connections served at once.
    pub max: usize,
    /// Connections one client address (IPv6: one /64) may hold at once.
    pub per_address: usize,
    /// The idle timeout of a keep-alive connection while the server has room.
    pub idle: Duration,
    /// The idle timeout when the server is full.
    pub idle_floor: Duration,
}

/// Requests refused in a row on one connection (429, 403) before the
/// server closes it rather than hold it for a client that gets nothing.
pub const REFUSALS_BEFORE_CLOSE: u32 = 3;

impl ConnPolicy {
    /// The default share of `max` one address may hold: a sixteenth, at
    /// least 8.
    pub fn default_per_address(max: usize) -> usize {
        (max / 16).max(8).min(max)
    }

    /// The idle timeout with `open` connections: the full timeout up to half
    /// of `max`, then falling in step with the room left, down to
    /// `idle_floor` when the server is full.
    pub fn idle_limit(&self, open: usize) -> Duration {
        let half = self.max.div_ceil(2);
        if open <= half || self.idle <= self.idle_floor {
            return self.idle;
        }
        let room = self.max.saturating_sub(open) as u128;
        let span = (self.max - half).max(1) as u128;
        let extra = (self.idle - self.idle_floor).as_millis() * room / span;
        self.idle_floor + Duration::from_millis(extra as u64)
    }
}

/// What the server needs to know of a connection.
pub trait Idle {
    /// How long the connection has had nothing to do, or `None` while a
    /// request is being read or handled.
    fn idle_for(&self) -> Option<Duration>;
}

/// A connection's place in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(u64);

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds `per_address` connections already.
    PerAddress,
    /// The server holds `max` connections and none of them is idle.
    Full,
}

/// An admitted connection, and an idle one to close to make room for it.
#[derive(Debug)]
pub struct Admitted<T> {
    pub id: ConnId,
    pub evict: Option<T>,
}

#[derive(Debug)]
struct Entry<T> {
    key: Option<IpAddr>,
    closing: bool,
    conn: T,
}

/// The open connections, by client address.
#[derive(Debug)]
pub struct ConnTable<T> {
    policy: ConnPolicy,
    entries: HashMap<ConnId, Entry<T>>,
    counts: HashMap<IpAddr, usize>,
    closing: usize,
    next: u64,
}

impl<T: Idle + Clone> ConnTable<T> {
    pub fn new(policy: ConnPolicy) -> Self {
        Self {
            policy,
            entries: HashMap::new(),
            counts: HashMap::new(),
            closing: 0,
            next: 0,
        }
    }

    /// Connections open and not on their way out.
    pub fn open(&self) -> usize {
        self.entries.len() - self.closing
    }

    /// Whether no connection is open, closing or not.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Connections `client`'s address holds (IPv6: its /64).
    pub fn held_by(&self, client: IpAddr) -> usize {
        self.counts.get(&rate_key(client)).copied().unwrap_or(0)
    }

    /// Admits a new connection from `client` (`None`: a trusted proxy,
    /// whose connections count for the client each request names, see
    /// [`ConnTable::attribute`]), which may hold `share` connections (the
    /// policy's `per_address`, or fewer for an address the guard refuses
    /// anyway). When the server is full, the connection idle the longest is
    /// marked closing and returned to be closed.
    pub fn admit(
        &mut self,
        client: Option<IpAddr>,
        share: usize,
        conn: T,
    ) -> Result<Admitted<T>, Refusal> {
        let key = client.map(rate_key);
        if let Some(k) = key {
            if self.counts.get(&k).copied().unwrap_or(0) >= share.min(self.policy.per_address) {
                return Err(Refusal::PerAddress);
            }
        }
        // Connections on their way out still hold sockets: at most `max`
        // of them at once.
        if self.entries.len() >= self.policy.max.saturating_mul(2) {
            return Err(Refusal::Full);
        }
        let mut evict = None;
        if self.open() >= self.policy.max {
            let victim = self
                .entries
                .iter()
                .filter(|(_, e)| !e.closing)
                .filter_map(|(id, e)| e.conn.idle_for().map(|d| (d, *id)))
                .max_by_key(|(d, _)| *d)
                .map(|(_, id)| id)
                .ok_or(Refusal::Full)?;
            evict = self.mark_closing(victim);
        }
        let id = ConnId(self.next);
        self.next += 1;
        if let Some(k) = key {
            *self.counts.entry(k).or_insert(0) += 1;
        }
        self.entries.insert(
            id,
            Entry {
                key,
                closing: false,
                conn,
            },
        );
        Ok(Admitted { id, evict })
    }

    /// Counts the connection for `client` from now on (a trusted proxy's
    /// connection carries requests for the clients it names). `false`, and
    /// nothing changes, when that address already holds its share.
    pub fn attribute(&mut self, id: ConnId, client: IpAddr) -> bool {
        let key = rate_key(client);
        let Some(entry) = self.entries.get(&id) else {
            return true;
        };
        if entry.key == Some(key) {
            return true;
        }
        if self.counts.get(&key).copied().unwrap_or(0) >= self.policy.per_address {
            return false;
        }
        let old = entry.key;
        self.uncount(old);
        *self.counts.entry(key).or_insert(0) += 1;
        if let Some(e) = self.entries.get_mut(&id) {
            e.key = Some(key);
        }
        true
    }

    /// Forgets a closed connection.
    pub fn remove(&mut self, id: ConnId) {
        if let Some(e) = self.entries.remove(&id) {
            if e.closing {
                self.closing -= 1;
            }
            self.uncount(e.key);
        }
    }

    /// Marks a connection closing (the server is closing it for its own
    /// reasons); it stops counting toward `max`.
    pub fn mark_closing(&mut self, id: ConnId) -> Option<T> {
        let e = self.entries.get_mut(&id)?;
        if e.closing {
            return None;
        }
        e.closing = true;
        self.closing += 1;
        Some(e.conn.clone())
    }

    /// The connections idle past the timeout for the table's occupancy,
    /// marked closing, longest idle first; each one closed gives the rest a
    /// longer timeout, so the table is brought down only as far as the
    /// timeout for what is left says. Empty while the server is under half
    /// full (each connection's own watchdog applies the full timeout).
    pub fn reap(&mut self) -> Vec<T> {
        let half = self.policy.max.div_ceil(2);
        if self.open() <= half {
            return Vec::new();
        }
        let mut idle: Vec<(Duration, ConnId)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.closing)
            .filter_map(|(id, e)| e.conn.idle_for().map(|d| (d, *id)))
            .collect();
        idle.sort_unstable_by_key(|(d, _)| std::cmp::Reverse(*d));
        let mut closed = Vec::new();
        for (d, id) in idle {
            if d < self.policy.idle_limit(self.open()) {
                break;
            }
            closed.extend(self.mark_closing(id));
        }
        closed
    }

    fn uncount(&mut self, key: Option<IpAddr>) {
        if let Some(k) = key {
            if let Some(n) = self.counts.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// A connection whose idleness the test sets.
    #[derive(Debug, Clone)]
    struct Fake(Rc<Cell<Option<u64>>>);

    impl Fake {
        fn idle(secs: u64) -> Self {
            Self(Rc::new(Cell::new(Some(secs))))
        }
        fn busy() -> Self {
            Self(Rc::new(Cell::new(None)))
        }
    }

    impl Idle for Fake {
        fn idle_for(&self) -> Option<Duration> {
            self.0.get().map(Duration::from_secs)
        }
    }

    fn policy(max: usize, per_address: usize) -> ConnPolicy {
        ConnPolicy {
            max,
            per_address,
            idle: Duration::from_secs(60),
            idle_floor: Duration::from_secs(1),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let mut t = ConnTable::new(policy(100, 3));
        let a = ip("198.51.100.1");
        let ids: Vec<ConnId> = (0..3)
            .map(|_| t.admit(Some(a), 100, Fake::busy()).unwrap().id)
            .collect();
        assert_eq!(
            t.admit(Some(a), 100, Fake::busy()).unwrap_err(),
            Refusal::PerAddress
        );
        // Another address is not affected.
        assert!(t.admit(Some(ip("198.51.100.2")), 100, Fake::busy()).is_ok());
        t.remove(ids[0]);
        assert!(
            t.admit(Some(a), 100, Fake::busy()).is_ok(),
            "a slot came back"
        );
        assert_eq!(t.held_by(a), 3);
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let mut t = ConnTable::new(policy(100, 2));
        t.admit(Some(ip("2001:db8:1:2::1")), 100, Fake::busy())
            .unwrap();
        t.admit(Some(ip("2001:db8:1:2::2")), 100, Fake::busy())
            .unwrap();
        assert_eq!(
            t.admit(Some(ip("2001:db8:1:2:ffff::9")), 100, Fake::busy())
                .unwrap_err(),
            Refusal::PerAddress
        );
        assert!(t
            .admit(Some(ip("2001:db8:1:3::1")), 100, Fake::busy())
            .is_ok());
    }

    #[test]
    fn a_full_server_closes_the_longest_idle_connection_for_a_new_one() {
        let mut t = ConnTable::new(policy(3, 3));
        let a = ip("198.51.100.1");
        let longest = Fake::idle(50);
        t.admit(Some(a), 100, Fake::idle(5)).unwrap();
        t.admit(Some(a), 100, longest.clone()).unwrap();
        t.admit(Some(ip("198.51.100.3")), 100, Fake::busy())
            .unwrap();
        let admitted = t
            .admit(Some(ip("198.51.100.2")), 100, Fake::busy())
            .unwrap();
        let evicted = admitted.evict.expect("an idle connection closed");
        assert!(Rc::ptr_eq(&evicted.0, &longest.0), "the longest idle");
        assert_eq!(t.open(), 3, "the closing one no longer counts");
        // Nothing idle left but the 5 s one; then nothing at all.
        assert!(t
            .admit(Some(ip("198.51.100.4")), 100, Fake::busy())
            .unwrap()
            .evict
            .is_some());
        assert_eq!(
            t.admit(Some(ip("198.51.100.5")), 100, Fake::busy())
                .unwrap_err(),
            Refusal::Full,
            "busy connections are never closed for a newcomer"
        );
    }

    #[test]
    fn connections_on_their_way_out_are_bounded_too() {
        // Each newcomer to a full table closes an idle one; those still
        // closing hold sockets, so past `max` of them newcomers are refused.
        let mut t = ConnTable::new(policy(2, 100));
        for i in 0..4 {
            let admitted = t
                .admit(Some(ip(&format!("198.51.100.{i}"))), 100, Fake::idle(5))
                .unwrap();
            assert_eq!(admitted.evict.is_some(), i >= 2);
        }
        assert_eq!(
            t.admit(Some(ip("198.51.100.9")), 100, Fake::idle(5))
                .unwrap_err(),
            Refusal::Full
        );
    }

    #[test]
    fn a_proxys_connections_count_for_the_clients_they_carry() {
        let mut t = ConnTable::new(policy(100, 2));
        let (x, y) = (ip("203.0.113.5"), ip("203.0.113.6"));
        let c: Vec<ConnId> = (0..4)
            .map(|_| t.admit(None, 100, Fake::busy()).unwrap().id)
            .collect();
        assert!(t.attribute(c[0], x));
        assert!(t.attribute(c[1], x));
        assert!(t.attribute(c[0], x), "the same client again");
        assert!(!t.attribute(c[2], x), "a third for x is refused");
        assert!(t.attribute(c[2], y));
        // A pooled connection moves to the client it now carries.
        assert!(t.attribute(c[1], y));
        assert_eq!((t.held_by(x), t.held_by(y)), (1, 2));
        assert!(t.attribute(c[3], x));
        t.remove(c[3]);
        assert_eq!(t.held_by(x), 1);
    }

    #[test]
    fn the_idle_timeout_shrinks_as_the_server_fills() {
        let p = policy(1000, 1000);
        assert_eq!(p.idle_limit(0), Duration::from_secs(60));
        assert_eq!(p.idle_limit(500), Duration::from_secs(60));
        assert_eq!(p.idle_limit(750), Duration::from_millis(30_500));
        assert_eq!(p.idle_limit(1000), Duration::from_secs(1));
        assert_eq!(p.idle_limit(5000), Duration::from_secs(1));
        let mut last = p.idle_limit(0);
        for open in 0..=1000 {
            let now = p.idle_limit(open);
            assert!(now <= last, "never grows as connections are added");
            last = now;
        }
    }

    #[test]
    fn under_pressure_idle_connections_past_the_shrunken_timeout_are_closed() {
        let mut t = ConnTable::new(policy(4, 4));
        let a = ip("198.51.100.1");
        t.admit(Some(a), 100, Fake::idle(40)).unwrap();
        assert!(t.reap().is_empty(), "under half full: nothing");
        t.admit(Some(a), 100, Fake::idle(2)).unwrap();
        t.admit(Some(a), 100, Fake::busy()).unwrap();
        // Three of four open: the limit is 30.5 s.
        let closed = t.reap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].idle_for(), Some(Duration::from_secs(40)));
        assert!(t.reap().is_empty(), "marked once");
    }

    #[test]
    fn the_reaper_brings_a_full_table_down_only_as_far_as_the_timeout_says() {
        // Full (4 of 4), all idle past the 1 s floor: closing the longest
        // idle (20 s) leaves 3 open, whose limit is 30.5 s, so the rest stay.
        let mut t = ConnTable::new(policy(4, 4));
        let a = ip("198.51.100.1");
        for secs in [5, 20, 3, 2] {
            t.admit(Some(a), 100, Fake::idle(secs)).unwrap();
        }
        let closed = t.reap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].idle_for(), Some(Duration::from_secs(20)));
        assert_eq!(t.open(), 3);
    }

    #[test]
    fn an_address_may_be_given_a_smaller_share() {
        let mut t = ConnTable::new(policy(100, 64));
        let a = ip("198.51.100.1");
        t.admit(Some(a), 1, Fake::busy()).unwrap();
        assert_eq!(
            t.admit(Some(a), 1, Fake::busy()).unwrap_err(),
            Refusal::PerAddress
        );
        // Never more than the policy's, whatever is asked.
        let b = ip("198.51.100.2");
        for _ in 0..64 {
            t.admit(Some(b), 1000, Fake::busy()).unwrap();
        }
        assert!(t.admit(Some(b), 1000, Fake::busy()).is_err());
    }

    #[test]
    fn the_default_share_is_small() {
        assert_eq!(ConnPolicy::default_per_address(1024), 64);
        assert_eq!(ConnPolicy::default_per_address(50), 8);
        assert_eq!(ConnPolicy::default_per_address(4), 4);
    }
}
