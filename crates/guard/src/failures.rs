//! What counts toward an address block, and the count itself: failures
//! from one address (IPv6 by /64) within a window; reaching the threshold
//! asks for a block, at most once per settle time (a block takes up to a
//! second to reach every request). Decided here, once: the HTTP layer
//! only reports the answers it gave.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::net::rate_key;

/// What counted toward an address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A failed sign-in, second-factor proof, API key or reset code.
    SignIn,
    /// A connection refused for holding too many.
    Connection,
}

impl Failure {
    /// The failure an answer stands for, by its problem `code`: a wrong
    /// password, second factor or API key. Everything else (a refused
    /// request, a missing session, a bad input) is not a guess.
    pub fn of_answer(code: &str) -> Option<Failure> {
        match code {
            "invalid_credentials"
            | "invalid_mfa_code"
            | "api_key_invalid"
            | "invalid_reset_token"
            | "invalid_verification"
            | "invalid_email_link" => Some(Failure::SignIn),
            _ => None,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Failure::SignIn => "a failed sign-in",
            Failure::Connection => "a connection over the per-address limit",
        }
    }
}

/// Between two automatic blocks of one address, at least this long.
pub const BLOCK_SETTLE_MS: i64 = 5_000;
/// Addresses counted at once; past it the quiet ones are forgotten first.
pub const MAX_FAILURE_KEYS: usize = 100_000;

/// Failures per address: when its window began, how many in it, when it
/// last asked for a block.
#[derive(Debug)]
pub struct FailureCounter {
    threshold: u32,
    window_ms: i64,
    counts: HashMap<IpAddr, (i64, u32, i64)>,
}

impl FailureCounter {
    pub fn new(threshold: u32, window_ms: i64) -> Self {
        Self {
            threshold,
            window_ms,
            counts: HashMap::new(),
        }
    }

    /// Forgets the addresses whose window has passed.
    pub fn forget_quiet(&mut self, now_ms: i64) {
        let window = self.window_ms;
        self.counts
            .retain(|_, (start, _, _)| now_ms - *start < window);
    }

    /// Counts a failure from `ip` at `now_ms`; `true` when it should be
    /// blocked now.
    pub fn count(&mut self, ip: IpAddr, now_ms: i64) -> bool {
        let key = rate_key(ip);
        let window = self.window_ms;
        if self.counts.len() >= MAX_FAILURE_KEYS && !self.counts.contains_key(&key) {
            // Under a spread-out attack, forget the quiet ones first.
            self.counts
                .retain(|_, (start, _, _)| now_ms - *start < window);
            if self.counts.len() >= MAX_FAILURE_KEYS {
                self.counts.clear();
            }
        }
        let e = self.counts.entry(key).or_insert((now_ms, 0, i64::MIN));
        if now_ms - e.0 >= window {
            *e = (now_ms, 0, e.2);
        }
        e.1 += 1;
        if e.1 >= self.threshold && now_ms.saturating_sub(e.2) >= BLOCK_SETTLE_MS {
            *e = (now_ms, 0, now_ms);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wrong_secrets_count() {
        for code in ["invalid_credentials", "invalid_mfa_code", "api_key_invalid"] {
            assert_eq!(Failure::of_answer(code), Some(Failure::SignIn));
        }
        for code in [
            "unauthenticated",
            "invalid_body",
            "rate_limited",
            "request_blocked",
        ] {
            assert_eq!(Failure::of_answer(code), None);
        }
    }

    #[test]
    fn the_threshold_within_the_window_asks_for_one_block_per_settle() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let mut c = FailureCounter::new(3, 60_000);
        assert!(!c.count(ip, 0));
        assert!(!c.count(same_64, 1));
        assert!(c.count(ip, 2), "third failure of the /64");
        for t in 3..5 {
            assert!(!c.count(ip, t));
        }
        assert!(!c.count(ip, 10), "within the settle time");
        // The window restarts after it passes.
        let mut c = FailureCounter::new(3, 1_000);
        c.count(ip, 0);
        c.count(ip, 1);
        assert!(!c.count(ip, 2_000), "an old window does not add up");
    }
}
