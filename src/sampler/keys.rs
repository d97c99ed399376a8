//! The bounded table of limit keys: at most `max_keys` entries in a fixed array allocated
//! once, found by a keyed hash and a short linear probe: finding a tracked key takes no lock;
//! claiming a slot for a new key locks only that slot.
//!
//! * A key is identified by a 64-bit SipHash (keyed per table, so a caller cannot aim keys
//!   at one probe window) of its attribute values; its text (at most
//!   [`MAX_KEY_TEXT`] bytes) is kept for reports only.
//! * A new key takes the first empty slot of its probe window ([`PROBE`] slots from its
//!   hash's position). When the window is full, it takes the place of a key of that window
//!   idle for longer than `key_idle_secs`; when none is idle, the decision uses the
//!   **overflow** entry, one shared budget, even if slots outside the window are free.
//! * Claiming a slot is one compare-and-set from empty (or from the idle key's hash) to a
//!   busy marker, then the slot is reset (under its own mutexes, which only a snapshot or
//!   an update of that slot's estimate can hold) and gets the new hash. A decision that
//!   meets a busy slot uses the overflow entry for that one decision.
//! * Per-key counters live in per-thread shards (`[shard][slot]`), so two threads deciding
//!   for the same hot key do not write the same cache line.

use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::{KeyValue, Value};

use super::adaptive::{Controller, shard_count, shard_index};

/// Slots a key may occupy, from its hash's position on.
pub(crate) const PROBE: usize = 16;
/// Bytes of a key's text kept for reports.
pub const MAX_KEY_TEXT: usize = 128;

const EMPTY: u64 = 0;
const BUSY: u64 = 1;

/// One tracked key (its hash and last use live in compact arrays of the table, so a probe
/// reads one or two cache lines, not one per slot).
#[derive(Debug)]
pub(crate) struct Slot {
    /// The per-key probability.
    pub(crate) controller: Controller,
    /// The lower bound's theoretical arrival time of its next grant (GCRA, burst 1).
    lower: AtomicU64,
    /// The key's text and the counter values when it took the slot.
    info: Mutex<KeyInfo>,
}

#[derive(Clone, Copy, Debug)]
struct KeyInfo {
    len: usize,
    text: [u8; MAX_KEY_TEXT],
    baseline: [u64; COUNTERS],
}

/// What is counted per key: arrivals, then the four decisions.
pub(crate) const COUNTERS: usize = 5;
pub(crate) const ARRIVALS: usize = 0;
pub(crate) const SAMPLED: usize = 1;
pub(crate) const DROPPED: usize = 2;
pub(crate) const RATE_LIMITED: usize = 3;
pub(crate) const LOWER_BOUND: usize = 4;

#[derive(Debug, Default)]
struct Cell([AtomicU64; COUNTERS]);

/// A snapshot of one key for reports.
#[derive(Clone, Debug)]
pub(crate) struct KeySnapshot {
    pub(crate) key: String,
    pub(crate) overflow: bool,
    pub(crate) counts: [u64; COUNTERS],
    pub(crate) probability: f64,
    pub(crate) rate: f64,
}

/// The table; see the module docs.
#[derive(Debug)]
pub(crate) struct KeyTable {
    /// `max_keys` slots, then the overflow entry.
    slots: Box<[Slot]>,
    /// Each slot's key hash ([`EMPTY`], [`BUSY`] or a hash).
    hashes: Box<[AtomicU64]>,
    /// When a decision last used each slot's key (written at most every 1/8 idle time).
    seen: Box<[AtomicU64]>,
    /// `[shard][slot]` counters, `slots.len()` per shard.
    cells: Box<[Cell]>,
    shard_mask: usize,
    hasher: std::collections::hash_map::RandomState,
    /// Nanoseconds after which an unseen key may be replaced (a reload may change it).
    idle_ns: AtomicU64,
    key: Box<[Box<str>]>,
}

impl KeyTable {
    /// A table whose controllers start at probability `p` (the highest allowed).
    pub(crate) fn new(max_keys: usize, idle_ns: u64, key: &[String], now: u64, p: f64) -> KeyTable {
        let shards = shard_count();
        let n = max_keys + 1;
        let slots: Box<[Slot]> = (0..n)
            .map(|_| Slot {
                controller: Controller::new(now, p),
                lower: AtomicU64::new(0),
                info: Mutex::new(KeyInfo {
                    len: 0,
                    text: [0; MAX_KEY_TEXT],
                    baseline: [0; COUNTERS],
                }),
            })
            .collect();
        let table = KeyTable {
            slots,
            hashes: (0..n).map(|_| AtomicU64::new(EMPTY)).collect(),
            seen: (0..n).map(|_| AtomicU64::new(now)).collect(),
            cells: (0..n * shards).map(|_| Cell::default()).collect(),
            shard_mask: shards - 1,
            hasher: std::collections::hash_map::RandomState::new(),
            idle_ns: AtomicU64::new(idle_ns),
            key: key.iter().map(|k| k.as_str().into()).collect(),
        };
        if let Ok(mut info) = table.slots[max_keys].info.lock() {
            info.len = write_text(&mut info.text, |w| w.write_str("<overflow>"));
        }
        table
    }

