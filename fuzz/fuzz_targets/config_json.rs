//! config.json is untrusted input: parsing and validating any bytes must return a result,
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hull::config::parse(data, std::path::Path::new("config.json"));
});
