//! Input: the text of mounts.toml or the profile, also read as
//! upload-journal rows. Parsing must never panic, and what parses writes
//! back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_client::fuzz::toml_seeds()),
    |data: &[u8]| {
        stacksync_client::fuzz::mounts(data);
        stacksync_client::fuzz::profile(data);
        stacksync_client::fuzz::journal_rows(data);
    }
);