    /// Whether this table can serve a configuration with these settings.
    pub(crate) fn fits(&self, max_keys: usize, key: &[String]) -> bool {
        self.slots.len() == max_keys + 1
            && self.key.len() == key.len()
            && self.key.iter().zip(key).all(|(a, b)| **a == **b)
    }

    pub(crate) fn set_idle(&self, idle_ns: u64) {
        self.idle_ns.store(idle_ns, Ordering::Relaxed);
    }

    #[inline]
    fn idle_ns(&self) -> u64 {
        self.idle_ns.load(Ordering::Relaxed)
    }

    /// The index of the overflow entry.
    #[inline]
    pub(crate) fn overflow(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    pub(crate) fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// The key hash of a span's attributes.
    #[inline]
    pub(crate) fn hash(&self, attributes: &[KeyValue]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for name in self.key.iter() {
            match attributes.iter().find(|kv| kv.key.as_str() == &**name) {
                Some(kv) => hash_value(&mut h, &kv.value),
                None => h.write_u8(0xfe),
            }
        }
        h.finish().max(BUSY + 1)
    }

    /// The slot for the key `hash` (claiming one for a new key), or the overflow entry.
    #[inline]
    pub(crate) fn find(&self, hash: u64, attributes: &[KeyValue], now: u64) -> usize {
        let n = self.overflow();
        let start = ((u128::from(hash) * n as u128) >> 64) as usize;
        let probe = PROBE.min(n);
        for j in 0..probe {
            let i = (start + j) % n;
            let current = self.hashes[i].load(Ordering::Acquire);
            if current == hash {
                self.touch(i, now);
                return i;
            }
            if current == EMPTY {
                return match self.hashes[i].compare_exchange(
                    EMPTY,
                    BUSY,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        self.claim(i, hash, attributes, now);
                        i
                    }
                    Err(now_there) if now_there == hash => i,
                    Err(_) => n,
                };
            }
            if current == BUSY {
                return n;
            }
        }
        // The window is full: take the place of an idle key, if any.
        for j in 0..probe {
            let i = (start + j) % n;
            let seen = self.seen[i].load(Ordering::Relaxed);
            if now.saturating_sub(seen) <= self.idle_ns() {
                continue;
            }
            let current = self.hashes[i].load(Ordering::Acquire);
            if current > BUSY
                && self.hashes[i]
                    .compare_exchange(current, BUSY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                self.claim(i, hash, attributes, now);
                return i;
            }
        }
        n
    }

    #[inline]
    fn touch(&self, i: usize, now: u64) {
        // Written at most every 1/8 of the idle time (and 1 s): a hot key's line stays shared.
        let grain = (self.idle_ns() / 8).clamp(1, 1_000_000_000);
        if now.saturating_sub(self.seen[i].load(Ordering::Relaxed)) > grain {
            self.seen[i].store(now, Ordering::Relaxed);
        }
    }

    /// Resets slot `i` for a new key; the slot holds [`BUSY`] until the hash is stored.
    #[cold]
    fn claim(&self, i: usize, hash: u64, attributes: &[KeyValue], now: u64) {
        let slot = &self.slots[i];
        // A new key starts where the keys without a slot are: at the overflow's probability.
        let p = self.slots[self.overflow()].controller.probability();
        slot.controller.reset(now, self.sum(i, ARRIVALS), p);
        slot.lower.store(0, Ordering::Relaxed);
        self.seen[i].store(now, Ordering::Relaxed);
        let mut baseline = [0; COUNTERS];
        for (c, b) in baseline.iter_mut().enumerate() {
            *b = self.sum(i, c);
        }
        let mut info = match slot.info.lock() {
            Ok(info) => info,
            Err(e) => e.into_inner(),
        };
        info.baseline = baseline;
        let key = &self.key;
        info.len = write_text(&mut info.text, |w| {
            for (n, name) in key.iter().enumerate() {
                if n > 0 {
                    w.write_char(' ')?;
                }
                match attributes.iter().find(|kv| kv.key.as_str() == &**name) {
                    Some(kv) => write!(w, "{}", kv.value)?,
                    None => w.write_char('-')?,
                }
            }
            Ok(())
        });
        drop(info);
        self.hashes[i].store(hash, Ordering::Release);
    }

    /// Adds 1 to counter `c` of slot `i` in this thread's shard.
    #[inline]
    pub(crate) fn count(&self, i: usize, c: usize) {
        let shard = shard_index() & self.shard_mask;
        self.cells[shard * self.slots.len() + i].0[c].fetch_add(1, Ordering::Relaxed);
    }

    /// The wrapping sum of counter `c` of slot `i` over every shard.
    pub(crate) fn sum(&self, i: usize, c: usize) -> u64 {
        let stride = self.slots.len();
        (0..=self.shard_mask).fold(0u64, |s, shard| {
            s.wrapping_add(self.cells[shard * stride + i].0[c].load(Ordering::Relaxed))
        })
    }

