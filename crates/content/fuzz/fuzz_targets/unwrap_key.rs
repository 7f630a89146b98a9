//! Input: a wrapped-key blob. Parsing and unwrapping must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stacksync_content::fuzz::unwrap_any(data);
});
