//! `DebugRequest::from_header_value` on any header value: it keeps exactly the bounded,
//! printable values, byte for byte, and never shows them in `Debug` output.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use meshtrace::sampler::DebugRequest;

/// The longest debug token accepted (`sampler::config::MAX_DEBUG_TOKEN_LEN`).
const MAX_LEN: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let acceptable =
        (1..=MAX_LEN).contains(&data.len()) && data.iter().all(|b| (0x21..=0x7e).contains(b));
    match DebugRequest::from_header_value(&value) {
        Some(request) => {
            assert!(acceptable);
            assert_eq!(request.as_bytes(), data);
            assert_eq!(
                format!("{request:?}"),
                format!("DebugRequest(<{} bytes redacted>)", data.len())
            );
        }
        None => assert!(!acceptable),
    }
});
