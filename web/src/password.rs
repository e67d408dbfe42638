//! Password hashing with Argon2id, off the async runtime's threads, bounded.
//!
//! Every Argon2 run needs its whole memory cost (19 MiB by default) at once. Run freely, a
//! burst of failed sign-ins made one such block per blocking thread, and glibc kept them after
//! the burst (its mmap threshold rises past 19 MiB after the first free, so later blocks come
//! from per-thread arenas that are never given back): 128 concurrent attempts left the process
//! at 1.6 GB idle. So at most `concurrency` runs happen at once (the number of CPUs by
//! default: more would only queue inside the CPU), each on a block of memory that is
//! allocated once and reused; a caller that waits longer than `queue_wait` is told the
//! service is busy (503 with Retry-After) instead of queueing without bound.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::pages::PageError;

/// Verified against when an email is unknown, so both paths take the same time.
pub const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2a+vPh8k3P7cBgYQ0u1t1lq6D8lqzKx3tq0n6OQb0h8";

/// How long a caller waits for a free hashing slot before being told to come back.
const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(3);

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot stayed taken for the whole wait: a burst, perhaps an attack.
    #[error("too many password checks at once")]
    Busy,
    #[error("cannot hash the password: {0}")]
    Failed(String),
}

impl From<PasswordError> for PageError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Busy => {
                tracing::warn!("password checks saturated; answering 503");
                PageError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "We are very busy right now",
                    "Too many sign-ins are being checked at this moment.",
                )
                .step("Wait a few seconds and submit the form again.")
            }
            PasswordError::Failed(message) => PageError::internal(&message),
        }
    }
}

/// The process's hashing slots and their reusable memory.
struct Pool {
    slots: Semaphore,
    memory: Mutex<Vec<Vec<Block>>>,
    queue_wait: Duration,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Sets how many Argon2 runs may happen at once and how long a caller waits for one; only the
/// first call (at start-up, before any password is checked) has an effect. Returns whether it
/// did.
pub fn configure(concurrency: usize, queue_wait: Duration) -> bool {
    POOL.set(Pool::new(concurrency, queue_wait)).is_ok()
}

/// One Argon2 run per CPU: more would only queue inside the CPU, holding memory meanwhile.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(default_concurrency(), DEFAULT_QUEUE_WAIT))
}

impl Pool {
    fn new(concurrency: usize, queue_wait: Duration) -> Self {
        let concurrency = concurrency.max(1);
        Self {
            slots: Semaphore::new(concurrency),
            memory: Mutex::new(Vec::with_capacity(concurrency)),
            queue_wait,
        }
    }

    /// Runs `work` on a blocking thread with a slot and a memory block of at least `blocks`.
    async fn run<T: Send + 'static>(
        &'static self,
        blocks: usize,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = tokio::time::timeout(self.queue_wait, self.slots.acquire())
            .await
            .map_err(|_| PasswordError::Busy)?
            .map_err(|_| PasswordError::Busy)?;
        let outcome = tokio::task::spawn_blocking(move || {
            let mut memory = self.take_memory();
            if memory.len() < blocks {
                memory.resize(blocks, Block::default());
            }
            let result = work(&mut memory[..blocks]);
            self.give_back(memory);
            result
        })
        .await
        .map_err(|e| PasswordError::Failed(e.to_string()));
        drop(permit);
        outcome
    }

    fn take_memory(&self) -> Vec<Block> {
        self.memory
            .lock()
            .map(|mut free| free.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn give_back(&self, memory: Vec<Block>) {
        if let Ok(mut free) = self.memory.lock() {
            free.push(memory);
        }
    }
}

pub fn check_strength(password: &str) -> Result<(), String> {
    if password.chars().count() < 10 {
        return Err("Choose a password of at least 10 characters.".into());
    }
    if password.len() > 1024 {
        return Err("That password is too long.".into());
    }
    Ok(())
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) of `password` with a new salt.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    let params = Params::default();
    let blocks = params.block_count();
    pool()
        .run(blocks, move |memory| {
            let salt = SaltString::generate(&mut OsRng);
            let mut salt_bytes = [0u8; 64];
            let salt_raw = salt
                .decode_b64(&mut salt_bytes)
                .map_err(|e| PasswordError::Failed(e.to_string()))?;
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            argon
                .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, memory)
                .map_err(|e| PasswordError::Failed(e.to_string()))?;
            let output = Output::new(&out).map_err(|e| PasswordError::Failed(e.to_string()))?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(&params)
                    .map_err(|e| PasswordError::Failed(e.to_string()))?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await?
}

/// Whether `password` matches the PHC string `hash`. A hash that does not parse matches
/// nothing.
pub async fn verify(password: String, hash: String) -> Result<bool, PasswordError> {
    let Some(blocks) = PasswordHash::new(&hash)
        .ok()
        .and_then(|parsed| Params::try_from(&parsed).ok())
        .map(|params| params.block_count())
    else {
        return Ok(false);
    };
    pool()
        .run(blocks, move |memory| matches(&password, &hash, memory))
        .await
}

/// Recomputes the hash with `memory` and compares the outputs in constant time.
fn matches(password: &str, hash: &str, memory: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.hash,
        parsed.salt,
    ) else {
        return false;
    };
    let version = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from);
    let Ok(version) = version else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, memory)
        .is_err()
    {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher;

    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_the_dummy_parses() {
        let hash = hash("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify("correct horse battery".into(), hash.clone())
                .await
                .unwrap()
        );
        assert!(!verify("wrong".into(), hash).await.unwrap());
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify("x".into(), "not a hash".into()).await.unwrap());
        assert!(check_strength("short").is_err());
        assert!(check_strength("long enough!").is_ok());
    }

    /// With every slot taken for longer than the wait, a caller is told to come back, and the
    /// slot is usable again once the long run ends.
    #[tokio::test]
    async fn a_full_pool_answers_busy_after_the_wait() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(1, Duration::from_millis(50))));
        let (started, release) = (
            std::sync::Arc::new(tokio::sync::Notify::new()),
            std::sync::Arc::new(std::sync::Barrier::new(2)),
        );
        let (s, r) = (started.clone(), release.clone());
        let long = tokio::spawn(pool.run(8, move |_| {
            s.notify_one();
            r.wait();
        }));
        started.notified().await;
        assert!(matches!(
            pool.run(8, |_| ()).await,
            Err(PasswordError::Busy)
        ));
        release.wait();
        long.await.unwrap().unwrap();
        assert!(pool.run(8, |m| m.len()).await.is_ok_and(|n| n == 8));
    }

    /// Hashes made by the crate's own hasher (as `marketlink admin hash-password` and older
    /// releases did), with other costs too, still verify.
    #[tokio::test]
    async fn hashes_from_the_standard_hasher_verify() {
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(8192, 3, 1, None).unwrap();
        let standard = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"operator passphrase", &salt)
            .unwrap()
            .to_string();
        assert!(
            verify("operator passphrase".into(), standard.clone())
                .await
                .unwrap()
        );
        assert!(
            !verify("operator passphrase!".into(), standard)
                .await
                .unwrap()
        );
    }
}
