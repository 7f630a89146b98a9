//! Input: 32-byte claimed target id, then a delta object, applied to a
//! fixed base. Applying must never panic and never accept bytes that do
//! not match the id.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stacksync_content::fuzz::apply_delta_any(data);
});
