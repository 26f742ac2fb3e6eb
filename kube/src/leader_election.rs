//! Leader election on a coordination.k8s.io Lease, so several copies of a
//! component (scheduler, controller-manager) can run and only one acts; with
//! kube-scheduler's and kube-controller-manager's flags ([`LeaderElectionArgs`]).
//!
//! Same rules as client-go's leaderelection: a candidate takes the Lease when it is free
//! or when its holder has not renewed it for `lease_duration` *as observed locally*
//! (clocks of different machines are never compared); the leader renews every
//! `retry_period` and gives up leadership if it could not renew for `renew_deadline`.
//! Writes use the Lease's resourceVersion, so two candidates can never both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::{debug, info, warn};

/// The `--leader-elect*` flags of kube-scheduler and kube-controller-manager,
/// one group for every binary that elects a leader.
#[derive(clap::Args, Clone, Debug)]
pub struct LeaderElectionArgs {
    /// Take part in leader election: act only while holding the Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Name of the leader Lease (default: the component's own).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
    /// How long a non-renewed Lease blocks other candidates.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up (and exiting).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Pause between Lease attempts.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// This instance's identity in the Lease (default: hostname_pid).
    #[arg(long)]
    pub identity: Option<String>,
}

impl LeaderElectionArgs {
    /// The election's timing.
    pub fn timing(&self) -> LeaseTiming {
        LeaseTiming {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        }
    }

    /// `--identity`, or `<hostname>_<pid>` as client-go builds it.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}_{}", host.trim(), std::process::id())
        })
    }

    /// A candidate for the Lease `--leader-elect-resource-name` (or
    /// `default_name`), when `--leader-elect` is on.
    pub fn elector(&self, client: Client, default_name: &str) -> Option<LeaderElector> {
        self.leader_elect.then(|| {
            LeaderElector::new(
                client,
                &self.leader_elect_resource_namespace,
                self.leader_elect_resource_name.as_deref().unwrap_or(default_name),
                &self.identity(),
                self.timing(),
            )
        })
    }
}

/// Timing of the election (kube-scheduler's defaults: 15 s, 10 s, 2 s).
#[derive(Clone, Copy, Debug)]
pub struct LeaseTiming {
    /// How long a non-renewed Lease blocks other candidates.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Leadership was lost (could not renew in time, or someone else holds the Lease).
#[derive(Debug, Error)]
pub enum LeaderElectionError {
    /// Renewal did not succeed within the renew deadline.
    #[error("could not renew lease {0} within the renew deadline")]
    RenewDeadline(String),
    /// Another candidate holds the Lease.
    #[error("lease {lease} is now held by {holder}")]
    Stolen {
        /// The Lease.
        lease: String,
        /// Its new holder.
        holder: String,
    },
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    /// The last Lease record seen and when it changed, by the local clock.
    observed: Option<(LeaseSpec, Instant)>,
}

enum Attempt {
    Acquired,
    HeldByOther(String),
}

impl LeaderElector {
    /// A candidate `identity` for Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: LeaseTiming) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            observed: None,
        }
    }

    /// Wait until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        info!(lease = %self.name, identity = %self.identity, "waiting to become leader");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Acquired) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return;
                }
                Ok(Attempt::HeldByOther(holder)) => debug!(%holder, "lease held by another candidate"),
                Err(e) => warn!(error = %e, "lease acquire attempt failed"),
            }
            tokio::time::sleep(self.jittered_retry()).await;
        }
    }

    /// Keep renewing while leading; returns only when leadership is lost.
    pub async fn hold(&mut self) -> LeaderElectionError {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Acquired) => last_renew = Instant::now(),
                Ok(Attempt::HeldByOther(holder)) => {
                    return LeaderElectionError::Stolen {
                        lease: self.name.clone(),
                        holder,
                    }
                }
                Err(e) => warn!(error = %e, "lease renewal failed"),
            }
            if last_renew.elapsed() > self.timing.renew_deadline {
                return LeaderElectionError::RenewDeadline(self.name.clone());
            }
        }
    }

    /// Give the Lease up (on clean shutdown) so a standby takes over at once.
    pub async fn release(&mut self) {
        let Ok(mut lease) = self.api.get(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.name, "released leadership"),
            Err(e) => warn!(error = %e, "could not release the lease"),
        }
    }

    fn jittered_retry(&self) -> Duration {
        self.timing.retry_period.mul_f64(1.0 + fastrand::f64() * 0.2)
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = self.timing.lease_duration.as_secs().max(1) as i32;
        let existing = match self.api.get(&self.name).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration_secs),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.observe(created.spec.unwrap_or_default());
                        Ok(Attempt::Acquired)
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        Ok(Attempt::HeldByOther("(just created by another candidate)".into()))
                    }
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let spec = existing.spec.clone().unwrap_or_default();
        self.observe(spec.clone());
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let i_hold = holder == self.identity;
        if !i_hold && !holder.is_empty() {
            let held_for = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration_secs).max(0) as u64);
            let (_, since) = self.observed.as_ref().expect("just observed");
            if since.elapsed() < held_for {
                return Ok(Attempt::HeldByOther(holder));
            }
            info!(%holder, "lease expired; taking over");
        }
        let mut lease = existing;
        let new_spec = lease.spec.get_or_insert_with(Default::default);
        if !i_hold {
            new_spec.acquire_time = Some(now.clone());
            new_spec.lease_transitions = Some(new_spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(duration_secs);
        new_spec.renew_time = Some(now);
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                self.observe(updated.spec.unwrap_or_default());
                Ok(Attempt::Acquired)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::HeldByOther("(conflict)".into())),
            Err(e) => Err(e),
        }
    }

    /// Remember the record and restart the local clock when it changed.
    fn observe(&mut self, spec: LeaseSpec) {
        let changed = self.observed.as_ref().is_none_or(|(old, _)| *old != spec);
        if changed {
            self.observed = Some((spec, Instant::now()));
        }
    }
}
