//! Input: bytes read by `stacksync_vault::fuzz::record_and_name`. Decoding must never
//! panic, and nothing but the fixture's own blobs may authenticate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_vault::fuzz::seeds()),
    |data: &[u8]| {
        stacksync_vault::fuzz::record_and_name(data);
    }
);
