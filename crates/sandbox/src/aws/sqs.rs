//! SQS-compatible queues (awsJson1.0, `X-Amz-Target: AmazonSQS.*`): GetQueueUrl, SendMessage,
//! ReceiveMessage (with long polling), DeleteMessage, ChangeMessageVisibility, GetQueueAttributes.

use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use time::Duration;

use super::{
    AwsSandbox,
    input::{opt_i64, opt_str, req_str},
    wire::AwsError,
};

fn non_existent_queue() -> AwsError {
    AwsError::bad_request("QueueDoesNotExist", "The specified queue does not exist.")
        .with_query_error("AWS.SimpleQueueService.NonExistentQueue", "Sender")
}

fn invalid_parameter(msg: impl Into<String>) -> AwsError {
    AwsError::bad_request("InvalidParameterValue", msg)
        .with_query_error("InvalidParameterValue", "Sender")
}

fn missing(key: &str) -> AwsError {
    AwsError::bad_request(
        "MissingParameter",
        format!("The request must contain the parameter {key}."),
    )
    .with_query_error("MissingParameter", "Sender")
}

fn invalid_receipt_handle(handle: &str) -> AwsError {
    AwsError::bad_request(
        "ReceiptHandleIsInvalid",
        format!("The input receipt handle \"{handle}\" is not a valid receipt handle."),
    )
    .with_query_error("ReceiptHandleIsInvalid", "Sender")
}

/// Receipt handles carry the queue and message ids plus a per-receive nonce.
fn receipt_handle(queue: &str, message_id: &str) -> String {
    format!("sbx:{queue}:{message_id}:{}", uuid::Uuid::new_v4().simple())
}

fn parse_receipt(handle: &str) -> Option<(&str, &str)> {
    let rest = handle.strip_prefix("sbx:")?;
    let mut parts = rest.splitn(3, ':');
    let queue = parts.next()?;
    let id = parts.next()?;
    parts.next()?;
    Some((queue, id))
}

