//! A bounded pool for Argon2id work.
//!
//! A fixed set of OS threads takes jobs from a bounded queue. When the queue
//! is full the caller is told at once ([`PoolError::Busy`]) instead of
//! waiting, so a login flood cannot starve the async runtime or grow memory
//! without bound; the HTTP layer turns that into 503 with `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Sender, TrySendError};
use rampart_crypto::{Entropy, HashError, PasswordHasher, SecretString, Verification};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("hashing queue is full")]
    Busy,
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("hashing pool stopped")]
    Stopped,
}

enum Job {
    Hash(SecretString, oneshot::Sender<Result<String, HashError>>),
    Verify(
        SecretString,
        String,
        oneshot::Sender<Result<Verification, HashError>>,
    ),
}

#[derive(Clone)]
pub struct HashPool {
    tx: Sender<Job>,
    hasher: PasswordHasher,
    workers: usize,
    completed: Arc<AtomicU64>,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool")
            .field("workers", &self.workers)
            .finish()
    }
}

impl HashPool {
    /// Starts `workers` threads behind a queue of `queue` waiting jobs.
    pub fn start(
        hasher: PasswordHasher,
        entropy: Arc<dyn Entropy>,
        workers: usize,
        queue: usize,
    ) -> Self {
        let workers = workers.max(1);
        let (tx, rx) = bounded::<Job>(queue.max(1));
        let completed = Arc::new(AtomicU64::new(0));
        for i in 0..workers {
            let rx = rx.clone();
            let done = completed.clone();
            let hasher = hasher.clone();
            let entropy = entropy.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    rampart_crypto::keep_argon2_memory_on_this_thread();
                    // Ends when every sender is gone.
                    while let Ok(job) = rx.recv() {
                        // Counted before the reply goes out, so a caller that
                        // has its answer also sees the count.
                        match job {
                            Job::Hash(pw, reply) => {
                                let out = hasher.hash(&pw, entropy.as_ref());
                                done.fetch_add(1, Ordering::SeqCst);
                                let _ = reply.send(out);
                            }
                            Job::Verify(pw, phc, reply) => {
                                let out = hasher.verify(&pw, &phc);
                                done.fetch_add(1, Ordering::SeqCst);
                                let _ = reply.send(out);
                            }
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        Self {
            tx,
            hasher,
            workers,
            completed,
        }
    }

    /// How many hash or verify jobs have finished (for tests and metrics).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, PoolError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash(password, reply))?;
        Ok(rx.await.map_err(|_| PoolError::Stopped)??)
    }

    pub async fn verify(
        &self,
        password: SecretString,
        phc: String,
    ) -> Result<Verification, PoolError> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify(password, phc, reply))?;
        Ok(rx.await.map_err(|_| PoolError::Stopped)??)
    }

    fn submit(&self, job: Job) -> Result<(), PoolError> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Busy,
            TrySendError::Disconnected(_) => PoolError::Stopped,
        })
    }
}

/// Hashing threads run at a lower scheduling priority (nice 10) than the
/// threads serving requests: when both want the CPU, a login flood yields
/// to everything else, yet an idle machine still hashes at full speed.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory-safety preconditions; on Linux,
    // PRIO_PROCESS with who = 0 applies to the calling thread only.
    unsafe {
        let _ = libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_crypto::{Argon2Params, OsEntropy};

    #[tokio::test]
    async fn full_queue_answers_busy_at_once() {
        let hasher = PasswordHasher::new(Argon2Params::MINIMUM).unwrap();
        let pool = HashPool::start(hasher, Arc::new(OsEntropy), 1, 1);
        let mut handles = Vec::new();
        for _ in 0..8 {
            let p = pool.clone();
            handles.push(tokio::spawn(async move {
                p.hash(SecretString::from("x")).await
            }));
        }
        let mut busy = 0;
        let mut ok = 0;
        for h in handles {
            match h.await.unwrap() {
                Err(PoolError::Busy) => busy += 1,
                Ok(_) => ok += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(busy >= 1, "a full queue must refuse work");
        assert!(ok >= 1);
    }
}
