//! Lock-free per-instance rate limit for debug traces (GCRA on one atomic).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Where the sampler reads the time: the debug rate limit needs a monotonic clock, the
/// expiry of HMAC debug tokens the wall clock.
#[derive(Clone)]
pub(crate) enum Clock {
    /// `Instant` for the rate limit (immune to wall-clock jumps), `SystemTime` for expiry.
    System(Instant),
    /// One function for both: the time since the Unix epoch (tests and simulations).
    Custom(Arc<dyn Fn() -> Duration + Send + Sync>),
}

impl Clock {
    /// Nanoseconds since a fixed origin, for the rate limit.
    pub(crate) fn now_nanos(&self) -> u64 {
        let elapsed = match self {
            Clock::System(origin) => origin.elapsed(),
            Clock::Custom(f) => f(),
        };
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Seconds since the Unix epoch, for token expiry (0 if the clock is before 1970).
    pub(crate) fn unix_seconds(&self) -> u64 {
        match self {
            Clock::System(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Clock::Custom(f) => f().as_secs(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clock::System(_) => f.write_str("Clock::System"),
            Clock::Custom(_) => f.write_str("Clock::Custom"),
        }
    }
}

/// Allows `per_second` grants in any burst and `per_second` per second sustained.
/// State is the "theoretical arrival time" of the next grant, so one CAS decides.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    tat: AtomicU64,
}

impl RateLimiter {
    pub(crate) fn try_acquire(&self, now: u64, per_second: u32) -> bool {
        if per_second == 0 {
            return false;
        }
        let interval = NANOS_PER_SECOND / u64::from(per_second);
        let tolerance = NANOS_PER_SECOND - interval;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > tolerance {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                start.saturating_add(interval),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::default();
        let s = NANOS_PER_SECOND;
        let granted = (0..20).filter(|_| limiter.try_acquire(s, 10)).count();
        assert_eq!(granted, 10);
        assert!(!limiter.try_acquire(s + s / 20, 10));
        assert!(limiter.try_acquire(s + s / 10, 10));
        assert!(!limiter.try_acquire(s + s / 10, 10));
        let granted = (0..20).filter(|_| limiter.try_acquire(10 * s, 10)).count();
        assert_eq!(granted, 10);
    }

    #[test]
    fn zero_disables() {
        let limiter = RateLimiter::default();
        assert!(!limiter.try_acquire(0, 0));
    }
}
