//! A message body pulled from SQS: an SNS envelope or an EventBridge event, read as the `sqs`
//! channel reads it; each kind agrees with its own endpoint's reading.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_aws::fuzzing::{SqsBody, eventbridge_event, sns_envelope, sqs_body};
use marketlink_fuzz::{SELLER_ACCOUNT, sns_verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = sqs_body(sns_verifier(), data, Some(SELLER_ACCOUNT)) else {
        return;
    };
    match body {
        SqsBody::Sns(read) => {
            assert!(read.envelope.contains_key("Signature") && read.envelope.contains_key("Type"));
            let Ok(direct) = sns_envelope(sns_verifier(), data) else {
                panic!("an SNS envelope from SQS does not read as one over HTTP");
            };
            assert_eq!(direct.message_id, read.message_id);
            assert_eq!(direct.signed.ok(), read.signed.ok());
        }
        SqsBody::Event(event) => {
            let Ok(direct) = eventbridge_event(data, Some(SELLER_ACCOUNT)) else {
                panic!("an event from SQS does not read as one over HTTPS");
            };
            assert_eq!((direct.id, direct.at), (event.id, event.at));
        }
    }
});
