//! From a metric's recommendation to the replicas the autoscaler sets:
//! Kubernetes' `normalizeDesiredReplicas` (no `behavior`: the highest
//! recommendation of the downscale stabilization window, then the bounds
//! and a scale-up rate of max(2 × current, 4)) and
//! `normalizeDesiredReplicasWithBehaviors` (per-direction stabilization
//! windows and rate policies over the scale events of their periods), with
//! the `AbleToScale` and `ScalingLimited` reasons and messages they set.
//!
//! Pure: the per-autoscaler [`History`] and `now` (ms) are passed in.

/// One recommendation, kept for the stabilization windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recommendation {
    replicas: i32,
    at: i64,
}

/// One scale change, kept for the rate policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScaleEvent {
    change: i32,
    at: i64,
    outdated: bool,
}

/// What the controller remembers of one autoscaler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    recommendations: Vec<Recommendation>,
    up: Vec<ScaleEvent>,
    down: Vec<ScaleEvent>,
}

/// `selectPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the largest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// One `HPAScalingPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `Pods` (true) or `Percent`.
    pub pods: bool,
    /// `value`.
    pub value: i32,
    /// `periodSeconds`, in ms.
    pub period: i64,
}

/// One direction's `HPAScalingRules`, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `stabilizationWindowSeconds` in ms.
    pub window: i64,
    /// `selectPolicy`.
    pub select: Select,
    /// `policies`.
    pub policies: Vec<Policy>,
}

/// `spec.behavior`, both directions.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// `scaleUp`.
    pub up: Rules,
    /// `scaleDown`.
    pub down: Rules,
}

/// The outcome, with the conditions it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to set.
    pub replicas: i32,
    /// `AbleToScale` (True) reason and message.
    pub able: (&'static str, &'static str),
    /// `ScalingLimited`: whether limited, reason, message.
    pub limited: (bool, &'static str, &'static str),
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const TOO_FEW: (&str, &str) = (
    "TooFewReplicas",
    "the desired replica count is less than the minimum replica count",
);
const TOO_MANY: (&str, &str) = (
    "TooManyReplicas",
    "the desired replica count is more than the maximum replica count",
);
const UP_LIMIT: (&str, &str) = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
);
const DOWN_LIMIT: (&str, &str) = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
);
const IN_RANGE: (&str, &str) = ("DesiredWithinRange", "the desired count is within the acceptable range");

/// Replaces the oldest sample matching `old` with `new`, or appends it.
fn record<T>(list: &mut Vec<T>, old: impl Fn(&T) -> bool, new: T) {
    match list.iter().rposition(old) {
        Some(i) => list[i] = new,
        None => list.push(new),
    }
}

impl History {
    /// A history whose only recommendation is `replicas`, now (Kubernetes'
    /// `recordInitialRecommendation`).
    pub fn starting_at(replicas: i32, now: i64) -> Self {
        Self {
            recommendations: vec![Recommendation { replicas, at: now }],
            ..Self::default()
        }
    }

    /// Kubernetes' `stabilizeRecommendation` (no behavior).
    fn stabilize(&mut self, desired: i32, window: i64, now: i64) -> i32 {
        let cutoff = now - window;
        let highest = self
            .recommendations
            .iter()
            .filter(|r| r.at >= cutoff)
            .map(|r| r.replicas)
            .fold(desired, i32::max);
        let rec = Recommendation {
            replicas: desired,
            at: now,
        };
        record(&mut self.recommendations, |r| r.at < cutoff, rec);
        highest
    }

    /// Kubernetes' `stabilizeRecommendationWithBehaviors`.
    fn stabilize_with(
        &mut self,
        b: &Behavior,
        current: i32,
        desired: i32,
        now: i64,
    ) -> (i32, (&'static str, &'static str)) {
        let (up_cutoff, down_cutoff) = (now - b.up.window, now - b.down.window);
        let mut up = desired;
        let mut down = desired;
        for r in &self.recommendations {
            if r.at > up_cutoff {
                up = up.min(r.replicas);
            }
            if r.at > down_cutoff {
                down = down.max(r.replicas);
            }
        }
        let recommendation = current.max(up).min(down);
        let rec = Recommendation {
            replicas: desired,
            at: now,
        };
        record(
            &mut self.recommendations,
            |r| r.at < up_cutoff && r.at < down_cutoff,
            rec,
        );
        let why = if desired >= current {
            UP_STABILIZED
        } else {
            DOWN_STABILIZED
        };
        (recommendation, why)
    }

