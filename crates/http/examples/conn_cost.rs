//! The cost of the connection table on the accept path, as JSON, for
//! `bench/run conns`: admitting a connection (per-address count, room
//! check) and giving its place back, on a table already holding `OPEN`
//! connections from `ADDRESSES` addresses; beside it, in the same run, the
//! accept path it replaced (a semaphore permit taken and dropped).
//!
//! Usage: conn_cost [ITERATIONS]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_guard::conn::ConnPolicy;
use rampart_http::conns::Connections;
use rampart_http::idle::Activity;

const OPEN: usize = 1_000;
const ADDRESSES: u32 = 500;

fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xC633_6400 + i)) // 198.51.100.0 onwards
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let conns = Connections::new(ConnPolicy {
        max: 1024,
        per_address: 64,
        idle: Duration::from_secs(60),
        idle_floor: Duration::from_secs(1),
    });
    let held: Vec<_> = (0..OPEN)
        .map(|i| {
            conns
                .admit(
                    Some(addr(i as u32 % ADDRESSES)),
                    usize::MAX,
                    &Activity::new(),
                )
                .expect("room")
        })
        .collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(1024));
    let _held_permits = semaphore.clone().try_acquire_many_owned(OPEN as u32);

    // Batches of 1,000, so the clock's own cost is spread thin; the median
    // batch is reported.
    let batch = 1_000;
    let (mut table, mut permit) = (Vec::new(), Vec::new());
    for round in 0..iterations / batch {
        let t = Instant::now();
        for i in 0..batch {
            let activity = Activity::new();
            let h = conns.admit(
                Some(addr((round * batch + i) as u32 % ADDRESSES)),
                usize::MAX,
                &activity,
            );
            drop(std::hint::black_box(h));
        }
        table.push(t.elapsed().as_nanos() as f64 / batch as f64);
        let t = Instant::now();
        for _ in 0..batch {
            // The old path made the connection's activity too.
            let activity = std::hint::black_box(Activity::new());
            let p = semaphore.clone().try_acquire_owned();
            drop(std::hint::black_box(p));
            drop(activity);
        }
        permit.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    assert_eq!(
        conns.open(),
        OPEN,
        "every admitted connection gave its place back"
    );
    drop(held);
    println!(
        "{{\"admit_release_ns\": {:.1}, \"semaphore_ns\": {:.1}, \"open\": {OPEN}, \"addresses\": {ADDRESSES}}}",
        median(table),
        median(permit)
    );
}
