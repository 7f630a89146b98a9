//! Input: a container name or storage user. Validation must never panic,
//! and what is accepted reads the same written back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_blobstore::fuzz::seeds()),
    |data: &[u8]| {
        stacksync_blobstore::fuzz::names(data);
    }
);