    /// Kubernetes' `storeScaleEvent`: kept only under a behavior.
    pub fn record_scale(&mut self, behavior: Option<&Behavior>, previous: i32, new: i32, now: i64) {
        let Some(b) = behavior else { return };
        let (events, rules, change) = if new > previous {
            (&mut self.up, &b.up, new - previous)
        } else {
            (&mut self.down, &b.down, previous - new)
        };
        let longest = rules.policies.iter().map(|p| p.period).max().unwrap_or(0);
        for e in events.iter_mut() {
            if e.at < now - longest {
                e.outdated = true;
            }
        }
        let event = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        record(events, |e| e.outdated, event);
    }
}

/// Kubernetes' `getReplicasChangePerPeriod`.
fn changed_within(events: &[ScaleEvent], period: i64, now: i64) -> i32 {
    events.iter().filter(|e| e.at > now - period).map(|e| e.change).sum()
}

/// Kubernetes' `calculateScaleUpLimitWithScalingRules`.
fn scale_up_limit(h: &History, current: i32, rules: &Rules, now: i64) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::min,
        Select::Max => i32::max,
    };
    let mut result = if rules.select == Select::Min {
        i32::MAX
    } else {
        i32::MIN
    };
    for p in &rules.policies {
        let start = current - changed_within(&h.up, p.period, now) + changed_within(&h.down, p.period, now);
        let proposed = if p.pods {
            start + p.value
        } else {
            (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
        };
        result = pick(result, proposed);
    }
    result
}

