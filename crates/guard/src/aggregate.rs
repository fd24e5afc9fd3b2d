//! Folding repeated events into counts, so an attack cannot flood the
//! event store: the first event of a kind from a source is written at
//! once; repeats within the window are counted and written as one event
//! with the count when the window closes. Nothing is dropped silently:
//! past `max_keys` distinct sources, events are counted under one
//! overflow entry.

use std::collections::HashMap;
use std::hash::Hash;

/// What to do with an event just seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first in its window: write it now.
    First,
    /// A repeat: counted, written later by [`Aggregator::due`].
    Counted,
}

#[derive(Debug)]
struct Entry {
    opened_ms: u64,
    repeats: u64,
    first_ms: u64,
    last_ms: u64,
}

/// Repeats folded into one count: how many, and the first and last time
/// one was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Folded {
    pub repeats: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

impl Folded {
    fn add(&mut self, repeats: u64, first_ms: u64, last_ms: u64) {
        if repeats == 0 {
            return;
        }
        if self.repeats == 0 || first_ms < self.first_ms {
            self.first_ms = first_ms;
        }
        self.last_ms = self.last_ms.max(last_ms);
        self.repeats += repeats;
    }
}

#[derive(Debug)]
pub struct Aggregator<K> {
    window_ms: u64,
    max_keys: usize,
    open: HashMap<K, Entry>,
    /// Closed windows with repeats, replaced before `due` collected them.
    closed: Vec<(K, Folded)>,
    overflow: Folded,
}

impl<K: Hash + Eq + Clone> Aggregator<K> {
    pub fn new(window_ms: u64, max_keys: usize) -> Self {
        Self {
            window_ms,
            max_keys,
            open: HashMap::new(),
            closed: Vec::new(),
            overflow: Folded::default(),
        }
    }

    pub fn seen(&mut self, key: K, now_ms: u64) -> Seen {
        if let Some(e) = self.open.get_mut(&key) {
            if now_ms < e.opened_ms + self.window_ms {
                if e.repeats == 0 {
                    e.first_ms = now_ms;
                }
                e.repeats += 1;
                e.last_ms = now_ms;
                return Seen::Counted;
            }
        }
        if self.open.len() >= self.max_keys && !self.open.contains_key(&key) {
            self.overflow.add(1, now_ms, now_ms);
            return Seen::Counted;
        }
        // A window that closed, or none: open one. A closed window's
        // repeats are kept for `due`.
        if let Some(old) = self.open.insert(
            key.clone(),
            Entry {
                opened_ms: now_ms,
                repeats: 0,
                first_ms: now_ms,
                last_ms: now_ms,
            },
        ) {
            if old.repeats > 0 {
                if self.closed.len() < self.max_keys {
                    self.closed.push((key, old.folded()));
                } else {
                    self.overflow.add(old.repeats, old.first_ms, old.last_ms);
                }
            }
        }
        Seen::First
    }

    /// Windows that have closed with repeats in them, and what they
    /// folded. Closed windows are forgotten. Also returns the overflow:
    /// events of sources past `max_keys`.
    pub fn due(&mut self, now_ms: u64) -> (Vec<(K, Folded)>, Folded) {
        let window = self.window_ms;
        let mut out = std::mem::take(&mut self.closed);
        self.open.retain(|k, e| {
            if now_ms >= e.opened_ms + window {
                if e.repeats > 0 {
                    out.push((k.clone(), e.folded()));
                }
                false
            } else {
                true
            }
        });
        (out, std::mem::take(&mut self.overflow))
    }
}

impl Entry {
    fn folded(&self) -> Folded {
        Folded {
            repeats: self.repeats,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_reported_once_the_window_closes() {
        let mut a = Aggregator::new(1000, 10);
        assert_eq!(a.seen("x", 0), Seen::First);
        for t in 1..=5 {
            assert_eq!(a.seen("x", t * 100), Seen::Counted);
        }
        assert_eq!(a.seen("y", 100), Seen::First);
        assert_eq!(a.due(999), (vec![], Folded::default()));
        let (due, overflow) = a.due(1000);
        assert_eq!(
            due,
            vec![(
                "x",
                Folded {
                    repeats: 5,
                    first_ms: 100,
                    last_ms: 500
                }
            )]
        );
        assert_eq!(overflow.repeats, 0);
        assert_eq!(a.seen("x", 1001), Seen::First, "a new window");
    }

    #[test]
    fn a_window_reopened_before_collection_keeps_its_count() {
        let mut a = Aggregator::new(1000, 10);
        a.seen("x", 0);
        a.seen("x", 10);
        a.seen("x", 20);
        // The window closed at 1000; a new event reopens it before `due`.
        assert_eq!(a.seen("x", 1500), Seen::First);
        let (due, _) = a.due(1600);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.repeats, 2);
        assert_eq!((due[0].1.first_ms, due[0].1.last_ms), (10, 20));
    }

    #[test]
    fn past_the_key_limit_events_are_counted_not_lost() {
        let mut a = Aggregator::new(1000, 2);
        assert_eq!(a.seen(1, 0), Seen::First);
        assert_eq!(a.seen(2, 0), Seen::First);
        assert_eq!(a.seen(3, 0), Seen::Counted);
        assert_eq!(a.seen(4, 5), Seen::Counted);
        let overflow = a.due(10).1;
        assert_eq!(
            (overflow.repeats, overflow.first_ms, overflow.last_ms),
            (2, 0, 5)
        );
        assert_eq!(a.due(10).1.repeats, 0);
    }
}
