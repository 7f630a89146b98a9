//! Input: a chunk list as a server sends it, then the bytes every object
//! read answers with. A download must never panic, and one that succeeds
//! wrote exactly the chunks the list names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&stacksync_client::fuzz::transfer_seeds().1),
    |data: &[u8]| {
        stacksync_client::fuzz::download(data);
    }
);
