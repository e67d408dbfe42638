//! SNS HTTP(S) delivery, as SNS's delivery policy runs it, and delivery chaos on that path.
//!
//! - Retryable: "Amazon SNS considers all 5XX errors and 429 (too many requests sent) errors as
//!   retryable" (SNS Developer Guide, "Fanout Amazon SNS notifications to HTTPS endpoints"), and
//!   an unavailable endpoint (connection error, timeout) is a server-side error that SNS
//!   retries ("Amazon SNS dead-letter queues", "Server-side errors").
//! - Not retried: any other status. "Amazon SNS doesn't retry the message delivery that fails
//!   as a result of a client-side error", and without a dead-letter queue the message is
//!   discarded (same page); the sandbox has no SNS dead-letter queues.
//! - Schedule: `sns_http_retry_delays_ms`, one delay per retry; SNS's default is three retries
//!   20 s apart ("Set the delivery policy for the Amazon SNS subscription"). The first attempt
//!   runs inside the call that published; retries run in the background, as SNS's do.
//! - Timeout: `sns_http_timeout_ms` (15 s by default; [DERIVED] no SNS page found states it).

use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    AwsSandbox, DELIVERY_LOG_CAP, sns,
    state::{DeliveryOutcome, HttpDeliveryAttempt},
};

/// Whether SNS retries after this result of one attempt.
fn retryable(result: &Result<u16, String>) -> bool {
    match result {
        Ok(status) => *status == 429 || (500..600).contains(status),
        Err(_) => true,
    }
}

fn text(env: &Map<String, Value>, key: &str) -> String {
    env.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

impl AwsSandbox {
    /// Deliver an SNS envelope to an HTTP(S) endpoint. Without chaos: in order, the first
    /// attempt before returning. With chaos: maybe twice (the same envelope, as a redelivery
    /// repeats the MessageId), after random delays, and with `reorder` in the background so
    /// later messages can overtake this one.
    pub(super) async fn deliver_http(&self, endpoint: &str, env: Map<String, Value>) {
        crate::fuzz_seed(
            "sns_envelope",
            Value::Object(env.clone()).to_string().as_bytes(),
        );
        let (plan, reorder) = {
            let mut st = self.lock();
            let reorder = st.chaos.config.is_some_and(|c| c.reorder);
            (st.chaos.plan_delivery(), reorder)
        };
        let Some((delay, copy)) = plan else {
            self.run_delivery_policy(endpoint, &env).await;
            return;
        };
        for wait in std::iter::once(delay).chain(copy) {
            let wait = Duration::from_millis(wait);
            if reorder {
                self.in_background(endpoint, env.clone(), wait);
            } else {
                tokio::time::sleep(wait).await;
                self.run_delivery_policy(endpoint, &env).await;
            }
        }
    }

    /// Runs the delivery policy from its first attempt after `wait`, in a task of its own.
    fn in_background(&self, endpoint: &str, env: Map<String, Value>, wait: Duration) {
        let Some(me) = self.me.upgrade() else { return };
        let endpoint = endpoint.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            me.run_delivery_policy(&endpoint, &env).await;
        });
    }

    /// The first attempt now; the retries it earns later, in the background.
    async fn run_delivery_policy(&self, endpoint: &str, env: &Map<String, Value>) {
        if let Some(delay) = self.attempt(endpoint, env, 1).await {
            let Some(me) = self.me.upgrade() else { return };
            let (endpoint, env) = (endpoint.to_owned(), env.clone());
            tokio::spawn(async move {
                let mut next = Some(delay);
                let mut attempt = 2;
                while let Some(delay) = next {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    next = me.attempt(&endpoint, &env, attempt).await;
                    attempt += 1;
                }
            });
        }
    }

    /// One POST; records it and returns the delay before the next attempt, if SNS would retry.
    async fn attempt(&self, endpoint: &str, env: &Map<String, Value>, attempt: u32) -> Option<u64> {
        let timeout = Duration::from_millis(self.config.sns_http_timeout_ms);
        let result = match tokio::time::timeout(timeout, sns::deliver(endpoint, env)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        let retry_delay = self
            .config
            .sns_http_retry_delays_ms
            .get(attempt as usize - 1)
            .copied();
        let outcome = match (&result, retry_delay) {
            (Ok(s), _) if (200..300).contains(s) => DeliveryOutcome::Delivered,
            (r, Some(delay_ms)) if retryable(r) => DeliveryOutcome::Retrying { delay_ms },
            _ => DeliveryOutcome::GivenUp,
        };
        let record = HttpDeliveryAttempt {
            at: self.now(),
            endpoint: endpoint.to_owned(),
            message_id: text(env, "MessageId"),
            message_type: text(env, "Type"),
            attempt,
            status: result.as_ref().ok().copied(),
            error: result.as_ref().err().cloned(),
            outcome,
        };
        self.record_delivery(record);
        match outcome {
            DeliveryOutcome::Retrying { delay_ms } => Some(delay_ms),
            _ => None,
        }
    }

    fn record_delivery(&self, a: HttpDeliveryAttempt) {
        let what = match (&a.status, &a.error) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        let next = match a.outcome {
            DeliveryOutcome::Delivered => "delivered".to_owned(),
            DeliveryOutcome::Retrying { delay_ms } => format!("retry in {delay_ms} ms"),
            DeliveryOutcome::GivenUp => "given up, message dropped".to_owned(),
        };
        let operation = if a.outcome == DeliveryOutcome::GivenUp {
            "HttpDeliveryGivenUp"
        } else {
            "HttpDelivery"
        };
        let summary = format!(
            "{} {} → {}: attempt {}: {what}; {next}",
            a.message_type, a.message_id, a.endpoint, a.attempt
        );
        self.log_call("sns", operation, a.status.unwrap_or(0), summary);
        let mut st = self.lock();
        if st.http_deliveries.len() >= DELIVERY_LOG_CAP {
            st.http_deliveries.pop_front();
        }
        st.http_deliveries.push_back(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_sns_retries() {
        assert!(retryable(&Ok(500)));
        assert!(retryable(&Ok(503)));
        assert!(retryable(&Ok(429)));
        assert!(retryable(&Err("connection refused".into())));
        assert!(!retryable(&Ok(400)));
        assert!(!retryable(&Ok(403)));
        assert!(!retryable(&Ok(404)));
        assert!(!retryable(&Ok(200)));
    }
}
