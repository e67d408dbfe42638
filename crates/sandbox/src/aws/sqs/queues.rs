//! CreateQueue, GetQueueUrl and GetQueueAttributes.
//!
//! CreateQueue follows the SQS API reference: a new name creates a standard queue; "If you
//! provide the name of an existing queue along with the exact names and values of all the
//! queue's attributes, CreateQueue returns the queue URL for the existing queue";
//! `QueueNameExists` (query code `QueueAlreadyExists`) "only if the request includes
//! attributes whose values differ from those of the existing queue". Names: 1 to 80
//! alphanumerics, hyphens and underscores. Attribute ranges and defaults are the API
//! reference's. FIFO queues are not emulated (refused as UnsupportedOperation, a sandbox
//! limit, not AWS behaviour).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::{invalid_parameter, missing, non_existent_queue};
use crate::aws::{AwsSandbox, input::req_str, state::Queue, wire::AwsError};

/// Attributes CreateQueue accepts, with the integer range SQS enforces (None: any string).
const SETTABLE: &[(&str, Option<(i64, i64)>)] = &[
    ("DelaySeconds", Some((0, 900))),
    ("MaximumMessageSize", Some((1024, 1_048_576))),
    ("MessageRetentionPeriod", Some((60, 1_209_600))),
    ("ReceiveMessageWaitTimeSeconds", Some((0, 20))),
    ("VisibilityTimeout", Some((0, 43_200))),
    ("KmsDataKeyReusePeriodSeconds", Some((60, 86_400))),
    ("Policy", None),
    ("RedrivePolicy", None),
    ("RedriveAllowPolicy", None),
    ("KmsMasterKeyId", None),
    ("SqsManagedSseEnabled", None),
    ("FifoQueue", None),
    ("ContentBasedDeduplication", None),
    ("DeduplicationScope", None),
    ("FifoThroughputLimit", None),
];

/// Values a queue has when CreateQueue did not set them (SQS API reference defaults).
const DEFAULTS: &[(&str, &str)] = &[
    ("DelaySeconds", "0"),
    ("MessageRetentionPeriod", "345600"),
    ("ReceiveMessageWaitTimeSeconds", "0"),
    ("VisibilityTimeout", "30"),
];

/// Read-only attributes GetQueueAttributes also reports.
const COMPUTED: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "QueueArn",
];

fn invalid_attribute_name(name: &str) -> AwsError {
    AwsError::bad_request("InvalidAttributeName", format!("Unknown Attribute {name}."))
        .with_query_error("InvalidAttributeName", "Sender")
}

fn invalid_attribute_value(name: &str, value: &str) -> AwsError {
    AwsError::bad_request(
        "InvalidAttributeValue",
        format!("Invalid value for the parameter {name}: {value}"),
    )
    .with_query_error("InvalidAttributeValue", "Sender")
}

/// The queue's attribute as GetQueueAttributes reports it: set at creation, else the default.
fn effective(queue: &Queue, name: &str) -> Option<String> {
    if name == "VisibilityTimeout" {
        return Some(queue.visibility_timeout_secs.to_string());
    }
    queue.attributes.get(name).cloned().or_else(|| {
        DEFAULTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

fn check_name(name: &str) -> Result<(), AwsError> {
    if name.ends_with(".fifo") {
        return Err(unsupported_fifo());
    }
    let ok = (1..=80).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    Ok(())
}

fn unsupported_fifo() -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "UnsupportedOperation",
        "The sandbox emulates standard queues only, not FIFO queues",
    )
    .with_query_error("AWS.SimpleQueueService.UnsupportedOperation", "Sender")
}

/// The request's `Attributes`, checked against [`SETTABLE`].
fn requested_attributes(input: &Value) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    let Some(attrs) = input.get("Attributes").filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let attrs = attrs
        .as_object()
        .ok_or_else(|| AwsError::serialization("Attributes must be a map"))?;
    for (name, value) in attrs {
        let value = value
            .as_str()
            .ok_or_else(|| AwsError::serialization("attribute values must be strings"))?;
        let (_, range) = SETTABLE
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| invalid_attribute_name(name))?;
        if let Some((lo, hi)) = range {
            let n: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid_attribute_value(name, value))?;
            if !(*lo..=*hi).contains(&n) {
                return Err(invalid_attribute_value(name, value));
            }
        }
        if name == "FifoQueue" && value != "false" {
            return Err(unsupported_fifo());
        }
        out.insert(name.clone(), value.trim().to_owned());
    }
    Ok(out)
}

impl AwsSandbox {
    pub(super) fn create_queue(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name =
            req_str(input, "QueueName", "MissingParameter").map_err(|_| missing("QueueName"))?;
        check_name(name)?;
        let wanted = requested_attributes(input)?;
        let mut st = self.lock();
        let summary = if let Some(queue) = st.queues.get(name) {
            if let Some((k, _)) = wanted
                .iter()
                .find(|(k, v)| effective(queue, k).as_deref() != Some(v.as_str()))
            {
                return Err(AwsError::bad_request(
                    "QueueNameExists",
                    format!("A queue already exists with the same name and a different value for attribute {k}"),
                )
                .with_query_error("QueueAlreadyExists", "Sender"));
            }
            format!("{name}: exists")
        } else {
            let mut queue = Queue::default();
            if let Some(v) = wanted.get("VisibilityTimeout").and_then(|v| v.parse().ok()) {
                queue.visibility_timeout_secs = v;
            }
            queue.attributes = wanted;
            st.queues.insert(name.to_owned(), queue);
            self.persist(&st);
            format!("{name}: created")
        };
        Ok((json!({"QueueUrl": self.queue_url(name)}), summary))
    }

    pub(super) fn get_queue_url(&self, input: &Value) -> Result<(Value, String), AwsError> {
        let name =
            req_str(input, "QueueName", "MissingParameter").map_err(|_| missing("QueueName"))?;
        if !self.lock().queues.contains_key(name) {
            return Err(non_existent_queue());
        }
        Ok((json!({"QueueUrl": self.queue_url(name)}), name.to_owned()))
    }

    pub(super) fn get_queue_attributes(&self, input: &Value) -> Result<(Value, String), AwsError> {
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
    ) -> Result<Map<String, Value>, AwsError> {
        let known =
            |w: &str| w == "All" || COMPUTED.contains(&w) || SETTABLE.iter().any(|(n, _)| *n == w);
        if let Some(unknown) = wanted.iter().find(|w| !known(w)) {
            return Err(invalid_attribute_name(unknown));
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
        let mut attrs = Map::new();
        let mut put = |k: &str, v: String| {
            if want(k) {
                attrs.insert(k.to_owned(), v.into());
            }
        };
        put("ApproximateNumberOfMessages", visible.to_string());
        put(
            "ApproximateNumberOfMessagesNotVisible",
            (queue.messages.len() - visible).to_string(),
        );
        put(
            "QueueArn",
            format!(
                "arn:aws:sqs:{}:{}:{name}",
                self.config.region, self.config.seller_account_id
            ),
        );
        for (k, _) in SETTABLE {
            if let Some(v) = effective(queue, k) {
                put(k, v);
            }
        }
        Ok(attrs)
    }
}
