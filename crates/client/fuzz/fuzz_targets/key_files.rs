//! Input: a selector byte and the content of an e2ee key file (invitees,
//! pins, identity, membership). Reading must never panic, and what reads
//! is saved and read again as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_client::fuzz::key_file_seeds()),
    |data: &[u8]| {
        stacksync_client::fuzz::key_files(data);
    }
);
