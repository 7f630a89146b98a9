//! Input: 32-byte claimed chunk id, then an encoded chunk. Decoding must
//! never panic and never accept bytes that do not match the id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stacksync_content::fuzz::decode_any(data);
});
