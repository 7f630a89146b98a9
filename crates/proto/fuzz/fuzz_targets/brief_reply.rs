//! Input: two bytes (the request's length), a request, then a reply.
//! Expanding a brief commit reply must never panic, never expand for
//! anything but a commit, and shortening then expanding must be the
//! identity, over the wire or not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stacksync_proto::fuzz;

fuzz_target!(init: fuzz::write_seeds(&fuzz::brief_seeds()), |data: &[u8]| {
    fuzz::brief_reply(data);
});
