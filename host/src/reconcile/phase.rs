//! Seed-004 phases (`Pending`, `Creating`, `Ready`, `Updating`, `Failed`, `Deleting`), phase
//! timeouts, and Cluster-API-style failure reasons.

use super::conditions::{ComputedStatus, OverallState, Verdict};
use crate::contract::{ComponentHealth, ErrorCategory, HealthState};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// The phase written to `status.phase`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting for an owner reference; nothing is done yet.
    Pending,
    /// Not Ready yet, and never was.
    Creating,
    /// Every component is ready.
    Ready,
    /// Was Ready, and is converging (or degraded) again.
    Updating,
    /// A terminal failure: nothing is done until the spec changes.
    Failed,
    /// Being deleted: the plugin cleans up before the finalizer goes.
    Deleting,
}

impl Phase {
    /// The word written to `status.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Creating => "Creating",
            Self::Ready => "Ready",
            Self::Updating => "Updating",
            Self::Failed => "Failed",
            Self::Deleting => "Deleting",
        }
    }

    /// The phase named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Creating,
            Self::Ready,
            Self::Updating,
            Self::Failed,
            Self::Deleting,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// The phase of an object that is neither deleted nor waiting for its owner: `Failed` on a
    /// terminal verdict, `Ready`, else `Updating` if it was Ready (or updating) before, else
    /// `Creating`.
    pub fn from_status(computed: &ComputedStatus, previous: Option<Phase>) -> Self {
        if computed.verdict == Verdict::Fail {
            Self::Failed
        } else if computed.state == OverallState::Ready {
            Self::Ready
        } else if matches!(previous, Some(Self::Ready | Self::Updating)) {
            Self::Updating
        } else {
            Self::Creating
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A terminal failure, as Cluster API's `status.failureReason` and `status.failureMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// A CamelCase token, e.g. `InvalidSpec` or `CreatingTimeout`.
    pub reason: String,
    /// What went wrong.
    pub message: String,
}

/// The terminal failure a computed status stands for: `None` unless the verdict is `Fail`. The
/// reason is `AuthFailed`, `InvalidSpec`, `MissingUpstreamDependency` or `ResourceExhaustion`
/// from the first error of those categories, else `<Component>Failed`.
pub fn failure_of(health: &[ComponentHealth], computed: &ComputedStatus) -> Option<Failure> {
    if computed.verdict != Verdict::Fail {
        return None;
    }
    const TOKENS: [(ErrorCategory, &str); 4] = [
        (ErrorCategory::Auth, "AuthFailed"),
        (ErrorCategory::InvalidSpec, "InvalidSpec"),
        (
            ErrorCategory::MissingUpstreamDependency,
            "MissingUpstreamDependency",
        ),
        (ErrorCategory::ResourceExhaustion, "ResourceExhaustion"),
    ];
    let by_category = TOKENS.iter().find_map(|(category, token)| {
        health
            .iter()
            .flat_map(|h| &h.errors)
            .find(|e| e.category == *category)
            .map(|e| Failure {
                reason: (*token).to_owned(),
                message: e.message.clone(),
            })
    });
    by_category.or_else(|| {
        Some(
            health
                .iter()
                .find(|h| h.state == HealthState::Failed)
                .map_or_else(
                    || Failure {
                        reason: "ReconcileFailed".into(),
                        message: "the reconcile failed".into(),
                    },
                    |h| Failure {
                        reason: format!("{}Failed", h.component),
                        message: h.message.clone(),
                    },
                ),
        )
    })
}

/// The phase an object was in, read from its stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseRecord {
    /// `status.phase`.
    pub phase: Phase,
    /// `status.lastPhaseTransitionTime`.
    pub since: Timestamp,
}

impl PhaseRecord {
    /// Read `phase` and `lastPhaseTransitionTime` from a status; `None` if either is missing.
    pub fn from_status(status: &Value) -> Option<Self> {
        let phase = Phase::parse(status.get("phase")?.as_str()?)?;
        let since = status
            .get("lastPhaseTransitionTime")?
            .as_str()?
            .parse()
            .ok()?;
        Some(Self { phase, since })
    }
}

