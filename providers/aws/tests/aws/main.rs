//! The AWS provider against the AWS sandbox served on 127.0.0.1:0, through the official SDKs.

mod common;
mod eventbridge;
mod renewals;
mod resolve;
mod sns;
mod sqs;
mod usage;
