//! Retries inside one call, for calls that nothing retries later: Resolve runs while the buyer
//! waits on the landing page, so a throttled, failing (5xx) or timed-out call is tried again
//! here, with exponential backoff (`max_attempts`, `initial_backoff_ms`, as on AWS). The outbox
//! retries the engine's calls (activate, changes), so they are not retried twice.

use std::{future::Future, time::Duration};

use marketlink_core::ProviderError;

/// No single wait is longer than this, whatever `Retry-After` asks: a buyer is waiting.
const MAX_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub max_attempts: u32,
    /// Wait after the first failure; doubles each time; a `Retry-After` replaces it.
    pub initial_backoff: Duration,
}

impl RetryPolicy {
    /// Runs `call` until it succeeds, fails for good, or the attempts are used up.
    pub async fn run<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut backoff = self.initial_backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(ProviderError::Retryable {
                    message,
                    retry_after,
                }) if attempt < self.max_attempts => {
                    let wait = retry_after.unwrap_or(backoff).min(MAX_WAIT);
                    tracing::warn!(what, attempt, %message, "retryable marketplace failure; trying again in {wait:?}");
                    tokio::time::sleep(wait).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn retries_only_what_is_retryable_up_to_the_limit() {
        let policy = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
        };
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = policy
            .run("x", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::retryable("503"))
            })
            .await;
        assert!(result.unwrap_err().is_retryable());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), _> = policy
            .run("x", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::InvalidToken("no".into()))
            })
            .await;
        assert!(matches!(result, Err(ProviderError::InvalidToken(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a refusal is not retried");

        calls.store(0, Ordering::SeqCst);
        let result = policy
            .run("x", || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(ProviderError::Retryable {
                        message: "429".into(),
                        retry_after: Some(Duration::from_millis(1)),
                    }),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(result.unwrap(), 1);
    }
}
