//! One reconcile: make the datapath's frontends equal to the desired ones.
//!
//! The plan is computed against what this process last programmed
//! (`applied`) and what the datapath reports (`frontends()`, which after a
//! restart are the adopted pinned ones): changed or new frontends are
//! upserted (the datapath keeps backend ids of known endpoints, so
//! established flows never notice), frontends nobody wants any more are
//! deleted. A restarted node daemon starts with an empty `applied`, so its
//! first reconcile rewrites every wanted frontend once and deletes the stale
//! ones.

use crate::ProxyError;
use sluice_datapath::{Datapath, DatapathError, Frontend, ServiceSpec};
use std::collections::{HashMap, HashSet};

/// What a reconcile must do to the datapath.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Frontends to create or update.
    pub upserts: Vec<ServiceSpec>,
    /// Frontends to delete.
    pub deletes: Vec<Frontend>,
}

/// The plan taking `programmed` (the datapath's frontends) with `applied`
/// (the specs this process wrote last) to `desired`.
pub fn plan(
    desired: &HashMap<Frontend, ServiceSpec>,
    applied: &HashMap<Frontend, ServiceSpec>,
    programmed: &[Frontend],
) -> Plan {
    let programmed: HashSet<&Frontend> = programmed.iter().collect();
    let mut upserts: Vec<ServiceSpec> = desired
        .iter()
        .filter(|(f, spec)| !programmed.contains(f) || applied.get(f) != Some(spec))
        .map(|(_, spec)| spec.clone())
        .collect();
    upserts.sort_by_key(|s| s.frontend.to_string());
    let mut deletes: Vec<Frontend> = programmed
        .into_iter()
        .filter(|f| !desired.contains_key(f))
        .copied()
        .collect();
    deletes.sort_by_key(|f| f.to_string());
    Plan { upserts, deletes }
}

/// What one reconcile did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Frontends created or updated.
    pub upserted: usize,
    /// Frontends deleted.
    pub deleted: usize,
    /// Frontends the datapath refused (retried next time).
    pub failed: usize,
}

/// Apply `desired` to `datapath`, remembering what was written in `applied`.
/// A frontend the datapath refuses is logged, forgotten from `applied` (so it
/// is retried) and does not stop the others; the first such error is returned
/// after everything else has been applied.
pub fn apply(
    datapath: &mut Datapath,
    desired: &HashMap<Frontend, ServiceSpec>,
    applied: &mut HashMap<Frontend, ServiceSpec>,
) -> Result<Outcome, ProxyError> {
    let plan = plan(desired, applied, &datapath.frontends());
    let mut outcome = Outcome::default();
    let mut first: Option<DatapathError> = None;
    for frontend in &plan.deletes {
        match datapath.delete_service(frontend) {
            Ok(_) => {
                applied.remove(frontend);
                outcome.deleted += 1;
                tracing::debug!(%frontend, "frontend deleted");
            }
            Err(e) => {
                tracing::warn!(%frontend, error = %e, "could not delete frontend");
                outcome.failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    for spec in &plan.upserts {
        match datapath.upsert_service(spec) {
            Ok(()) => {
                applied.insert(spec.frontend, spec.clone());
                outcome.upserted += 1;
                tracing::debug!(frontend = %spec.frontend, backends = spec.backends.len(), "frontend programmed");
            }
            Err(e) => {
                tracing::warn!(frontend = %spec.frontend, error = %e, "could not program frontend");
                applied.remove(&spec.frontend);
                outcome.failed += 1;
                first.get_or_insert(e);
            }
        }
    }
    applied.retain(|f, _| desired.contains_key(f));
    match first {
        None => Ok(outcome),
        Some(first) => Err(ProxyError::Program {
            failed: outcome.failed,
            first,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_datapath::{Backend, Protocol};
    use std::net::Ipv4Addr;

    fn spec(port: u16, backends: &[u8]) -> ServiceSpec {
        ServiceSpec::cluster_ip(
            Frontend::tcp(Ipv4Addr::new(10, 96, 0, 1), port),
            backends
                .iter()
                .map(|b| Backend::new(Ipv4Addr::new(10, 0, 0, *b), 8080))
                .collect(),
        )
    }
    fn map(specs: &[ServiceSpec]) -> HashMap<Frontend, ServiceSpec> {
        specs.iter().map(|s| (s.frontend, s.clone())).collect()
    }

    #[test]
    fn plans() {
        let a = spec(80, &[1, 2]);
        let a2 = spec(80, &[1]);
        let b = spec(81, &[3]);
        let np = ServiceSpec::node_port(30080, Protocol::Tcp, vec![]);
        struct Case {
            name: &'static str,
            desired: Vec<ServiceSpec>,
            applied: Vec<ServiceSpec>,
            programmed: Vec<Frontend>,
            upserts: Vec<ServiceSpec>,
            deletes: Vec<Frontend>,
        }
        let cases = [
            Case {
                name: "fresh start programs everything",
                desired: vec![a.clone(), b.clone()],
                applied: vec![],
                programmed: vec![],
                upserts: vec![a.clone(), b.clone()],
                deletes: vec![],
            },
            Case {
                name: "steady state does nothing",
                desired: vec![a.clone()],
                applied: vec![a.clone()],
                programmed: vec![a.frontend],
                upserts: vec![],
                deletes: vec![],
            },
            Case {
                name: "changed backends are upserted",
                desired: vec![a2.clone()],
                applied: vec![a.clone()],
                programmed: vec![a.frontend],
                upserts: vec![a2.clone()],
                deletes: vec![],
            },
            Case {
                name: "restart rewrites adopted frontends once and deletes stale ones",
                desired: vec![a.clone()],
                applied: vec![],
                programmed: vec![a.frontend, np.frontend],
                upserts: vec![a.clone()],
                deletes: vec![np.frontend],
            },
            Case {
                name: "deleted service is removed",
                desired: vec![],
                applied: vec![a.clone(), b.clone()],
                programmed: vec![a.frontend, b.frontend],
                upserts: vec![],
                deletes: vec![a.frontend, b.frontend],
            },
            Case {
                name: "frontend removed behind our back is re-created",
                desired: vec![a.clone()],
                applied: vec![a.clone()],
                programmed: vec![],
                upserts: vec![a.clone()],
                deletes: vec![],
            },
        ];
        for c in cases {
            let p = plan(&map(&c.desired), &map(&c.applied), &c.programmed);
            assert_eq!(
                p,
                Plan {
                    upserts: c.upserts,
                    deletes: c.deletes
                },
                "{}",
                c.name
            );
        }
    }
}