/// A phase after its timeout was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timed {
    /// The phase: the one asked about, or `Failed` when it timed out.
    pub phase: Phase,
    /// When the object entered it.
    pub since: Timestamp,
    /// Set when the phase timed out: reason `<Phase>Timeout`.
    pub timeout: Option<Failure>,
    /// How long until the phase times out, for a timed phase that has not yet.
    pub time_left: Option<Duration>,
}

/// Check `phase` against its limit in `limits` (by phase name). The object entered the phase
/// `previous.since` if it was already in it, else now. Stored times have second precision, so a
/// phase times out at the end of its stored second plus the limit: up to a second late, never
/// early.
pub fn time_phase(
    phase: Phase,
    previous: Option<&PhaseRecord>,
    now: Timestamp,
    limits: &HashMap<String, Duration>,
) -> Timed {
    let since = match previous {
        Some(p) if p.phase == phase => p.since,
        _ => now,
    };
    let untimed = Timed {
        phase,
        since,
        timeout: None,
        time_left: None,
    };
    if phase == Phase::Failed {
        return untimed;
    }
    let Some(limit) = limits.get(phase.as_str()) else {
        return untimed;
    };
    let start = Timestamp::from_second(since.as_second()).unwrap_or(since);
    let deadline = start
        .saturating_add(Duration::from_secs(1))
        .and_then(|t| t.saturating_add(*limit))
        .unwrap_or(Timestamp::MAX);
    match Duration::try_from(deadline.duration_since(now)) {
        Ok(left) if !left.is_zero() => Timed {
            time_left: Some(left),
            ..untimed
        },
        _ => Timed {
            phase: Phase::Failed,
            since: now,
            timeout: Some(Failure {
                reason: format!("{phase}Timeout"),
                message: format!("phase {phase} lasted longer than {}", human(*limit)),
            }),
            time_left: None,
        },
    }
}

