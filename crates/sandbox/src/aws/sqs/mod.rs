//! SQS-compatible standard queues (awsJson1.0, `X-Amz-Target: AmazonSQS.*`): CreateQueue,
//! GetQueueUrl, GetQueueAttributes (`queues`), SendMessage, ReceiveMessage with long polling,
//! DeleteMessage, ChangeMessageVisibility (`messages`). Error codes are the awsJson ones with
//! the query-compatible code in `x-amzn-query-error`, as the SQS model declares.

mod messages;
mod queues;

use axum::http::StatusCode;
use serde_json::Value;

use super::{AwsSandbox, input::opt_str, wire::AwsError};

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
            "CreateQueue" => self.create_queue(input),
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
}
