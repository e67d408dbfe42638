//! The sandbox's awsJson 1.0/1.1 request decoder: a structure, or a SerializationException.
//! What it takes survives the sandbox's CBOR encoding unchanged (numbers under timestamp
//! members become the floats Smithy timestamps are; null members are dropped).
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_fuzz::cbor_round_trip;
use marketlink_sandbox::aws::wire::{Protocol, parse_body};

fuzz_target!(|data: &[u8]| {
    let json10 = parse_body(Protocol::AwsJson10, data);
    let json11 = parse_body(Protocol::AwsJson11, data);
    assert_eq!(json10.as_ref().ok(), json11.as_ref().ok());
    let Ok(value) = json10 else {
        return;
    };
    assert!(value.is_object());
    cbor_round_trip(&value);
});