    /// Grants a lower-bound pick for slot `i` at most once per `interval` ns.
    #[inline]
    pub(crate) fn lower_bound(&self, i: usize, now: u64, interval: u64) -> bool {
        let lower = &self.slots[i].lower;
        let mut tat = lower.load(Ordering::Relaxed);
        loop {
            if tat > now {
                return false;
            }
            match lower.compare_exchange_weak(
                tat,
                now.saturating_add(interval),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// How many slots hold a key (the overflow entry not counted).
    pub(crate) fn len(&self) -> usize {
        self.hashes[..self.overflow()]
            .iter()
            .filter(|h| h.load(Ordering::Relaxed) > BUSY)
            .count()
    }

    /// Snapshots of the keys seen within the idle time, and of the overflow entry.
    pub(crate) fn snapshot(&self, now: u64) -> Vec<KeySnapshot> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let overflow = i == self.overflow();
            if !overflow
                && (self.hashes[i].load(Ordering::Acquire) <= BUSY
                    || now.saturating_sub(self.seen[i].load(Ordering::Relaxed)) > self.idle_ns())
            {
                continue;
            }
            let info = match slot.info.lock() {
                Ok(info) => *info,
                Err(e) => *e.into_inner(),
            };
            let mut counts = [0; COUNTERS];
            for (c, v) in counts.iter_mut().enumerate() {
                *v = self.sum(i, c).wrapping_sub(info.baseline[c]);
            }
            if overflow && counts[ARRIVALS] == 0 {
                continue;
            }
            out.push(KeySnapshot {
                key: String::from_utf8_lossy(&info.text[..info.len]).into_owned(),
                overflow,
                counts,
                probability: slot.controller.probability(),
                rate: slot.controller.rate_per_second(),
            });
        }
        out
    }
}

fn hash_value(h: &mut impl Hasher, value: &Value) {
    match value {
        Value::String(s) => {
            h.write(s.as_str().as_bytes());
            h.write_u8(0xff);
        }
        Value::I64(v) => {
            h.write_u8(1);
            h.write_i64(*v);
        }
        Value::F64(v) => {
            h.write_u8(2);
            h.write_u64(v.to_bits());
        }
        Value::Bool(v) => {
            h.write_u8(3);
            h.write_u8(u8::from(*v));
        }
        _ => h.write_u8(4),
    }
}

/// Writes what `f` formats into `buf`, cut at [`MAX_KEY_TEXT`] bytes on a character
/// boundary, without allocating; returns the length.
fn write_text(
    buf: &mut [u8; MAX_KEY_TEXT],
    f: impl FnOnce(&mut Truncating<'_>) -> std::fmt::Result,
) -> usize {
    let mut w = Truncating { buf, len: 0 };
    let _ = f(&mut w);
    w.len
}

struct Truncating<'a> {
    buf: &'a mut [u8; MAX_KEY_TEXT],
    len: usize,
}

impl std::fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = MAX_KEY_TEXT - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            Err(std::fmt::Error)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(r: &str) -> Vec<KeyValue> {
        vec![KeyValue::new("http.route", r.to_owned())]
    }

    #[test]
    fn keys_get_slots_until_full_then_overflow_then_idle_keys_are_replaced() {
        let table = KeyTable::new(8, 1_000, &["http.route".to_owned()], 0, 1.0);
        let mut slots = std::collections::HashSet::new();
        for k in 0..8 {
            let a = route(&format!("/r{k}"));
            let i = table.find(table.hash(&a), &a, 10);
            assert!(i < 8);
            assert_eq!(table.find(table.hash(&a), &a, 10), i, "same key, same slot");
            slots.insert(i);
        }
        assert_eq!(slots.len(), 8);
        assert_eq!(table.len(), 8);
        let a = route("/new");
        assert_eq!(table.find(table.hash(&a), &a, 500), table.overflow());
        // After the idle time, a new key takes an idle key's place.
        let i = table.find(table.hash(&a), &a, 2_000);
        assert!(i < 8);
        assert_eq!(table.len(), 8);
        let snap = table.snapshot(2_000);
        assert!(snap.iter().any(|s| s.key == "/new"), "{snap:?}");
    }

    #[test]
    fn key_text_is_bounded_and_joined() {
        let table = KeyTable::new(
            4,
            u64::MAX,
            &["http.request.method".to_owned(), "http.route".to_owned()],
            0,
            1.0,
        );
        let long = format!("/{}", "é".repeat(200));
        let a = vec![
            KeyValue::new("http.route", long),
            KeyValue::new("http.request.method", "GET"),
        ];
        let i = table.find(table.hash(&a), &a, 1);
        table.count(i, ARRIVALS);
        let snap = table.snapshot(1);
        let key = &snap.iter().find(|s| !s.overflow).unwrap().key;
        assert!(key.starts_with("GET /é"), "{key}");
        assert!(key.len() <= MAX_KEY_TEXT);
        let b = vec![KeyValue::new("http.request.method", "GET")];
        let j = table.find(table.hash(&b), &b, 1);
        assert_ne!(i, j);
        let snap = table.snapshot(1);
        assert!(snap.iter().any(|s| s.key == "GET -"), "{snap:?}");
    }
}
