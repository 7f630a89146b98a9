//! Input: a wire message (plain JSON envelope or compressed), decoded as a
//! request, a response and a notification. Decoding must never panic;
//! what is accepted must survive encoding again, and a compressed message
//! must never inflate past the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stacksync_proto::fuzz;

fuzz_target!(init: fuzz::write_seeds(&fuzz::seeds()), |data: &[u8]| {
    fuzz::wire_message(data);
});
