//! An upstream error body through `parse_error_body`, which reads every provider's error shape.
#![no_main]

use gophergate::providers::error::parse_error_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = parse_error_body(data);
    if let Some(m) = &p.message
        && serde_json::from_slice::<serde_json::Value>(data).is_err()
    {
        // A body that is not JSON is quoted, cut to 300 characters.
        assert!(m.chars().count() <= 300);
    }
});