impl AwsSandbox {
    fn queue_name_from_url<'a>(&self, url: &'a str) -> Result<&'a str, AwsError> {
        let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        if self.lock().queues.contains_key(name) {
            Ok(name)
        } else {
            Err(non_existent_queue())
        }
    }

    pub(super) async fn sqs(&self, op: &str, input: &Value) -> Result<(Value, String), AwsError> {
        match op {
            "GetQueueUrl" => self.get_queue_url(input),
            "SendMessage" => self.send_message(input),
            "ReceiveMessage" => self.receive_message(input).await,
            "DeleteMessage" => self.delete_message(input),
            "ChangeMessageVisibility" => self.change_message_visibility(input),
            "GetQueueAttributes" => self.get_queue_attributes(input),
            _ => Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "UnsupportedOperation",
                format!("The sandbox does not support SQS {op}"),
            )
            .with_query_error("AWS.SimpleQueueService.UnsupportedOperation", "Sender")),
        }
    }

    /// The name of the existing queue the request's `QueueUrl` names.
    fn queue_of(&self, input: &Value) -> Result<String, AwsError> {
        let url = opt_str(input, "QueueUrl")?.ok_or_else(|| missing("QueueUrl"))?;
        Ok(self.queue_name_from_url(url)?.to_owned())
    }

    fn get_queue_url(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name =
            req_str(input, "QueueName", "MissingParameter").map_err(|_| missing("QueueName"))?;
        if !self.lock().queues.contains_key(name) {
            return Err(non_existent_queue());
        }
        Ok((json!({"QueueUrl": self.queue_url(name)}), name.to_owned()))
    }

    fn send_message(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let body = opt_str(input, "MessageBody")?
            .filter(|b| !b.is_empty())
            .ok_or_else(|| missing("MessageBody"))?;
        if body.len() > 1024 * 1024 {
            return Err(invalid_parameter(
                "Message must be shorter than 1048576 bytes.",
            ));
        }
        let now = self.now();
        let mut st = self.lock();
        st.push_queue_message(&name, body.to_owned(), now);
        let delay = opt_i64(input, "DelaySeconds")?.unwrap_or(0);
        if !(0..=900).contains(&delay) {
            return Err(invalid_parameter("DelaySeconds must be between 0 and 900"));
        }
        let msg = st
            .queues
            .get_mut(&name)
            .and_then(|q| q.messages.last_mut())
            .ok_or_else(non_existent_queue)?;
        msg.visible_at += Duration::seconds(delay);
        let out = json!({"MessageId": msg.message_id, "MD5OfMessageBody": msg.md5});
        self.persist(&st);
        Ok((out, format!("{name}: 1 message")))
    }

    /// Long polling: waits up to `WaitTimeSeconds` for a visible message.
    async fn receive_message(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let max = opt_i64(input, "MaxNumberOfMessages")?.unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(invalid_parameter(format!(
                "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
            )));
        }
        let wait = opt_i64(input, "WaitTimeSeconds")?.unwrap_or(0);
        if !(0..=20).contains(&wait) {
            return Err(invalid_parameter(
                "WaitTimeSeconds must be between 0 and 20",
            ));
        }
        let visibility = opt_i64(input, "VisibilityTimeout")?;
        if visibility.is_some_and(|v| !(0..=43_200).contains(&v)) {
            return Err(invalid_parameter(
                "VisibilityTimeout must be between 0 and 43200",
            ));
        }
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

    fn delete_message(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let handle = opt_str(input, "ReceiptHandle")?.ok_or_else(|| missing("ReceiptHandle"))?;
        let Some((q, id)) = parse_receipt(handle).filter(|(q, _)| *q == name) else {
            return Err(invalid_receipt_handle(handle));
        };
        let mut st = self.lock();
        // Deleting an already-deleted message succeeds, as in SQS.
        if let Some(queue) = st.queues.get_mut(q) {
            queue.messages.retain(|m| m.message_id != id);
        }
        self.persist(&st);
        Ok((json!({}), format!("{name}: deleted {id}")))
    }

    fn change_message_visibility(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let handle = opt_str(input, "ReceiptHandle")?.ok_or_else(|| missing("ReceiptHandle"))?;
        let timeout =
            opt_i64(input, "VisibilityTimeout")?.ok_or_else(|| missing("VisibilityTimeout"))?;
        if !(0..=43_200).contains(&timeout) {
            return Err(invalid_parameter(
                "VisibilityTimeout must be between 0 and 43200",
            ));
        }
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

    fn get_queue_attributes(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name = self.queue_of(input)?;
        let mut wanted: Vec<String> = Vec::new();
        if let Some(Value::Array(a)) = input.get("AttributeNames") {
            wanted.extend(a.iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
        let attributes = self.queue_attributes(&name, &wanted)?;
        Ok((
            json!({"Attributes": attributes}),
            format!("{name}: {} attribute(s)", attributes.len()),
        ))
    }

    /// The attributes SQS reports that the sandbox can know; unknown names are refused like
    /// SQS does.
    fn queue_attributes(
        &self,
        name: &str,
        wanted: &[String],
    ) -> Result<serde_json::Map<String, Value>, AwsError> {
        const KNOWN: &[&str] = &[
            "All",
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "VisibilityTimeout",
            "QueueArn",
        ];
        if let Some(unknown) = wanted.iter().find(|w| !KNOWN.contains(&w.as_str())) {
            return Err(AwsError::bad_request(
                "InvalidAttributeName",
                format!("Unknown Attribute {unknown}."),
            )
            .with_query_error("InvalidAttributeName", "Sender"));
        }
        let now = self.now();
        let st = self.lock();
        let queue = st.queues.get(name).ok_or_else(non_existent_queue)?;
        let all = wanted.iter().any(|w| w == "All");
        let want = |k: &str| all || wanted.iter().any(|w| w == k);
        let visible = queue
            .messages
            .iter()
            .filter(|m| m.visible_at <= now)
            .count();
        let mut attrs = serde_json::Map::new();
        if want("ApproximateNumberOfMessages") {
            attrs.insert(
                "ApproximateNumberOfMessages".into(),
                visible.to_string().into(),
            );
        }
        if want("ApproximateNumberOfMessagesNotVisible") {
            attrs.insert(
                "ApproximateNumberOfMessagesNotVisible".into(),
                (queue.messages.len() - visible).to_string().into(),
            );
        }
        if want("VisibilityTimeout") {
            attrs.insert(
                "VisibilityTimeout".into(),
                queue.visibility_timeout_secs.to_string().into(),
            );
        }
        if want("QueueArn") {
            attrs.insert(
                "QueueArn".into(),
                format!(
                    "arn:aws:sqs:{}:{}:{name}",
                    self.config.region, self.config.seller_account_id
                )
                .into(),
            );
        }
        Ok(attrs)
    }

    fn receive(
        &self,
        name: &str,
        max: usize,
        visibility: Option<i64>,
        wanted: &[String],
    ) -> Vec<Value> {
        let now = self.now();
        let mut st = self.lock();
        let Some(queue) = st.queues.get_mut(name) else {
            return Vec::new();
        };
        let timeout = visibility.unwrap_or(queue.visibility_timeout_secs);
        let all = wanted.iter().any(|w| w == "All");
        let want = |k: &str| all || wanted.iter().any(|w| w == k);
        let mut out = Vec::new();
        for m in queue.messages.iter_mut().filter(|m| m.visible_at <= now) {
            if out.len() >= max {
                break;
            }
            m.receive_count += 1;
            m.first_receive_at.get_or_insert(now);
            m.visible_at = now + Duration::seconds(timeout);
            let handle = receipt_handle(name, &m.message_id);
            m.receipt_handle = Some(handle.clone());
            let millis =
                |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000).to_string();
            let mut attrs = serde_json::Map::new();
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
            out.push(msg);
        }
        self.persist(&st);
        out
    }
}
