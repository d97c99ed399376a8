//! OpenTelemetry consistent probability sampling: thresholds, randomness and the
//! `ot` tracestate entry (`ot=th:<hex>;rv:<hex>`).
//!
//! A decision keeps a span iff its randomness `R` is at least the rejection
//! threshold `T`, where `T = 2^56 - round(p * 2^56)`. Because every service
//! compares the same `R` (the `rv` sub-key, else the low 56 bits of the trace
//! id), services sampling at `p_a <= p_b` keep nested sets of traces without
//! talking to each other.

use opentelemetry::trace::{TraceId, TraceState};

/// 2^56: the number of distinct randomness values.
pub const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
const MASK_56: u64 = MAX_ADJUSTED_COUNT - 1;
/// Hex digits in a full-precision threshold or randomness value.
pub const HEX_DIGITS: usize = 14;
/// The tracestate key OpenTelemetry uses.
pub const OT_KEY: &str = "ot";
/// The longest `ot` value we write (W3C tracestate value limit).
pub const MAX_OT_VALUE_LEN: usize = 256;

/// A rejection threshold: a span is kept iff its randomness is `>=` the threshold.
///
/// `Threshold::ALWAYS` (0) keeps everything; `Threshold::NEVER` (2^56) keeps nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Threshold(u64);

impl Threshold {
    /// Keeps every span (probability 1, encoded `th:0`).
    pub const ALWAYS: Threshold = Threshold(0);
    /// Keeps no span (probability 0; has no `th` encoding).
    pub const NEVER: Threshold = Threshold(MAX_ADJUSTED_COUNT);

    /// The threshold for probability `p`: `2^56 - round(p * 2^56)`.
    /// `None` when `p` is NaN or outside `0.0..=1.0`.
    pub fn from_probability(p: f64) -> Option<Self> {
        if !(0.0..=1.0).contains(&p) {
            return None;
        }
        // Multiplying by a power of two is exact in f64; only the rounding step is lossy.
        let scaled = (p * MAX_ADJUSTED_COUNT as f64).round() as u64;
        Some(Threshold(
            MAX_ADJUSTED_COUNT - scaled.min(MAX_ADJUSTED_COUNT),
        ))
    }

    /// Builds a threshold from its raw value; `None` above 2^56.
    pub fn from_raw(value: u64) -> Option<Self> {
        (value <= MAX_ADJUSTED_COUNT).then_some(Threshold(value))
    }

    /// The raw threshold value in `0..=2^56`.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The sampling probability this threshold represents.
    pub fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// Whether a span with randomness `r` is kept.
    #[inline]
    pub fn keeps(self, r: Randomness) -> bool {
        r.0 >= self.0
    }

    /// Parses a `th` value: 1 to 14 lowercase hex digits, implicitly padded with
    /// trailing zeros (`"8"` is `0x80000000000000`).
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() || s.len() > HEX_DIGITS {
            return None;
        }
        let mut value = 0u64;
        for b in s.bytes() {
            value = (value << 4) | u64::from(lower_hex_digit(b)?);
        }
        Some(Threshold(value << (4 * (HEX_DIGITS - s.len()))))
    }

    /// Writes the `th` encoding (14 hex digits, trailing zeros removed, `"0"` for
    /// probability 1) into `buf` and returns it; `None` for [`Threshold::NEVER`].
    pub fn encode_into(self, buf: &mut [u8; HEX_DIGITS]) -> Option<&str> {
        self.encode_digits(buf, HEX_DIGITS)
    }

    /// The `th` encoding as a `String`; `None` for [`Threshold::NEVER`].
    pub fn encode(self) -> Option<String> {
        let mut buf = [0u8; HEX_DIGITS];
        self.encode_into(&mut buf).map(str::to_owned)
    }

    /// The `th` encoding rounded to `digits` hex digits (1..=14), e.g. 0.1 at 4 digits
    /// is `e666`. Falls back to full precision where rounding would reach
    /// probability 0. `None` for [`Threshold::NEVER`].
    pub fn encode_with_precision(self, digits: usize) -> Option<String> {
        if self == Threshold::NEVER {
            return None;
        }
        let digits = digits.clamp(1, HEX_DIGITS);
        let shift = 4 * (HEX_DIGITS - digits) as u32;
        let rounded = if shift == 0 {
            self.0
        } else {
            let half = 1u64 << (shift - 1);
            (self.0 + half) & !((1u64 << shift) - 1)
        };
        let t = if rounded >= MAX_ADJUSTED_COUNT {
            self
        } else {
            Threshold(rounded)
        };
        let mut buf = [0u8; HEX_DIGITS];
        t.encode_digits(&mut buf, HEX_DIGITS).map(str::to_owned)
    }

    fn encode_digits(self, buf: &mut [u8; HEX_DIGITS], digits: usize) -> Option<&str> {
        if self.0 >= MAX_ADJUSTED_COUNT {
            return None;
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, slot) in buf.iter_mut().enumerate() {
            let nibble = (self.0 >> (4 * (HEX_DIGITS - 1 - i))) & 0xf;
            *slot = HEX[nibble as usize];
        }
        let mut len = digits;
        while len > 1 && buf[len - 1] == b'0' {
            len -= 1;
        }
        std::str::from_utf8(&buf[..len]).ok()
    }
}

