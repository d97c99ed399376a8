//! `CorrelationId::parse` on any bytes and `CorrelationId::from_headers` on any header set:
//! only a valid id ever comes out, and a valid id round-trips through a header.
#![no_main]

use http::{HeaderMap, HeaderName};
use libfuzzer_sys::fuzz_target;
use meshtrace::context::{
    CorrelationId, CorrelationSource, DEFAULT_CORRELATION_HEADER, FALLBACK_CORRELATION_HEADER,
    MAX_CORRELATION_ID_LEN,
};
use meshtrace_fuzz::{header_set, split_values};

fn valid(bytes: &[u8]) -> bool {
    (1..=MAX_CORRELATION_ID_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The one value of `name`, when it is there exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => Some(v.as_bytes()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    match CorrelationId::parse(data) {
        Some(id) => {
            assert!(valid(data));
            assert_eq!(id.as_str().as_bytes(), data);
            assert_eq!(id.header_value().as_bytes(), data);
            let mut map = HeaderMap::new();
            map.insert(DEFAULT_CORRELATION_HEADER, id.header_value().clone());
            let (back, source) = CorrelationId::from_headers(&map, &DEFAULT_CORRELATION_HEADER);
            assert_eq!(source, CorrelationSource::Header);
            assert_eq!(back, id);
        }
        None => assert!(!valid(data)),
    }

    // A header set: the configured header is the default one, or (odd first byte) another.
    let configured = if data.first().is_some_and(|b| b & 1 == 1) {
        HeaderName::from_static("x-trace-ref")
    } else {
        DEFAULT_CORRELATION_HEADER
    };
    let headers = header_set(&split_values(data));
    let (id, source) = CorrelationId::from_headers(&headers, &configured);
    assert!(valid(id.as_str().as_bytes()), "{id}");
    let present = |name: &HeaderName| headers.contains_key(name);
    match source {
        CorrelationSource::Header => {
            assert_eq!(single(&headers, &configured), Some(id.as_str().as_bytes()));
        }
        CorrelationSource::FallbackHeader => {
            assert!(!present(&configured));
            assert_eq!(
                single(&headers, &FALLBACK_CORRELATION_HEADER),
                Some(id.as_str().as_bytes())
            );
        }
        CorrelationSource::Generated => {
            assert!(!present(&configured) && !present(&FALLBACK_CORRELATION_HEADER));
        }
        CorrelationSource::Rejected => {
            let decisive = if present(&configured) {
                &configured
            } else {
                &FALLBACK_CORRELATION_HEADER
            };
            assert!(single(&headers, decisive).is_none_or(|v| !valid(v)));
        }
        _ => unreachable!("a new CorrelationSource: teach this target about it"),
    }
});
