//! Time for the limiters, as nanoseconds since a fixed origin. The limiters take the time as
//! a parameter so unit tests can drive them with any sequence of instants; this is the thin
//! wrapper the runtime uses to read the real monotonic clock.

use std::time::Instant;

/// The process's monotonic clock, read as nanoseconds since this clock was created.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose zero is now.
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            origin: Instant::now(),
        }
    }

    /// Nanoseconds since the clock was created (saturating after ~584 years).
    pub fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_backwards() {
        let clock = MonotonicClock::new();
        let a = clock.now_nanos();
        let b = clock.now_nanos();
        assert!(b >= a);
    }
}
