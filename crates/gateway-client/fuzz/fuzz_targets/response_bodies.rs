//! Input: a status (two bytes) and a body of a gateway's HTTP answer, also
//! read as a base URL. Parsing must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        let mut seeds = stacksync_gateway_client::fuzz::response_seeds();
        seeds.extend(stacksync_gateway_client::fuzz::url_seeds());
        stacksync_proto::fuzz::write_seeds(&seeds);
    },
    |data: &[u8]| {
        stacksync_gateway_client::fuzz::response_bodies(data);
        stacksync_gateway_client::fuzz::base_url(data);
    }
);
