//! Which init container runs next: the kubelet's init-container rules as
//! pure functions, so the order is unit-tested.
//!
//! Init containers run one at a time in spec order, each to a successful
//! exit, before any app container starts. A failed one is restarted (with
//! the pod's back-off) unless the pod's `restartPolicy` is `Never`, which
//! fails the pod. A sidecar (an init container with `restartPolicy:
//! Always`) lets the next one start once it is *started* (running and past
//! its startup probe) and keeps running beside the app containers; it is
//! restarted whenever it exits. Once an app container ran in the current
//! sandbox, regular init containers never run again there; a new sandbox
//! (e.g. after the old one died) runs them all again.

use crate::pod_status::ContainerView;

/// What the runtime shows of one container in the current sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not created yet (or its image is being pulled).
    Missing,
    /// Running; `started` once past its startup probe.
    Running {
        /// Past its startup probe (or it has none).
        started: bool,
    },
    /// Exited with this code.
    Exited(i32),
}

impl Seen {
    /// What a worker's view of a container shows.
    pub fn of(view: &ContainerView) -> Seen {
        use crate::cri::api::ContainerState;
        match &view.latest {
            Some(s) if s.state == ContainerState::ContainerRunning as i32 => Seen::Running { started: view.started },
            Some(s) if s.state == ContainerState::ContainerExited as i32 => Seen::Exited(s.exit_code),
            _ => Seen::Missing,
        }
    }
}

/// Whether the init containers after this one (and then the app containers) may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// This one is done (exited 0) or, for a sidecar, started.
    Open,
    /// Still to run, running, or restarting after a failure.
    Wait,
    /// Failed under `restartPolicy: Never`: the pod fails.
    Failed,
}

/// The gate of one init container in state `seen`.
pub fn gate(sidecar: bool, seen: Seen, restart_policy: &str) -> Gate {
    match (sidecar, seen) {
        (true, Seen::Running { started: true }) => Gate::Open,
        (true, _) => Gate::Wait,
        (false, Seen::Exited(0)) => Gate::Open,
        (false, Seen::Exited(_)) if restart_policy == "Never" => Gate::Failed,
        (false, _) => Gate::Wait,
    }
}

/// Whether the worker acts on this init container now (creates, starts,
/// restarts or probes it) rather than only reporting it: never while the
/// pod is stopping; a sidecar always; a regular one only until the app
/// containers ran, and not once it succeeded or failed for good.
pub fn acts(sidecar: bool, seen: Seen, restart_policy: &str, app_started: bool, stopping: bool) -> bool {
    if stopping {
        return false;
    }
    if sidecar {
        return true;
    }
    !app_started && gate(false, seen, restart_policy) == Gate::Wait
}

/// The restart policy a regular init container is synced with: a failed
/// one is retried unless the pod's policy is `Never` (`Always` means
/// `OnFailure` for it: it must not run again once it succeeded).
pub fn restart_policy_of_init(pod_policy: &str) -> &'static str {
    if pod_policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    }
}

/// Whether the app containers of a pod are done for good: all exited and
/// none to be restarted under the pod's policy (then its sidecars are stopped).
pub fn app_containers_finished(restart_policy: &str, app: &[Seen]) -> bool {
    restart_policy != "Always"
        && !app.is_empty()
        && app.iter().all(|seen| match seen {
            Seen::Exited(0) => true,
            Seen::Exited(_) => restart_policy == "Never",
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walk the init containers in order as the worker does; returns which
    /// it acts on and whether the app containers may start.
    fn step(sidecars: &[bool], seen: &[Seen], policy: &str) -> (Vec<usize>, Gate) {
        let mut acted = Vec::new();
        for (i, (sidecar, s)) in sidecars.iter().zip(seen).enumerate() {
            if acts(*sidecar, *s, restart_policy_of_init(policy), false, false) {
                acted.push(i);
            }
            match gate(*sidecar, *s, policy) {
                Gate::Open => continue,
                other => return (acted, other),
            }
        }
        (acted, Gate::Open)
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order() {
        let two = [false, false];
        assert_eq!(
            step(&two, &[Seen::Missing, Seen::Missing], "Always"),
            (vec![0], Gate::Wait)
        );
        assert_eq!(
            step(&two, &[Seen::Running { started: true }, Seen::Missing], "Always"),
            (vec![0], Gate::Wait)
        );
        assert_eq!(
            step(&two, &[Seen::Exited(0), Seen::Missing], "Always"),
            (vec![1], Gate::Wait)
        );
        assert_eq!(
            step(&two, &[Seen::Exited(0), Seen::Exited(0)], "Always"),
            (vec![], Gate::Open)
        );
    }

    #[test]
    fn a_failed_init_container_is_retried_unless_the_pod_never_restarts() {
        let two = [false, false];
        assert_eq!(
            step(&two, &[Seen::Exited(1), Seen::Missing], "OnFailure"),
            (vec![0], Gate::Wait)
        );
        assert_eq!(
            step(&two, &[Seen::Exited(1), Seen::Missing], "Always"),
            (vec![0], Gate::Wait)
        );
        assert_eq!(
            step(&two, &[Seen::Exited(1), Seen::Missing], "Never"),
            (vec![], Gate::Failed)
        );
        assert_eq!(restart_policy_of_init("Always"), "OnFailure");
    }

    #[test]
    fn a_sidecar_opens_the_way_once_started_and_is_always_kept_running() {
        let shape = [true, false];
        assert_eq!(
            step(&shape, &[Seen::Running { started: false }, Seen::Missing], "Never"),
            (vec![0], Gate::Wait)
        );
        assert_eq!(
            step(&shape, &[Seen::Running { started: true }, Seen::Missing], "Never"),
            (vec![0, 1], Gate::Wait)
        );
        assert_eq!(
            step(&shape, &[Seen::Running { started: true }, Seen::Exited(0)], "Never"),
            (vec![0], Gate::Open)
        );
        // After the app containers ran: the sidecar is restarted when it exits, regular init containers never re-run.
        assert!(acts(true, Seen::Exited(137), "Never", true, false));
        assert!(!acts(false, Seen::Missing, "Never", true, false));
        // A stopping pod starts nothing.
        assert!(!acts(true, Seen::Exited(0), "Never", true, true));
    }

    #[test]
    fn app_containers_finish_when_none_will_be_restarted() {
        assert!(app_containers_finished("Never", &[Seen::Exited(0), Seen::Exited(2)]));
        assert!(app_containers_finished("OnFailure", &[Seen::Exited(0)]));
        assert!(!app_containers_finished("OnFailure", &[Seen::Exited(1)]));
        assert!(!app_containers_finished("Always", &[Seen::Exited(0)]));
        assert!(!app_containers_finished(
            "Never",
            &[Seen::Exited(0), Seen::Running { started: true }]
        ));
    }
}
