//! Input: a container listing, a Keystone token body, an ACL header and an
//! admin `/info` body, separated by NUL bytes, which a fake Swift answers
//! with. Reading them must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_blobstore::fuzz::seeds()),
    |data: &[u8]| {
        stacksync_blobstore::fuzz::swift_answers(data);
    }
);
