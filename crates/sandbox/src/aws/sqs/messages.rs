//! SendMessage, ReceiveMessage (long polling), DeleteMessage and ChangeMessageVisibility on a
//! standard queue.
//!
//! Delivery is at least once in best-effort order (SQS Developer Guide, "Amazon SQS standard
//! queues"): a message received and not deleted is received again once its visibility timeout
//! ends; each receive gives a new receipt handle, and "you must provide the most recently
//! received ReceiptHandle for the message (otherwise, the request succeeds, but the message
//! will not be deleted)" (API reference, DeleteMessage). A duplicated copy (delivery chaos) is
//! its own message with the same MessageId: deleting one copy leaves the other, as a copy on
//! a server that was unavailable at DeleteMessage does.

use std::time::Duration as StdDuration;

use serde_json::{Map, Value, json};
use time::{Duration, OffsetDateTime};

use super::{
    invalid_parameter, invalid_receipt_handle, missing, non_existent_queue, parse_receipt,
    receipt_handle,
};
use crate::aws::{
    AwsSandbox,
    input::{opt_i64, opt_str},
    state::QueuedMessage,
    wire::AwsError,
};

/// An optional integer parameter within `lo..=hi`.
fn bounded(input: &Value, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, AwsError> {
    let v = opt_i64(input, key)?;
    if v.is_some_and(|v| !(lo..=hi).contains(&v)) {
        return Err(invalid_parameter(format!(
            "Value {} for parameter {key} is invalid. Reason: Must be between {lo} and {hi}, if provided.",
            v.unwrap_or_default()
        )));
    }
    Ok(v)
}

impl AwsSandbox {
    pub(super) fn send_message(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let body = opt_str(input, "MessageBody")?
            .filter(|b| !b.is_empty())
            .ok_or_else(|| missing("MessageBody"))?;
        if body.len() > 1024 * 1024 {
            return Err(invalid_parameter(
                "Message must be shorter than 1048576 bytes.",
            ));
        }
        // Checked before anything is queued: a refused message must not be delivered.
        let delay = bounded(input, "DelaySeconds", 0, 900)?;
        let now = self.now();
        let mut st = self.lock();
        let default_delay = st
            .queues
            .get(&name)
            .map(|q| q.int_attribute("DelaySeconds", 0))
            .ok_or_else(non_existent_queue)?;
        let delay = Duration::seconds(delay.unwrap_or(default_delay));
        let (message_id, md5) = st.push_queue_message(&name, body.to_owned(), now, delay);
        self.persist(&st);
        Ok((
            json!({"MessageId": message_id, "MD5OfMessageBody": md5}),
            format!("{name}: 1 message"),
        ))
    }

    /// Long polling: waits up to `WaitTimeSeconds` (the queue's ReceiveMessageWaitTimeSeconds
    /// when absent) for a visible message.
    pub(super) async fn receive_message(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let max = bounded(input, "MaxNumberOfMessages", 1, 10)?.unwrap_or(1);
        let wait = match bounded(input, "WaitTimeSeconds", 0, 20)? {
            Some(w) => w,
            None => self
                .lock()
                .queues
                .get(&name)
                .map_or(0, |q| q.int_attribute("ReceiveMessageWaitTimeSeconds", 0)),
        };
        let visibility = bounded(input, "VisibilityTimeout", 0, 43_200)?;
        let mut wanted: Vec<String> = Vec::new();
        for key in ["AttributeNames", "MessageSystemAttributeNames"] {
            if let Some(Value::Array(a)) = input.get(key) {
                wanted.extend(a.iter().filter_map(|v| v.as_str().map(str::to_owned)));
            }
        }
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(wait as u64);
        loop {
            let messages = self.receive(&name, max as usize, visibility, &wanted);
            if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
                let n = messages.len();
                return Ok((
                    json!({"Messages": messages}),
                    format!("{name}: {n} messages"),
                ));
            }
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
    }

    pub(super) fn delete_message(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let handle = opt_str(input, "ReceiptHandle")?.ok_or_else(|| missing("ReceiptHandle"))?;
        let Some((_, id)) = parse_receipt(handle).filter(|(q, _)| *q == name) else {
            return Err(invalid_receipt_handle(handle));
        };
        let mut st = self.lock();
        // Only the copy last received with this handle goes; an old handle, or a message
        // already deleted, succeeds without deleting anything, as in SQS.
        let deleted = st.queues.get_mut(&name).is_some_and(|queue| {
            let before = queue.messages.len();
            queue
                .messages
                .retain(|m| m.receipt_handle.as_deref() != Some(handle));
            queue.messages.len() < before
        });
        self.persist(&st);
        let what = if deleted {
            "deleted"
        } else {
            "nothing deleted for"
        };
        Ok((json!({}), format!("{name}: {what} {id}")))
    }

    pub(super) fn change_message_visibility(
        &self,
        input: &Value,
    ) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let handle = opt_str(input, "ReceiptHandle")?.ok_or_else(|| missing("ReceiptHandle"))?;
        let timeout = bounded(input, "VisibilityTimeout", 0, 43_200)?
            .ok_or_else(|| missing("VisibilityTimeout"))?;
        if parse_receipt(handle).is_none_or(|(q, _)| q != name) {
            return Err(invalid_receipt_handle(handle));
        }
        let now = self.now();
        let mut st = self.lock();
        let msg = st
            .queues
            .get_mut(&name)
            .and_then(|q| {
                q.messages
                    .iter_mut()
                    .find(|m| m.receipt_handle.as_deref() == Some(handle))
            })
            .filter(|m| m.visible_at > now);
        let Some(msg) = msg else {
            return Err(AwsError::bad_request(
                "MessageNotInflight",
                "The message referred to isn't in flight.",
            )
            .with_query_error("AWS.SimpleQueueService.MessageNotInflight", "Sender"));
        };
        msg.visible_at = now + Duration::seconds(timeout);
        self.persist(&st);
        Ok((json!({}), format!("{name}: visibility {timeout}s")))
    }

    /// Takes up to `max` visible messages (in queue order, or shuffled under delivery chaos
    /// with `reorder`) and hides them for the visibility timeout.
    fn receive(
        &self,
        name: &str,
        max: usize,
        visibility: Option<i64>,
        wanted: &[String],
    ) -> Vec<Value> {
        let now = self.now();
        let mut st = self.lock();
        let reorder = st.chaos.config.is_some_and(|c| c.reorder);
        let Some(queue) = st.queues.get(name) else {
            return Vec::new();
        };
        let mut picks: Vec<usize> = (0..queue.messages.len())
            .filter(|&i| queue.messages[i].visible_at <= now)
            .collect();
        let timeout = visibility.unwrap_or(queue.visibility_timeout_secs);
        if reorder {
            // Fisher-Yates with the chaos generator: same seed, same order.
            for i in (1..picks.len()).rev() {
                let j = st.chaos.rng.up_to(i as u64) as usize;
                picks.swap(i, j);
            }
        }
        picks.truncate(max);
        let Some(queue) = st.queues.get_mut(name) else {
            return Vec::new();
        };
        let out = picks
            .into_iter()
            .map(|i| {
                let m = &mut queue.messages[i];
                m.receive_count += 1;
                m.first_receive_at.get_or_insert(now);
                m.visible_at = now + Duration::seconds(timeout);
                let handle = receipt_handle(name, &m.message_id);
                m.receipt_handle = Some(handle.clone());
                received(m, handle, wanted)
            })
            .collect();
        self.persist(&st);
        out
    }
}

/// The ReceiveMessage view of a message, with the system attributes asked for.
fn received(m: &QueuedMessage, handle: String, wanted: &[String]) -> Value {
    let all = wanted.iter().any(|w| w == "All");
    let want = |k: &str| all || wanted.iter().any(|w| w == k);
    let millis = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000).to_string();
    let mut attrs = Map::new();
    if want("SentTimestamp") {
        attrs.insert("SentTimestamp".into(), millis(m.sent_at).into());
    }
    if want("ApproximateReceiveCount") {
        attrs.insert(
            "ApproximateReceiveCount".into(),
            m.receive_count.to_string().into(),
        );
    }
    if want("ApproximateFirstReceiveTimestamp")
        && let Some(f) = m.first_receive_at
    {
        attrs.insert("ApproximateFirstReceiveTimestamp".into(), millis(f).into());
    }
    if want("SenderId") {
        attrs.insert("SenderId".into(), "AIDASANDBOXSNS".into());
    }
    let mut msg = json!({
        "MessageId": m.message_id,
        "ReceiptHandle": handle,
        "MD5OfBody": m.md5,
        "Body": m.body,
    });
    if !attrs.is_empty() {
        msg["Attributes"] = Value::Object(attrs);
    }
    msg
}