/// A duration for messages: `15m`, `90s`, `1h`, `250ms`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        format!("{}ms", d.as_millis())
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// RFC 3339 with second precision, as Kubernetes writes times.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{CategorizedError, Observability};
    use crate::reconcile::compute;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn limits(phase: &str, secs: u64) -> HashMap<String, Duration> {
        HashMap::from([(phase.to_owned(), Duration::from_secs(secs))])
    }

    fn health(state: HealthState, errors: &[ErrorCategory]) -> Vec<ComponentHealth> {
        vec![ComponentHealth {
            component: "Deployment".into(),
            state,
            reason: "R".into(),
            message: "deployment message".into(),
            errors: errors
                .iter()
                .map(|c| CategorizedError {
                    category: *c,
                    message: format!("{} happened", c.reason()),
                })
                .collect(),
            requeue_after: None,
        }]
    }

    #[test]
    fn phases_follow_readiness_and_history() {
        let progressing = compute(
            &health(HealthState::Progressing, &[]),
            false,
            Observability::Info,
        );
        let ready = compute(&health(HealthState::Ready, &[]), false, Observability::Info);
        let failed = compute(
            &health(HealthState::Progressing, &[ErrorCategory::InvalidSpec]),
            false,
            Observability::Info,
        );
        assert_eq!(Phase::from_status(&progressing, None), Phase::Creating);
        assert_eq!(
            Phase::from_status(&progressing, Some(Phase::Creating)),
            Phase::Creating
        );
        assert_eq!(Phase::from_status(&ready, None), Phase::Ready);
        assert_eq!(
            Phase::from_status(&progressing, Some(Phase::Ready)),
            Phase::Updating
        );
        assert_eq!(
            Phase::from_status(&progressing, Some(Phase::Updating)),
            Phase::Updating
        );
        assert_eq!(
            Phase::from_status(&failed, Some(Phase::Ready)),
            Phase::Failed
        );
        for p in [
            "Pending", "Creating", "Ready", "Updating", "Failed", "Deleting",
        ] {
            assert_eq!(Phase::parse(p).unwrap().as_str(), p);
        }
        assert_eq!(Phase::parse("Provisioning"), None);
    }

    #[test]
    fn failure_reasons_are_tokens_by_category() {
        let cases = [
            (ErrorCategory::Auth, Some("AuthFailed")),
            (ErrorCategory::InvalidSpec, Some("InvalidSpec")),
            (
                ErrorCategory::MissingUpstreamDependency,
                Some("MissingUpstreamDependency"),
            ),
            (
                ErrorCategory::ResourceExhaustion,
                Some("ResourceExhaustion"),
            ),
            (ErrorCategory::Infrastructure, None),
            (ErrorCategory::MissingDownstreamDependency, None),
        ];
        for (category, reason) in cases {
            let h = health(HealthState::Progressing, &[category]);
            let f = failure_of(&h, &compute(&h, false, Observability::Info));
            assert_eq!(
                f.as_ref().map(|f| f.reason.as_str()),
                reason,
                "{category:?}"
            );
            if let Some(f) = f {
                assert_eq!(f.message, format!("{} happened", category.reason()));
            }
        }
        let h = health(HealthState::Failed, &[]);
        let f = failure_of(&h, &compute(&h, false, Observability::Info)).unwrap();
        assert_eq!(
            (f.reason.as_str(), f.message.as_str()),
            ("DeploymentFailed", "deployment message")
        );
    }

    #[test]
    fn a_new_phase_starts_now_and_an_old_one_keeps_its_time() {
        let now = t("2026-01-01T00:10:00Z");
        let before = PhaseRecord {
            phase: Phase::Creating,
            since: t("2026-01-01T00:00:00Z"),
        };
        let same = time_phase(Phase::Creating, Some(&before), now, &HashMap::new());
        assert_eq!(
            (same.since, same.timeout, same.time_left),
            (before.since, None, None)
        );
        let changed = time_phase(Phase::Ready, Some(&before), now, &HashMap::new());
        assert_eq!(changed.since, now);
    }

    #[test]
    fn a_timed_phase_fails_past_its_limit_and_not_before() {
        let since = t("2026-01-01T00:00:00Z");
        let before = PhaseRecord {
            phase: Phase::Creating,
            since,
        };
        let limits = limits("Creating", 60);
        // 30 s in: 31 s left (the stored second counts as a whole).
        let early = time_phase(
            Phase::Creating,
            Some(&before),
            t("2026-01-01T00:00:30Z"),
            &limits,
        );
        assert_eq!(early.phase, Phase::Creating);
        assert_eq!(early.time_left, Some(Duration::from_secs(31)));
        assert_eq!(early.timeout, None);
        let late = time_phase(
            Phase::Creating,
            Some(&before),
            t("2026-01-01T00:01:01Z"),
            &limits,
        );
        assert_eq!(late.phase, Phase::Failed);
        assert_eq!(late.since, t("2026-01-01T00:01:01Z"));
        let timeout = late.timeout.unwrap();
        assert_eq!(timeout.reason, "CreatingTimeout");
        assert_eq!(timeout.message, "phase Creating lasted longer than 1m");
        // Another phase is not timed by the Creating limit.
        let ready = time_phase(
            Phase::Ready,
            Some(&before),
            t("2026-01-01T01:00:00Z"),
            &limits,
        );
        assert_eq!((ready.phase, ready.time_left), (Phase::Ready, None));
    }

    #[test]
    fn a_fresh_phase_gets_its_whole_limit() {
        let now = t("2026-01-01T00:00:00.600Z");
        let fresh = time_phase(Phase::Creating, None, now, &limits("Creating", 1));
        let left = fresh.time_left.unwrap();
        assert!(
            left >= Duration::from_secs(1) && left <= Duration::from_secs(2),
            "{left:?}"
        );
        assert_eq!(fresh.since, now);
    }

    #[test]
    fn status_records_round_trip() {
        let status = serde_json::json!({"phase": "Updating", "lastPhaseTransitionTime": "2026-01-01T00:00:00Z"});
        let r = PhaseRecord::from_status(&status).unwrap();
        assert_eq!(r.phase, Phase::Updating);
        assert_eq!(rfc3339(r.since), "2026-01-01T00:00:00Z");
        assert_eq!(PhaseRecord::from_status(&serde_json::json!({})), None);
        assert_eq!(human(Duration::from_secs(900)), "15m");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_secs(90)), "90s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
