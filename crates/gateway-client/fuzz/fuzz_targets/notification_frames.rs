//! Input: what a gateway sends on an open notification socket (raw
//! WebSocket frames). Reading must never panic, never yield a message
//! over the limit, and never turn a frame into an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_gateway_client::fuzz::frame_seeds()),
    |data: &[u8]| {
        stacksync_gateway_client::fuzz::notification_frames(data);
    }
);
