//! Time as a dependency: production reads the system clock, tests drive a manual one so
//! that deadlines and SLA arithmetic run in virtual time, and `whistle demo` runs an
//! accelerated one so that a simulated day (and its breaches) passes in minutes.

use std::sync::{Arc, Mutex};
use std::time::Instant;
use time::OffsetDateTime;

pub trait Clock: Send + Sync + 'static {
    /// The current time. The command pipeline normalises it to UTC microseconds before
    /// deciding; clocks should return UTC anyway.
    fn now(&self) -> OffsetDateTime;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Truncated to microseconds: the precision both stores keep, so a case folded in
    /// memory right after a command equals the same case read back from the log.
    fn now(&self) -> OffsetDateTime {
        micros(OffsetDateTime::now_utc())
    }
}

/// Truncated to microseconds, like [`SystemClock`].
fn micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// Simulated time: `start` plus the real time elapsed since construction, times `speed`.
/// Monotonic (it reads `Instant`, not the wall clock). The scheduler fires deadlines off
/// whatever clock the server holds, so under this one an 8-minute respond deadline falls
/// due after 8 real seconds at speed 60, and breaches happen live.
#[derive(Debug, Clone, Copy)]
pub struct AcceleratedClock {
    start: OffsetDateTime,
    origin: Instant,
    speed: f64,
}

impl AcceleratedClock {
    /// `speed` simulated seconds per real second; a speed that is not a positive finite
    /// number is taken as 1 (real time), so a bad flag cannot stop or reverse time.
    pub fn new(start: OffsetDateTime, speed: f64) -> Self {
        let speed = if speed.is_finite() && speed > 0.0 {
            speed
        } else {
            1.0
        };
        AcceleratedClock {
            start,
            origin: Instant::now(),
            speed,
        }
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// The simulated instant the clock started at.
    pub fn start(&self) -> OffsetDateTime {
        self.start
    }

    /// The real time it takes this clock to advance by `simulated` (zero if negative):
    /// how long to sleep until a simulated instant.
    pub fn real_duration(&self, simulated: time::Duration) -> std::time::Duration {
        let secs = simulated.as_seconds_f64() / self.speed;
        if secs > 0.0 && secs.is_finite() {
            std::time::Duration::from_secs_f64(secs)
        } else {
            std::time::Duration::ZERO
        }
    }
}

impl Clock for AcceleratedClock {
    fn now(&self) -> OffsetDateTime {
        let simulated = self.origin.elapsed().as_secs_f64() * self.speed;
        micros(self.start + time::Duration::seconds_f64(simulated))
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    pub fn new(at: OffsetDateTime) -> Self {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        // UTC like every clock: a time's offset is serialised with it (in case views),
        // and the store hands times back in UTC.
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .to_offset(time::UtcOffset::UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn accelerated_clock_runs_speed_times_faster_and_never_backwards() {
        let start = datetime!(2026-03-02 06:00:00 +08:00);
        let clock = AcceleratedClock::new(start, 60.0);
        let a = clock.now();
        let b = clock.now();
        assert!(a >= start && b >= a);
        assert_eq!(
            clock.real_duration(time::Duration::hours(1)),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(
            clock.real_duration(time::Duration::minutes(-5)),
            std::time::Duration::ZERO
        );
        assert_eq!(AcceleratedClock::new(start, -3.0).speed(), 1.0);
        assert_eq!(AcceleratedClock::new(start, f64::NAN).speed(), 1.0);
    }
}
