//! The adaptive probability behind every rate limit: an arrival-rate estimate smoothed over
//! irregular intervals, and the probability that follows `target / estimate`.
//!
//! # The estimate
//!
//! The reference design is OpenTelemetry Java contrib's `ConsistentRateLimitingSampler`: on
//! each arrival, after `dt` nanoseconds, it decays a count `C` and a window `W` by
//! `exp(-dt / adaptation_time)`, adds 1 to `C` and `dt` to `W`, and uses `C / W` as the rate
//! (its smoothing factor per kept span is `alpha = t / (1 + t)`, `t = 1 / (target *
//! adaptation_time)`, the first-order form of the same decay). What this module does
//! differently, and why:
//!
//! * **No contended write per decision.** Java swaps one immutable state object per
//!   decision with a compare-and-set: an allocation, and one cache line that every thread
//!   writes. Here a decision adds 1 (an atomic add) to a counter of its own thread's shard
//!   ([`Shards`]; handed to threads in turn, so threads share one only beyond
//!   [`shard_count`]) and reads the probability in force (one load); the estimate is brought up to date once per *tick*
//!   (`adaptation_time / 64`, 1 ms to 1 s) by whichever decision sees the tick due and gets
//!   the state's `Mutex::try_lock` (never waited for: a decision that finds it held goes on
//!   with the probability in force), and published with two atomic stores (the probability
//!   and the next tick).
//! * **The exact window.** Java adds the raw `dt` to `W`, so after an idle gap of `g` the
//!   window is about `g`, the rate estimate collapses, and the next burst is kept at
//!   probability 1 for several adaptation times. Here `W` gets `tau * (1 - exp(-dt / tau))`,
//!   the exact weight of the interval, so `W <= tau` always and `C / W` is the smoothed rate
//!   from the first tick on (also correct during warm-up, where `W` is the age).
//! * **Arrivals spread over the interval.** A tick's `n` arrivals count as spread uniformly
//!   over its `dt` (weight `tau / dt * (1 - exp(-dt / tau))` each), so a coarse clock (1 ms)
//!   and batching give the same estimate as per-arrival updates.
//! * **A fast drop detector.** Pure exponential smoothing recovers slowly from a load *drop*:
//!   after a 10x step down the estimate is `r * (1 + 9 exp(-t / tau))`, within 5% of the new
//!   rate only after 5.2 tau, all the while keeping too few traces. A second estimate with
//!   `tau / 4` runs alongside; when it is significantly (4 standard deviations of its
//!   Poisson noise) below what the slow estimate predicts, the slow estimate is re-anchored to
//!   it. Load *increases* are left to the slow estimate, so a burst is not clamped
//!   instantly (right after a 10x step the kept rate is still well above the target and comes
//!   back within 3 tau).
//!
//! # The probability
//!
//! `p* = target / estimate`. A decrease applies at the tick that computes it; an increase is
//! bounded by `max_increase` per adaptation time (`max_increase^(dt / tau)` per tick), as in
//! Jaeger's adaptive sampling. The result is clamped to `[min_probability,
//! max_probability]` (the global limit's, a factor on the key's probability, to
//! `[min_probability, 1]`); a key's estimate starts at `max_probability`, so the
//! probability it reports is within the bounds before its first update too. The caller
//! clamps the product of the key's probability and the global factor again to
//! `[min_probability, max_probability]`, and to the rule's probability.

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Nanoseconds per second.
const NANOS: f64 = 1e9;
/// The fast estimate's time constant is `tau / FAST_RATIO`.
const FAST_RATIO: f64 = 4.0;
/// Standard deviations of the fast estimate's noise that count as a significant drop.
const DROP_SIGMAS: f64 = 4.0;

/// The dynamics shared by every controller of a configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Dynamics {
    /// Time constant of the estimate, in nanoseconds.
    pub(crate) tau: f64,
    /// Nanoseconds between two updates of the estimate.
    pub(crate) tick: u64,
    /// Largest growth factor per `tau`.
    pub(crate) max_increase: f64,
    pub(crate) min_p: f64,
    pub(crate) max_p: f64,
}

impl Dynamics {
    pub(crate) fn new(adaptation_secs: f64, max_increase: f64, min_p: f64, max_p: f64) -> Dynamics {
        let tau = adaptation_secs * NANOS;
        Dynamics {
            tau,
            tick: ((tau / 64.0) as u64).clamp(1_000_000, 1_000_000_000),
            max_increase,
            min_p,
            max_p,
        }
    }
}

/// The smoothed state of one estimate, updated once per tick.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Smoothed {
    /// Decayed arrival counts of the slow and the fast estimate.
    slow_c: f64,
    fast_c: f64,
    /// Their windows (the decayed weight of the time observed), in nanoseconds.
    slow_w: f64,
    fast_w: f64,
    /// The arrival total at the last update.
    last_total: u64,
    /// When the last update happened (nanoseconds of the sampler's clock).
    last_tick: u64,
    /// The probability in force after the last update.
    p: f64,
}

