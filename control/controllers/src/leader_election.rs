//! Leader election on a coordination.k8s.io/v1 Lease, so several copies of
//! the controller-manager can run and only one acts.
//!
//! Like client-go's leaderelection: a candidate takes the Lease when it is
//! free or when its holder has not renewed it for `leaseDurationSeconds`,
//! measured on the candidate's own clock from when it last *saw* the Lease
//! change (so clocks need not agree). The leader renews every retry period;
//! if it cannot renew within the renew deadline it must stop acting — the
//! binary exits, as kube-controller-manager does. Every write carries the
//! resourceVersion it read, so two candidates never both win.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};

/// Settings of one election.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity.
    pub identity: String,
    /// How long a Lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// How long the leader may fail to renew before giving up.
    pub renew_deadline: Duration,
    /// Interval between attempts.
    pub retry_period: Duration,
}

/// Errors of the election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    /// The leader could not renew within the renew deadline, or another took the Lease.
    #[error("lost the leader lease {0}")]
    Lost(String),
}

/// A candidate for the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// Last Lease record seen (holder, renewTime, resourceVersion) and when it was seen to change.
    observed: Option<(String, Instant)>,
}

impl LeaderElector {
    /// A candidate using `client`.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became leader");
                    return;
                }
                Ok(false) => {}
                Err(err) => tracing::debug!(error = %err, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease until it is lost; returns why.
    pub async fn hold(&mut self) -> LeaderElectionError {
        let mut last_renew = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => {
                    return LeaderElectionError::Lost(format!("{} is held by another candidate", self.config.name))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not renew the leader lease");
                    if last_renew.elapsed() > self.config.renew_deadline {
                        return LeaderElectionError::Lost(format!(
                            "{} not renewed within the renew deadline",
                            self.config.name
                        ));
                    }
                }
            }
        }
    }

    /// One attempt: `Ok(true)` when we hold the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_secs = self.config.lease_duration.as_secs().max(1) as i32;
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(err) => Err(err),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = format!("{holder}|{:?}", spec.renew_time.as_ref().map(|t| t.0));
        let observed_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                self.observed = Some((record.clone(), Instant::now()));
                Instant::now()
            }
        };
        let ours = holder == self.config.identity;
        let held_duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(duration_secs).max(1) as u64);
        let expired = holder.is_empty() || observed_at.elapsed() > held_duration;
        if !ours && !expired {
            return Ok(false);
        }
        let mut lease = current.clone();
        let mut new_spec = spec.clone();
        new_spec.holder_identity = Some(self.config.identity.clone());
        new_spec.lease_duration_seconds = Some(duration_secs);
        new_spec.renew_time = Some(now.clone());
        if !ours {
            new_spec.acquire_time = Some(now);
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new_spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                let s = updated.spec.unwrap_or_default();
                self.observed = Some((
                    format!(
                        "{}|{:?}",
                        s.holder_identity.unwrap_or_default(),
                        s.renew_time.as_ref().map(|t| t.0)
                    ),
                    Instant::now(),
                ));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }
}
