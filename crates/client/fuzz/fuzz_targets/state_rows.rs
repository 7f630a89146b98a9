//! Input: rows of the sync state database. Loading must never panic, and
//! a state that loads saves and loads again as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_client::fuzz::state_seeds()),
    |data: &[u8]| {
        stacksync_client::fuzz::state_rows(data);
    }
);
