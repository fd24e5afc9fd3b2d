//! Token buckets per client (GCRA, through `governor`).

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// A rate: `per_minute` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    pub fn validate(&self) -> Result<(), String> {
        if self.per_minute == 0 || self.burst == 0 {
            return Err(
                "a rate needs per_minute >= 1 and burst >= 1 (to turn a limit off, leave it out)"
                    .into(),
            );
        }
        Ok(())
    }

    fn quota(&self) -> Quota {
        let per = NonZeroU32::new(self.per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::per_minute(per).allow_burst(burst)
    }
}

/// One bucket per key. Checking a key within its rate is a hash lookup
/// and one compare-and-swap.
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>,
    clock: DefaultClock,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("keys", &self.inner.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self {
            inner: RateLimiter::keyed(rate.quota()),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` within the rate; otherwise how long until the next request
    /// would be let through (at least one second, for `Retry-After`).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.inner.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            wait.max(Duration::from_secs(1))
        })
    }

    /// Forgets buckets that are full again, so memory follows the clients
    /// seen lately, not every client ever seen.
    pub fn forget_idle(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_with_a_wait_and_keys_apart() {
        let l = Limiter::new(Rate {
            per_minute: 6,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(l.check(&"a").is_ok());
        }
        let wait = l.check(&"a").unwrap_err();
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert!(l.check(&"b").is_ok(), "another key has its own bucket");
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn zero_rates_are_refused() {
        assert!(Rate {
            per_minute: 0,
            burst: 1
        }
        .validate()
        .is_err());
        assert!(Rate {
            per_minute: 1,
            burst: 0
        }
        .validate()
        .is_err());
    }
}
