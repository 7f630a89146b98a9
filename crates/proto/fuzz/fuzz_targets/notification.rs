//! Input: a notification as a socket or queue delivers it. Decoding must
//! never panic, and what is accepted must survive encoding again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stacksync_proto::fuzz;

fuzz_target!(init: fuzz::write_seeds(&fuzz::seeds()), |data: &[u8]| {
    fuzz::notification(data);
});
