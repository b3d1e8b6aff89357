//! What happens after one reconcile (the shape of kube-runtime's controller): a reconcile returns
//! `Result<Action, AttemptError>`, [`error_policy`] maps an error to an action, and [`settle`] is
//! the one place that acts on the queue for the outcome (forget, backoff, requeue-after) and says
//! how the reconcile ended for the metrics. Retries wait in the queue's delay timers, never in a
//! worker.

use super::queue::WorkQueue;
use crate::contract::CategorizedError;
use crate::metrics::ReconcileResult;
use crate::plugin::CallError;
use std::hash::Hash;
use std::time::Duration;

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The object is settled: its failures are forgotten; it is reconciled again after
    /// `requeue_after` when set (a component's request, a phase deadline), else on its next change
    /// or the periodic resync.
    Done {
        /// When to look again, if asked.
        requeue_after: Option<Duration>,
    },
    /// Not settled yet: reconciled again after the key's next backoff delay, or after
    /// `requeue_after` when that is sooner.
    Requeue {
        /// A sooner time to look again, if asked.
        requeue_after: Option<Duration>,
    },
    /// Failed terminally: nothing more until the spec changes (its failures are forgotten).
    Terminal,
    /// The object is gone: its failures are forgotten.
    Forget,
}

impl Action {
    /// Settled, looked at again only on a change (kube-runtime's `await_change`).
    #[must_use]
    pub fn await_change() -> Self {
        Self::Done {
            requeue_after: None,
        }
    }
}

/// Why one reconcile attempt failed; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// A call into the plugin failed (trap, limit, malformed answer).
    #[error("plugin call failed")]
    Call(#[source] CallError),
    /// The plugin's finalizer could not be added or removed.
    #[error("cannot update the finalizers: {}", .0.message)]
    Finalizer(CategorizedError),
    /// The plugin's cleanup reported an error.
    #[error("cleanup failed: {}", .0.message)]
    Cleanup(CategorizedError),
    /// The status could not be written (the cause is logged where it happened).
    #[error("the status could not be written")]
    StatusWrite,
}

/// The action for a failed attempt: every error backs the key off alone (kube-runtime's
/// `error_policy`), so one poison object never slows the others.
#[must_use]
pub fn error_policy(_error: &AttemptError) -> Action {
    Action::Requeue {
        requeue_after: None,
    }
}

/// Act on the outcome of one reconcile of `key`: the only place that forgets a key's failures,
/// backs it off or schedules it again after a reconcile. Returns how the reconcile ended.
pub fn settle<K: Clone + Eq + Hash + Send + 'static>(
    queue: &WorkQueue<K>,
    key: &K,
    outcome: Result<Action, AttemptError>,
) -> ReconcileResult {
    let (action, result) = match outcome {
        Ok(action) => (
            action,
            match action {
                Action::Done {
                    requeue_after: None,
                }
                | Action::Forget => ReconcileResult::Ok,
                Action::Done {
                    requeue_after: Some(_),
                }
                | Action::Requeue { .. } => ReconcileResult::Requeue,
                Action::Terminal => ReconcileResult::Terminal,
            },
        ),
        Err(e) => (error_policy(&e), ReconcileResult::Error),
    };
    match action {
        Action::Done { requeue_after } => {
            queue.forget(key);
            if let Some(after) = requeue_after {
                queue.add_after(key.clone(), after);
            }
        }
        Action::Requeue { requeue_after } => {
            queue.add_with_backoff(key.clone());
            // The queue keeps the earliest timer of a key: a sooner request wins over the backoff.
            if let Some(after) = requeue_after {
                queue.add_after(key.clone(), after);
            }
        }
        Action::Terminal | Action::Forget => queue.forget(key),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::RetryPolicy;

    fn queue() -> WorkQueue<&'static str> {
        WorkQueue::new(RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        })
    }

    fn failed() -> Result<Action, AttemptError> {
        Err(AttemptError::StatusWrite)
    }

    /// Work on `key` once (as a worker does) and settle it with `outcome`.
    async fn reconcile(
        q: &WorkQueue<&'static str>,
        outcome: Result<Action, AttemptError>,
    ) -> ReconcileResult {
        let key = q.next().await.unwrap();
        let result = settle(q, &key, outcome);
        q.done(&key);
        result
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_is_retried_from_the_delay_queue_with_the_policy_backoff() {
        let q = queue();
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        q.add("poison");
        let mut key = q.next().await.unwrap();
        for attempt in 1..=4 {
            let failed_at = tokio::time::Instant::now();
            assert_eq!(settle(&q, &key, failed()), ReconcileResult::Error);
            q.done(&key);
            assert_eq!(q.failures(&"poison"), attempt);
            let delay = policy.backoff(attempt);
            assert_eq!(q.scheduled_in(&"poison"), Some(delay), "waits in the queue");
            assert!(q.is_empty(), "not queued before its backoff");
            // The next attempt comes from the delay queue, after exactly the policy's delay.
            key = q.next().await.unwrap();
            assert_eq!(failed_at.elapsed(), delay);
        }
        q.done(&key);
        // Another key does not wait for the poison one.
        q.add("healthy");
        assert_eq!(
            reconcile(&q, Ok(Action::await_change())).await,
            ReconcileResult::Ok
        );
    }

    #[tokio::test(start_paused = true)]
    async fn success_forgets_the_failures_and_requeues_as_asked() {
        let q = queue();
        q.add("k");
        assert_eq!(reconcile(&q, failed()).await, ReconcileResult::Error);
        assert_eq!(q.failures(&"k"), 1);
        assert_eq!(q.next().await, Some("k"));
        let after = Duration::from_secs(30);
        let done = Ok(Action::Done {
            requeue_after: Some(after),
        });
        assert_eq!(settle(&q, &"k", done), ReconcileResult::Requeue);
        q.done(&"k");
        assert_eq!(q.failures(&"k"), 0, "a success forgets the failures");
        assert_eq!(q.scheduled_in(&"k"), Some(after));
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_backs_off_unless_asked_sooner() {
        let q = queue();
        q.add("k");
        let requeue = |after| {
            Ok(Action::Requeue {
                requeue_after: after,
            })
        };
        assert_eq!(reconcile(&q, requeue(None)).await, ReconcileResult::Requeue);
        assert_eq!(q.scheduled_in(&"k"), Some(Duration::from_millis(200)));
        assert_eq!(q.next().await, Some("k"));
        let sooner = Duration::from_millis(50);
        assert_eq!(
            settle(&q, &"k", requeue(Some(sooner))),
            ReconcileResult::Requeue
        );
        q.done(&"k");
        assert_eq!(q.failures(&"k"), 2);
        assert_eq!(q.scheduled_in(&"k"), Some(sooner), "the sooner time wins");
    }

    #[tokio::test(start_paused = true)]
    async fn terminal_and_gone_forget_the_key_and_schedule_nothing() {
        let q = queue();
        for (action, result) in [
            (Action::Terminal, ReconcileResult::Terminal),
            (Action::Forget, ReconcileResult::Ok),
        ] {
            q.add("k");
            assert_eq!(reconcile(&q, failed()).await, ReconcileResult::Error);
            assert_eq!(q.next().await, Some("k"));
            assert_eq!(settle(&q, &"k", Ok(action)), result);
            q.done(&"k");
            assert_eq!(q.failures(&"k"), 0);
            assert_eq!(q.scheduled_in(&"k"), None);
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert!(q.is_empty(), "{action:?}: nothing comes back");
        }
    }
}
