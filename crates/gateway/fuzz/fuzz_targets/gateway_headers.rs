//! Input: a header value, path or query. Parsing it as a Range, an
//! Authorization, path ids and a socket query must never panic, and what
//! is accepted reads the same written back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stacksync_gateway::fuzz;

fuzz_target!(
    init: stacksync_proto::fuzz::write_seeds(&fuzz::header_seeds()),
    |data: &[u8]| {
        fuzz::range_header(data);
        fuzz::authorization(data);
        fuzz::path_and_query(data);
    }
);