impl Smoothed {
    /// A fresh estimate starting at `now` with probability `p`.
    pub(crate) fn new(now: u64, total: u64, p: f64) -> Smoothed {
        Smoothed {
            slow_c: 0.0,
            fast_c: 0.0,
            slow_w: 0.0,
            fast_w: 0.0,
            last_total: total,
            last_tick: now,
            p,
        }
    }

    /// The smoothed arrival rate per second.
    pub(crate) fn rate_per_second(&self) -> f64 {
        if self.slow_w > 0.0 {
            self.slow_c / self.slow_w * NANOS
        } else {
            0.0
        }
    }

    /// Folds in the arrivals since the last update (`total` is a wrapping counter, in units
    /// of `scale` per arrival) and returns the new probability for `target` arrivals per
    /// second.
    pub(crate) fn update(
        &mut self,
        now: u64,
        total: u64,
        scale: f64,
        target: f64,
        dynamics: &Dynamics,
    ) -> f64 {
        if now <= self.last_tick {
            return self.p;
        }
        let dt = (now - self.last_tick) as f64;
        let n = total.wrapping_sub(self.last_total) as f64 / scale;
        self.last_tick = now;
        self.last_total = total;
        let tau = dynamics.tau;
        let fast_tau = tau / FAST_RATIO;
        fold(&mut self.slow_c, &mut self.slow_w, n, dt, tau);
        fold(&mut self.fast_c, &mut self.fast_w, n, dt, fast_tau);
        if self.slow_w <= 0.0 || self.fast_w <= 0.0 {
            return self.p;
        }
        // Arrivals the slow estimate expects in the fast window; the fast count's Poisson
        // variance is about half of that (exponential weights).
        let slow_rate = self.slow_c / self.slow_w;
        let expected = slow_rate * self.fast_w;
        if self.fast_c < expected - DROP_SIGMAS * (expected / 2.0).sqrt() - 1.0 {
            self.slow_c = self.fast_c / self.fast_w * self.slow_w;
        }
        let rate = self.slow_c / self.slow_w * NANOS;
        let wanted = if rate > target { target / rate } else { 1.0 };
        let p = if wanted < self.p {
            wanted
        } else {
            wanted.min(self.p * dynamics.max_increase.powf(dt / tau))
        };
        self.p = p.clamp(dynamics.min_p, dynamics.max_p);
        if !self.p.is_finite() {
            self.p = dynamics.max_p;
        }
        self.p
    }
}

/// `c` and `w` after `dt` nanoseconds with `n` arrivals spread over them.
#[inline]
fn fold(c: &mut f64, w: &mut f64, n: f64, dt: f64, tau: f64) {
    let x = dt / tau;
    let decay = (-x).exp();
    // 1 - exp(-x), exact for small x too.
    let gained = -(-x).exp_m1();
    let weight = if x > 1e-12 { gained / x } else { 1.0 };
    *c = *c * decay + n * weight;
    *w = *w * decay + tau * gained;
}

/// A probability that follows a target: the value decisions read, when to update it, and
/// the state an update folds arrivals into.
#[derive(Debug)]
pub(crate) struct Controller {
    /// The probability in force, as `f64` bits.
    p: AtomicU64,
    /// When the next update is due (nanoseconds of the sampler's clock).
    next_tick: AtomicU64,
    state: Mutex<Smoothed>,
}

impl Controller {
    pub(crate) fn new(now: u64, p: f64) -> Controller {
        Controller {
            p: AtomicU64::new(p.to_bits()),
            next_tick: AtomicU64::new(now),
            state: Mutex::new(Smoothed::new(now, 0, p)),
        }
    }

    /// The probability in force.
    #[inline]
    pub(crate) fn probability(&self) -> f64 {
        f64::from_bits(self.p.load(Ordering::Relaxed))
    }

    /// Whether an update is due at `now` (one load).
    #[inline]
    pub(crate) fn due(&self, now: u64) -> bool {
        now >= self.next_tick.load(Ordering::Relaxed)
    }

    /// Updates the estimate if nobody else is doing it: `total` reads the arrival total
    /// (called only by the updating thread). Never blocks.
    pub(crate) fn tick(
        &self,
        now: u64,
        total: impl FnOnce() -> u64,
        scale: f64,
        target: f64,
        dynamics: &Dynamics,
    ) {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::WouldBlock) => return,
            // An update cannot panic (float arithmetic only); if one ever did, its state is
            // still a valid estimate.
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        };
        if now < self.next_tick.load(Ordering::Relaxed) {
            return; // another thread updated while this one waited for nothing
        }
        self.next_tick
            .store(now.saturating_add(dynamics.tick), Ordering::Relaxed);
        let p = state.update(now, total(), scale, target, dynamics);
        self.p.store(p.to_bits(), Ordering::Relaxed);
    }

    /// Restarts the estimate at `now` with probability `p` (a reclaimed key).
    pub(crate) fn reset(&self, now: u64, total: u64, p: f64) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(e) => e.into_inner(),
        };
        *state = Smoothed::new(now, total, p);
        self.p.store(p.to_bits(), Ordering::Relaxed);
        self.next_tick
            .store(now.saturating_add(1), Ordering::Relaxed);
    }

    /// The smoothed rate per second, for reports.
    pub(crate) fn rate_per_second(&self) -> f64 {
        match self.state.try_lock() {
            Ok(state) => state.rate_per_second(),
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().rate_per_second(),
            Err(std::sync::TryLockError::WouldBlock) => 0.0,
        }
    }
}

