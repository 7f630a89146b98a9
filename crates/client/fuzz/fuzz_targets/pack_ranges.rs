//! Input: read-ahead limits, chunk spans and a pack's bytes. Planning the
//! range reads and cutting each chunk out of its range must never panic,
//! never leave a chunk outside its range and never hand out other bytes
//! than the chunk's.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_client::fuzz::transfer_seeds().0),
    |data: &[u8]| {
        stacksync_client::fuzz::pack_ranges(data);
    }
);