/// The 56-bit randomness a decision compares with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Randomness(u64);

impl Randomness {
    /// The low 56 bits of the trace id (the W3C random bits when flag 0x02 is set).
    #[inline]
    pub fn from_trace_id(trace_id: TraceId) -> Self {
        let bytes = trace_id.to_bytes();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[8..]);
        Randomness(u64::from_be_bytes(low) & MASK_56)
    }

    /// Parses an `rv` value: exactly 14 lowercase hex digits.
    pub fn parse_rv(s: &str) -> Option<Self> {
        if s.len() != HEX_DIGITS {
            return None;
        }
        let mut value = 0u64;
        for b in s.bytes() {
            value = (value << 4) | u64::from(lower_hex_digit(b)?);
        }
        Some(Randomness(value))
    }

    /// Builds randomness from a raw value; `None` at or above 2^56.
    pub fn from_raw(value: u64) -> Option<Self> {
        (value < MAX_ADJUSTED_COUNT).then_some(Randomness(value))
    }

    /// The raw value in `0..2^56`.
    pub fn raw(self) -> u64 {
        self.0
    }
}

fn lower_hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// What an `ot` value says about one sub-key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field<T> {
    Absent,
    Valid(T),
    /// Present but malformed or repeated.
    Invalid,
}

/// The sampling-relevant sub-keys of an `ot` tracestate value, read without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OtValue {
    pub(crate) th: Field<Threshold>,
    pub(crate) rv: Field<Randomness>,
}

impl OtValue {
    pub(crate) const EMPTY: OtValue = OtValue {
        th: Field::Absent,
        rv: Field::Absent,
    };