/// Per-thread shard counters: each thread adds to the counter of its shard, so two threads
/// rarely write the same cache line; a reader sums the shards.
#[derive(Debug)]
pub(crate) struct Shards {
    cells: Box<[Padded]>,
    mask: usize,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

impl Shards {
    pub(crate) fn new() -> Shards {
        let n = shard_count();
        Shards {
            cells: (0..n).map(|_| Padded::default()).collect(),
            mask: n - 1,
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.cells[shard_index() & self.mask]
            .0
            .fetch_add(n, Ordering::Relaxed);
    }

    /// The wrapping sum of every shard.
    pub(crate) fn total(&self) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |sum, c| sum.wrapping_add(c.0.load(Ordering::Relaxed)))
    }
}

/// How many shards per counter: a power of two, twice the cores, at most 16.
pub(crate) fn shard_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cores * 2).next_power_of_two().clamp(2, 16)
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard number (assigned round-robin on first use; callers mask it).
#[inline]
pub(crate) fn shard_index() -> usize {
    SHARD
        .try_with(|s| {
            let v = s.get();
            if v != usize::MAX {
                v
            } else {
                let n = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
                s.set(n);
                n
            }
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn dynamics() -> Dynamics {
        Dynamics::new(1.0, 2.0, 0.0, 1.0)
    }

    /// Feeds `rate` arrivals per second for `secs`, one update per tick.
    fn run(s: &mut Smoothed, now: &mut u64, total: &mut u64, rate: f64, secs: f64, target: f64) {
        let d = dynamics();
        let ticks = (secs * 1e9 / d.tick as f64) as u64;
        let start = *total;
        for t in 1..=ticks {
            *now += d.tick;
            *total = start + (rate * (t * d.tick) as f64 / 1e9).round() as u64;
            s.update(*now, *total, 1.0, target, &d);
        }
    }

    #[test]
    fn the_estimate_is_the_rate_from_the_first_tick_on() {
        for rate in [200.0, 1_000.0, 100_000.0] {
            let (mut now, mut total) = (0, 0);
            let mut s = Smoothed::new(0, 0, 1.0);
            run(&mut s, &mut now, &mut total, rate, 0.1, 1e9);
            let estimate = s.rate_per_second();
            assert!((estimate / rate - 1.0).abs() < 0.25, "{rate}: {estimate}");
            run(&mut s, &mut now, &mut total, rate, 5.0, 1e9);
            let estimate = s.rate_per_second();
            assert!((estimate / rate - 1.0).abs() < 0.02, "{rate}: {estimate}");
        }
    }

    #[test]
    fn an_idle_gap_does_not_stretch_the_window() {
        let (mut now, mut total) = (0, 0);
        let mut s = Smoothed::new(0, 0, 1.0);
        run(&mut s, &mut now, &mut total, 10_000.0, 5.0, 100.0);
        // One hour without arrivals, then the burst resumes. The window stays one tau long,
        // so after one tau the estimate is 1 - 1/e of the burst's rate (Java's window would
        // be about an hour long, its estimate under 10 per second).
        now += 3_600 * 1_000 * MS;
        s.update(now, total, 1.0, 100.0, &dynamics());
        assert!(s.rate_per_second() < 1.0);
        run(&mut s, &mut now, &mut total, 10_000.0, 1.0, 100.0);
        let estimate = s.rate_per_second();
        assert!((6_000.0..6_700.0).contains(&estimate), "{estimate}");
        assert!((s.p - 100.0 / estimate).abs() < 0.01 * s.p, "{}", s.p);
    }

    #[test]
    fn increases_are_bounded_and_decreases_immediate() {
        let d = dynamics();
        let mut s = Smoothed::new(0, 0, 0.01);
        // Light load: p* = 1, but p may only double per tau.
        let mut now = 0;
        let mut total = 0;
        for _ in 0..64 {
            now += d.tick;
            total += 1;
            s.update(now, total, 1.0, 1_000.0, &d);
        }
        assert!((s.p - 0.02).abs() < 0.001, "{}", s.p);
        // Heavy load: straight down.
        now += d.tick;
        total += 1_000_000;
        let p = s.update(now, total, 1.0, 1_000.0, &d);
        assert!(p < 0.01, "{p}");
    }
}
