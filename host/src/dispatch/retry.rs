//! Retry policy: exponential backoff with jitter, and the default bound on retries.

use std::time::Duration;

/// How retries are spaced and bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry. Default 200 ms.
    pub base: Duration,
    /// Longest delay. Default 30 s.
    pub max: Duration,
    /// Retries allowed when the plugin sets no `max-retry`, and after failed calls. Default 5.
    pub default_max_retry: u32,
    /// Relative jitter, 0.0 to 1.0: each delay is scaled by a random factor in `[1 - j, 1 + j]`.
    /// Default 0.2.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
            default_max_retry: 5,
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): `base * 2^(attempt-1)`, capped, jittered.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        let j = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - j + 2.0 * j * fastrand::f64();
        capped.mul_f64(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(4), Duration::from_millis(1600));
        assert_eq!(p.backoff(40), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let p = RetryPolicy::default();
        for _ in 0..1000 {
            let d = p.backoff(3);
            assert!(
                d >= Duration::from_millis(640) && d <= Duration::from_millis(960),
                "{d:?}"
            );
        }
    }
}
