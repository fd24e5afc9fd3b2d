//! Raw in-process Argon2id hash rate with Rampart's library and parameters,
//! on N threads: the reference for the login benchmark.
//!
//! `cargo run --release -p rampart-crypto --example argon2_rate -- [threads] [seconds]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_crypto::{Argon2Params, OsEntropy, PasswordHasher, SecretString};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let params = Argon2Params::MINIMUM;
    let hasher = PasswordHasher::new(params).expect("params");
    let pw = SecretString::from("Quartz-Lantern-97-Ferry");
    let phc = hasher.hash(&pw, &OsEntropy).expect("hash");
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (h, pw, phc, count, stop) = (
                hasher.clone(),
                pw.clone(),
                phc.clone(),
                count.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                // As Rampart's hashing threads do.
                rampart_crypto::keep_argon2_memory_on_this_thread();
                while !stop.load(Ordering::Relaxed) {
                    // A login is one verification.
                    let _ = h.verify(&pw, &phc);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{{\"threads\": {threads}, \"verifications_per_second\": {rate:.2}, \"memory_kib\": {}, \"iterations\": {}, \"parallelism\": {}}}",
        params.memory_kib, params.iterations, params.parallelism
    );
}
