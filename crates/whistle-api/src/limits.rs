//! Per-principal rate limits: a token bucket per authenticated principal, in memory on
//! each node. A request that finds its principal's bucket empty is refused with
//! `RESOURCE_EXHAUSTED` before anything is read or written. Buckets refill with the
//! monotonic clock (never the application's clock, which tests stop), so the limit is
//! about real request rates; a refill rate of 0 makes `burst` a fixed budget (tests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use whistle_domain::PrincipalId;

/// How many requests a principal may make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Sustained requests per second per principal (the bucket's refill rate).
    pub per_second: f64,
    /// Requests a principal may make at once after being idle (the bucket's size).
    pub burst: u32,
}

impl Default for RateLimits {
    /// 50 requests/s with bursts of 100: far above what a person or a department
    /// integration needs, low enough that one leaked token cannot flood the store.
    fn default() -> Self {
        RateLimits {
            per_second: 50.0,
            burst: 100,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Requests still allowed now (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The buckets of every principal seen on this node.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    /// One bucket per principal; bounded by the number of principals holding a valid
    /// token (only authenticated requests reach the limiter).
    buckets: Mutex<HashMap<PrincipalId, Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Take one request from `principal`'s bucket; `false` when it is empty.
    pub fn try_acquire(&self, principal: &PrincipalId) -> bool {
        self.try_acquire_at(principal, Instant::now())
    }

    fn try_acquire_at(&self, principal: &PrincipalId, now: Instant) -> bool {
        let burst = f64::from(self.limits.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(principal.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.limits.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(RateLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_refill_rate_per_principal() {
        let limiter = RateLimiter::new(RateLimits {
            per_second: 2.0,
            burst: 3,
        });
        let a = PrincipalId::new("a");
        let b = PrincipalId::new("b");
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.try_acquire_at(&a, t0));
        }
        assert!(!limiter.try_acquire_at(&a, t0), "burst spent");
        assert!(
            limiter.try_acquire_at(&b, t0),
            "other principals unaffected"
        );
        let t1 = t0 + Duration::from_millis(500);
        assert!(limiter.try_acquire_at(&a, t1), "one refilled after 0.5 s");
        assert!(!limiter.try_acquire_at(&a, t1));
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.try_acquire_at(&a, t2), "refill caps at the burst");
        }
        assert!(!limiter.try_acquire_at(&a, t2));
    }

    #[test]
    fn no_refill_is_a_fixed_budget() {
        let limiter = RateLimiter::new(RateLimits {
            per_second: 0.0,
            burst: 2,
        });
        let a = PrincipalId::new("a");
        let t0 = Instant::now();
        assert!(limiter.try_acquire_at(&a, t0));
        assert!(limiter.try_acquire_at(&a, t0));
        assert!(!limiter.try_acquire_at(&a, t0 + Duration::from_secs(3600)));
    }
}
