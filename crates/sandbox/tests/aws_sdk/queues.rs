//! SQS CreateQueue / GetQueueUrl for tools that make their own queue, and SendMessage checks.

use std::collections::HashMap;

use aws_sdk_sqs::{
    error::ProvideErrorMetadata,
    operation::{create_queue::CreateQueueError, get_queue_url::GetQueueUrlError},
    types::QueueAttributeName as A,
};
use time::Duration;

use super::common::*;

#[tokio::test]
async fn create_queue_is_idempotent_for_the_same_attributes() {
    let h = start().await;
    let sqs = sqs(&h.url);
    let err = sqs
        .get_queue_url()
        .queue_name("my-events")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetQueueUrlError::QueueDoesNotExist(_)),
        "{err:?}"
    );
    let created = sqs
        .create_queue()
        .queue_name("my-events")
        .attributes(A::VisibilityTimeout, "60")
        .attributes(A::ReceiveMessageWaitTimeSeconds, "1")
        .send()
        .await
        .unwrap();
    let url = created.queue_url().unwrap().to_owned();
    assert_eq!(url, h.sb.queue_url("my-events"));
    let got = sqs
        .get_queue_url()
        .queue_name("my-events")
        .send()
        .await
        .unwrap();
    assert_eq!(got.queue_url(), Some(url.as_str()));

    // Same name and attributes, or no attributes: the existing queue's URL.
    for attrs in [
        HashMap::from([(A::VisibilityTimeout, "60".to_owned())]),
        HashMap::new(),
        HashMap::from([(A::DelaySeconds, "0".to_owned())]),
    ] {
        let again = sqs
            .create_queue()
            .queue_name("my-events")
            .set_attributes(Some(attrs))
            .send()
            .await
            .unwrap();
        assert_eq!(again.queue_url(), Some(url.as_str()));
    }
    // A different value: QueueNameExists (query code QueueAlreadyExists).
    let err = sqs
        .create_queue()
        .queue_name("my-events")
        .attributes(A::VisibilityTimeout, "30")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, CreateQueueError::QueueNameExists(_)),
        "{err:?}"
    );

    // The attributes apply: 60 s visibility.
    sqs.send_message()
        .queue_url(&url)
        .message_body("x")
        .send()
        .await
        .unwrap();
    let first = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(first.messages().len(), 1);
    h.clock.advance(Duration::seconds(45));
    assert!(
        sqs.receive_message()
            .queue_url(&url)
            .send()
            .await
            .unwrap()
            .messages()
            .is_empty()
    );
    h.clock.advance(Duration::seconds(20));
    assert_eq!(
        sqs.receive_message()
            .queue_url(&url)
            .send()
            .await
            .unwrap()
            .messages()
            .len(),
        1
    );
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(A::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    assert_eq!(
        attrs.get(&A::VisibilityTimeout).map(String::as_str),
        Some("60")
    );
    assert_eq!(
        attrs
            .get(&A::ReceiveMessageWaitTimeSeconds)
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        attrs.get(&A::MessageRetentionPeriod).map(String::as_str),
        Some("345600")
    );
}

#[tokio::test]
async fn create_queue_refuses_what_sqs_refuses() {
    let h = start().await;
    let sqs = sqs(&h.url);
    let err = sqs
        .create_queue()
        .queue_name("q")
        .attributes(A::DelaySeconds, "901")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, CreateQueueError::InvalidAttributeValue(_)),
        "{err:?}"
    );
    let err = sqs
        .create_queue()
        .queue_name("q")
        .attributes(A::from("NoSuchAttribute"), "1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, CreateQueueError::InvalidAttributeName(_)),
        "{err:?}"
    );
    let err = sqs
        .create_queue()
        .queue_name("bad name!")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    // FIFO queues are outside what the sandbox emulates, and say so.
    let err = sqs
        .create_queue()
        .queue_name("q.fifo")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, CreateQueueError::UnsupportedOperation(_)),
        "{err:?}"
    );
    // Nothing was created by the refused calls.
    assert!(sqs.get_queue_url().queue_name("q").send().await.is_err());
}

#[tokio::test]
async fn send_message_checks_delay_seconds_before_queueing() {
    let h = start().await;
    let sqs = sqs(&h.url);
    let url = sqs
        .create_queue()
        .queue_name("delayed")
        .attributes(A::DelaySeconds, "10")
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let err = sqs
        .send_message()
        .queue_url(&url)
        .message_body("refused")
        .delay_seconds(901)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    let count = async || {
        let out = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let a = out.attributes().unwrap();
        let n = |k: &A| a.get(k).unwrap().parse::<u32>().unwrap();
        n(&A::ApproximateNumberOfMessages) + n(&A::ApproximateNumberOfMessagesNotVisible)
    };
    assert_eq!(count().await, 0, "a refused message must not be queued");
    // The queue's DelaySeconds applies when the message names none; its own wins otherwise.
    sqs.send_message()
        .queue_url(&url)
        .message_body("queue delay")
        .send()
        .await
        .unwrap();
    sqs.send_message()
        .queue_url(&url)
        .message_body("no delay")
        .delay_seconds(0)
        .send()
        .await
        .unwrap();
    let now = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(now.messages().len(), 1);
    assert_eq!(now.messages()[0].body(), Some("no delay"));
    h.clock.advance(Duration::seconds(10));
    let later = sqs.receive_message().queue_url(&url).send().await.unwrap();
    assert_eq!(later.messages()[0].body(), Some("queue delay"));
}