/// Kubernetes' `calculateScaleDownLimitWithBehaviors`.
fn scale_down_limit(h: &History, current: i32, rules: &Rules, now: i64) -> i32 {
    let pick: fn(i32, i32) -> i32 = match rules.select {
        Select::Disabled => return current,
        Select::Min => i32::max,
        Select::Max => i32::min,
    };
    let mut result = if rules.select == Select::Min {
        i32::MIN
    } else {
        i32::MAX
    };
    for p in &rules.policies {
        let start = current - changed_within(&h.up, p.period, now) + changed_within(&h.down, p.period, now);
        let proposed = if p.pods {
            start - p.value
        } else {
            (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
        };
        result = pick(result, proposed);
    }
    result
}

/// The replicas to set for a recommendation of `desired` (already clamped
/// to neither bound): stabilization, then bounds and rates.
#[allow(clippy::too_many_arguments)]
pub fn normalize(
    h: &mut History,
    behavior: Option<&Behavior>,
    downscale_window: i64,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
    now: i64,
) -> Decision {
    let Some(b) = behavior else {
        let stabilized = h.stabilize(desired, downscale_window, now);
        let able = if stabilized != desired { DOWN_STABILIZED } else { READY };
        // Kubernetes' `convertDesiredReplicasWithRules`.
        let up_limit = (2 * current).max(4);
        let (replicas, why) = if stabilized < min {
            (min, TOO_FEW)
        } else if max > up_limit && stabilized > up_limit {
            (up_limit, UP_LIMIT)
        } else if stabilized > max {
            (max, TOO_MANY)
        } else {
            (stabilized, IN_RANGE)
        };
        return Decision {
            replicas,
            able,
            limited: (replicas != stabilized, why.0, why.1),
        };
    };
    let (stabilized, why) = h.stabilize_with(b, current, desired, now);
    let able = if stabilized != desired { why } else { READY };
    // Kubernetes' `convertDesiredReplicasWithBehaviorRate`.
    let (replicas, why) = if stabilized > current {
        let limit = scale_up_limit(h, current, &b.up, now).max(current);
        let (allowed, why) = if max > limit {
            (limit, UP_LIMIT)
        } else {
            (max, TOO_MANY)
        };
        if stabilized > allowed {
            (allowed, why)
        } else {
            (stabilized, IN_RANGE)
        }
    } else if stabilized < current {
        let limit = scale_down_limit(h, current, &b.down, now).min(current);
        let (allowed, why) = if min < limit {
            (limit, DOWN_LIMIT)
        } else {
            (min, TOO_FEW)
        };
        if stabilized < allowed {
            (allowed, why)
        } else {
            (stabilized, IN_RANGE)
        }
    } else {
        (stabilized, IN_RANGE)
    };
    Decision {
        replicas,
        able,
        limited: (replicas != stabilized, why.0, why.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn defaults(down_window: i64) -> Behavior {
        Behavior {
            up: Rules {
                window: 0,
                select: Select::Max,
                policies: vec![
                    Policy {
                        pods: true,
                        value: 4,
                        period: 15 * S,
                    },
                    Policy {
                        pods: false,
                        value: 100,
                        period: 15 * S,
                    },
                ],
            },
            down: Rules {
                window: down_window,
                select: Select::Max,
                policies: vec![Policy {
                    pods: false,
                    value: 100,
                    period: 15 * S,
                }],
            },
        }
    }

    #[test]
    fn without_behavior_scale_down_waits_for_the_window() {
        let mut h = History::default();
        let d = normalize(&mut h, None, 300 * S, 4, 4, 1, 10, 0);
        assert_eq!((d.replicas, d.able.0), (4, "ReadyForNewScale"));
        // One minute later metrics ask for 1: the 4 of a minute ago wins.
        let d = normalize(&mut h, None, 300 * S, 4, 1, 1, 10, 60 * S);
        assert_eq!((d.replicas, d.able.0), (4, "ScaleDownStabilized"));
        // After the window only the recent 1 counts.
        let d = normalize(&mut h, None, 300 * S, 4, 1, 1, 10, 400 * S);
        assert_eq!(d.replicas, 1);
        assert_eq!(
            d.limited,
            (
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range"
            )
        );
    }

    #[test]
    fn without_behavior_bounds_and_the_doubling_rate_apply() {
        let mut h = History::default();
        let d = normalize(&mut h, None, 0, 1, 20, 1, 10, 0);
        assert_eq!((d.replicas, d.limited.0, d.limited.1), (4, true, "ScaleUpLimit"));
        let d = normalize(&mut h, None, 0, 8, 20, 1, 10, 1);
        assert_eq!((d.replicas, d.limited.1), (10, "TooManyReplicas"));
        let d = normalize(&mut h, None, 0, 3, 0, 2, 10, 2);
        assert_eq!((d.replicas, d.limited.1), (2, "TooFewReplicas"));
    }

    #[test]
    fn behavior_rate_policies_limit_per_period() {
        let b = defaults(0);
        let mut h = History::default();
        // From 1, Max(1 + 4 pods, 1 * 200%) = 5.
        let d = normalize(&mut h, Some(&b), 0, 1, 10, 1, 20, 0);
        assert_eq!((d.replicas, d.limited.1), (5, "ScaleUpLimit"));
        h.record_scale(Some(&b), 1, 5, 0);
        // Five seconds later the period still started at 1: no more room.
        let d = normalize(&mut h, Some(&b), 0, 5, 10, 1, 20, 5 * S);
        assert_eq!(d.replicas, 5);
        // After the period: from 5, Max(9, 10) = 10.
        let d = normalize(&mut h, Some(&b), 0, 5, 10, 1, 20, 20 * S);
        assert_eq!((d.replicas, d.limited.0), (10, false));
        // Min picks the smaller policy; Disabled forbids the direction.
        let mut min = defaults(0);
        min.up.select = Select::Min;
        assert_eq!(
            normalize(&mut History::default(), Some(&min), 0, 10, 40, 1, 50, 0).replicas,
            14
        );
        min.down.select = Select::Disabled;
        assert_eq!(
            normalize(&mut History::default(), Some(&min), 0, 10, 2, 1, 50, 0).replicas,
            10
        );
        // A Pods scale-down policy of 1 per minute.
        let mut slow = defaults(0);
        slow.down.policies = vec![Policy {
            pods: true,
            value: 1,
            period: 60 * S,
        }];
        let d = normalize(&mut History::default(), Some(&slow), 0, 4, 1, 1, 10, 0);
        assert_eq!((d.replicas, d.limited.1), (3, "ScaleDownLimit"));
    }

    #[test]
    fn behavior_windows_stabilize_each_direction() {
        let b = defaults(30 * S);
        let mut h = History::default();
        normalize(&mut h, Some(&b), 300 * S, 4, 4, 1, 10, 0);
        let d = normalize(&mut h, Some(&b), 300 * S, 4, 1, 1, 10, 10 * S);
        assert_eq!((d.replicas, d.able.0), (4, "ScaleDownStabilized"));
        // The behavior's 30 s window, not the 300 s flag, governs.
        let d = normalize(&mut h, Some(&b), 300 * S, 4, 1, 1, 10, 45 * S);
        assert_eq!((d.replicas, d.able.0), (1, "ReadyForNewScale"));
        // A scale-up window keeps the lowest recent recommendation.
        let mut slow_up = defaults(0);
        slow_up.up.window = 60 * S;
        let mut h = History::default();
        normalize(&mut h, Some(&slow_up), 0, 2, 2, 1, 10, 0);
        let d = normalize(&mut h, Some(&slow_up), 0, 2, 6, 1, 10, 10 * S);
        assert_eq!((d.replicas, d.able.0), (2, "ScaleUpStabilized"));
    }
}