    pub(crate) fn parse(value: Option<&str>) -> OtValue {
        let Some(value) = value else {
            return OtValue::EMPTY;
        };
        let mut out = OtValue::EMPTY;
        for member in value.split(';') {
            let Some((key, val)) = member.split_once(':') else {
                continue;
            };
            match key {
                "th" => {
                    out.th = match out.th {
                        Field::Absent => Threshold::parse(val).map_or(Field::Invalid, Field::Valid),
                        _ => Field::Invalid,
                    }
                }
                "rv" => {
                    out.rv = match out.rv {
                        Field::Absent => {
                            Randomness::parse_rv(val).map_or(Field::Invalid, Field::Valid)
                        }
                        _ => Field::Invalid,
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// `rv` when valid, else the low 56 bits of the trace id.
    #[inline]
    pub(crate) fn randomness(&self, trace_id: TraceId) -> Randomness {
        match self.rv {
            Field::Valid(r) => r,
            _ => Randomness::from_trace_id(trace_id),
        }
    }
}

/// Returns `state` with the `ot` entry's `th` sub-key set to `th` (or removed when
/// `None`); other `ot` sub-keys (including `rv`) and other vendors' entries are
/// kept. Clones without rebuilding when nothing changes.
pub(crate) fn with_threshold(state: &TraceState, th: Option<Threshold>) -> TraceState {
    let current = state.get(OT_KEY);
    let mut buf = [0u8; HEX_DIGITS];
    let encoded = th.and_then(|t| t.encode_into(&mut buf));
    if !needs_rewrite(current, encoded) {
        return state.clone();
    }
    match rewrite_ot(current.unwrap_or(""), encoded) {
        // A rewritten value only holds characters the parent's value already had plus
        // `th:<hex>`, so insert cannot fail; if it ever did, the parent's state is the
        // safer thing to propagate.
        Some(value) => state
            .insert(OT_KEY, value)
            .unwrap_or_else(|_| state.clone()),
        None => state.delete(OT_KEY).unwrap_or_else(|_| state.clone()),
    }
}

fn needs_rewrite(current: Option<&str>, encoded: Option<&str>) -> bool {
    let Some(current) = current else {
        return encoded.is_some();
    };
    let mut th_members = current
        .split(';')
        .filter(|m| m.split_once(':').is_some_and(|(k, _)| k == "th"));
    let first = th_members.next();
    let repeated = th_members.next().is_some();
    match (first, encoded) {
        (None, None) => false,
        (Some(m), Some(e)) => repeated || m.get(3..) != Some(e),
        _ => true,
    }
}

/// Builds the new `ot` value: `th` first (when set), then the other members in
/// their original order. Members that are not ours to interpret are dropped from
/// the end only when the value would exceed 256 characters; `rv` is never dropped.
/// `None` when the result is empty.
fn rewrite_ot(current: &str, encoded: Option<&str>) -> Option<String> {
    let mut members: Vec<&str> = current
        .split(';')
        .filter(|m| !m.is_empty())
        .filter(|m| m.split_once(':').is_none_or(|(k, _)| k != "th"))
        .collect();
    let th_len = encoded.map_or(0, |e| 3 + e.len());
    let total = |members: &[&str]| -> usize {
        let parts = members.len() + usize::from(encoded.is_some());
        th_len + members.iter().map(|m| m.len()).sum::<usize>() + parts.saturating_sub(1)
    };
    while total(&members) > MAX_OT_VALUE_LEN {
        match members.iter().rposition(|m| !m.starts_with("rv:")) {
            Some(pos) => {
                members.remove(pos);
            }
            None => break,
        }
    }
    let mut out = String::with_capacity(total(&members));
    if let Some(e) = encoded {
        out.push_str("th:");
        out.push_str(e);
    }
    for m in &members {
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(m);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(header: &str) -> TraceState {
        header.parse().unwrap()
    }

    #[test]
    fn with_threshold_rewrites_only_th() {
        let t8 = Threshold::from_probability(0.5);
        let cases: &[(&str, Option<Threshold>, &str)] = &[
            ("", t8, "ot=th:8"),
            ("", None, ""),
            ("a=1", t8, "ot=th:8,a=1"),
            (
                "a=1,ot=rv:0123456789abcd",
                t8,
                "ot=th:8;rv:0123456789abcd,a=1",
            ),
            (
                "ot=rv:0123456789abcd;th:c,a=1",
                t8,
                "ot=th:8;rv:0123456789abcd,a=1",
            ),
            ("ot=th:8;x:y,a=1", None, "ot=x:y,a=1"),
            ("a=1,ot=th:8", None, "a=1"),
            ("ot=th:8;th:4", t8, "ot=th:8"),
            ("ot=th:8;zz;k:v", t8, "ot=th:8;zz;k:v"),
        ];
        for (input, th, expected) in cases {
            let out = with_threshold(&ts(input), *th);
            assert_eq!(out.header(), *expected, "input {input:?} th {th:?}");
        }
        // Unchanged: the same state comes back.
        let same = ts("ot=th:8;rv:0123456789abcd,a=1");
        assert_eq!(with_threshold(&same, t8), same);
    }

    #[test]
    fn ot_value_stays_within_256_characters_and_keeps_rv() {
        let filler: Vec<String> = (0..40).map(|i| format!("k{i}:vvv")).collect();
        let value = format!("rv:0123456789abcd;{}", filler.join(";"));
        let value = &value[..value[..250].rfind(';').unwrap()];
        let state = ts(&format!("ot={value},z=1"));
        let out = with_threshold(&state, Threshold::from_probability(1.0 / 3.0));
        let ot = out.get(OT_KEY).unwrap();
        assert!(ot.len() <= MAX_OT_VALUE_LEN, "{} chars", ot.len());
        assert!(
            ot.starts_with("th:aaaaaaaaaaaaac;rv:0123456789abcd;k0:vvv"),
            "{ot}"
        );
        assert_eq!(out.get("z"), Some("1"));
    }

    #[test]
    fn parse_ot_fields() {
        let v = OtValue::parse(Some("th:8;rv:ffffffffffffff;x:1"));
        assert_eq!(
            v.th,
            Field::Valid(Threshold::from_raw(0x80000000000000).unwrap())
        );
        assert_eq!(
            v.rv,
            Field::Valid(Randomness::from_raw(0xffffffffffffff).unwrap())
        );
        let v = OtValue::parse(Some("th:8;th:8;rv:fff"));
        assert_eq!(v.th, Field::Invalid);
        assert_eq!(v.rv, Field::Invalid);
        assert_eq!(OtValue::parse(Some("garbage")), OtValue::EMPTY);
        assert_eq!(OtValue::parse(None), OtValue::EMPTY);
    }
}
