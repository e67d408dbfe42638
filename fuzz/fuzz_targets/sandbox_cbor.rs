//! The sandbox's Smithy RPC v2 CBOR request decoder: a structure, or a SerializationException,
//! within its nesting bound. What it decodes encodes and decodes to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marketlink_fuzz::cbor_round_trip;
use marketlink_sandbox::aws::wire::{Protocol, parse_body};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = parse_body(Protocol::RpcV2Cbor, data) else {
        return;
    };
    assert!(value.is_object());
    cbor_round_trip(&value);
});
