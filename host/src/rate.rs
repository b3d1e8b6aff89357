//! Token buckets: how the host bounds the rate of what a plugin costs (reconciles of one object,
//! Kubernetes Events about one object, log output of one plugin).
//!
//! Time is tokio's clock, so tests run them under paused time.

use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: holds up to `burst` tokens, refilled continuously at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `per_second` tokens a second.
    pub fn new(burst: u64, per_second: f64) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let burst = burst as f64;
        Self {
            burst,
            per_second: per_second.max(0.0),
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// A full bucket of `burst` tokens refilled by one token every `every`.
    pub fn one_per(burst: u64, every: Duration) -> Self {
        let per_second = if every.is_zero() {
            f64::INFINITY
        } else {
            1.0 / every.as_secs_f64()
        };
        Self::new(burst, per_second)
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
    }

    /// The tokens in the bucket now.
    pub fn available(&mut self) -> f64 {
        self.refill();
        self.tokens
    }

    /// Take `n` tokens if the bucket holds them.
    pub fn try_take(&mut self, n: f64) -> bool {
        self.refill();
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Take one token, or tell how long until one is there (nothing is taken then).
    pub fn take_or_wait(&mut self) -> Result<(), Duration> {
        if self.try_take(1.0) {
            return Ok(());
        }
        let missing = 1.0 - self.tokens;
        let wait = if self.per_second > 0.0 {
            Duration::from_secs_f64(missing / self.per_second)
        } else {
            Duration::MAX
        };
        // Never a zero wait: rounding must not spin.
        Err(wait.max(Duration::from_millis(1)))
    }

    /// Whether the bucket is full again: then it remembers nothing a fresh one would not.
    pub fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_refill_rate() {
        let mut b = TokenBucket::one_per(3, Duration::from_secs(1));
        assert!(b.try_take(1.0) && b.try_take(1.0) && b.try_take(1.0));
        assert!(!b.try_take(1.0), "the burst is spent");
        let wait = b.take_or_wait().unwrap_err();
        assert!(
            wait > Duration::from_millis(990) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(!b.try_take(1.0), "half a token");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.take_or_wait().is_ok());
        assert!(!b.is_full());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(b.is_full(), "refilled up to the burst, not beyond");
        assert!(b.try_take(3.0) && !b.try_take(1.0));
    }

    #[tokio::test(start_paused = true)]
    async fn byte_buckets_take_many_tokens_at_once() {
        let mut b = TokenBucket::new(1000, 100.0);
        assert!(b.try_take(900.0));
        assert!(!b.try_take(200.0), "not taken when short");
        assert!(b.try_take(100.0), "a failed take takes nothing");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.try_take(200.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_rate_never_refills() {
        let mut b = TokenBucket::new(1, 0.0);
        assert!(b.try_take(1.0));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(b.take_or_wait(), Err(Duration::MAX));
    }
}
