//! Service load balancer: gives every `type: LoadBalancer` Service of the
//! default class an address from `--load-balancer-ip-pool` and shows it in
//! `status.loadBalancer.ingress` (`ip`, `ipMode: VIP`), as k3s' ServiceLB or
//! MetalLB's controller do. The nodes' proxies program the address and one
//! node answers ARP for it (see `dataplane/proxy/src/announce.rs`).
//!
//! Rules:
//! * a Service with a `loadBalancerClass` is another implementation's and is
//!   left alone, as Kubernetes' own service controller does;
//! * `spec.loadBalancerIP`, when set, is the address given if it lies in the
//!   pool and no other Service has it; otherwise the Service stays pending
//!   with a Warning Event saying why;
//! * an address is never handed out twice: the used set is rebuilt from the
//!   Services' statuses in the cache (so restarts and leader changes keep
//!   it), and addresses handed out but not yet seen in the cache stay
//!   reserved;
//! * a Service that stops being a LoadBalancer loses its pool address (the
//!   status is cleared); a deleted Service frees its address.
//!
//! Events follow MetalLB's: `IPAllocated` (Normal) and `AllocationFailed`
//! (Warning, e.g. when the pool is exhausted).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::events::EventType;
use crate::{runner, Context, Error};

/// Why no address could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// Every address of the pool is in use.
    #[error("no available IPs in the pool {0}")]
    Exhausted(Ipv4Net),
    /// `spec.loadBalancerIP` lies outside the pool.
    #[error("spec.loadBalancerIP {ip} is not in the pool {pool}")]
    NotInPool {
        /// The requested address.
        ip: Ipv4Addr,
        /// The pool.
        pool: Ipv4Net,
    },
    /// `spec.loadBalancerIP` belongs to another Service.
    #[error("spec.loadBalancerIP {ip} is already assigned to {owner}")]
    InUse {
        /// The requested address.
        ip: Ipv4Addr,
        /// `namespace/name` of the Service holding it.
        owner: String,
    },
}

/// The pool: every address of the CIDR except its first and last (network
/// and broadcast-like addresses, which some clients mishandle; MetalLB's
/// `avoidBuggyIPs`), for prefixes shorter than /31.
pub struct Pool {
    net: Ipv4Net,
    /// Service key → address handed out and not yet seen in the cache.
    in_flight: Mutex<HashMap<String, Ipv4Addr>>,
}

impl Pool {
    /// A pool over `net`.
    pub fn new(net: Ipv4Net) -> Self {
        Self {
            net,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `ip` is an address this pool hands out.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.addresses().any(|a| a == ip)
    }

    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last) = (u32::from(self.net.network()), u32::from(self.net.broadcast()));
        let (first, last) = if self.net.prefix_len() < 31 {
            (first + 1, last - 1)
        } else {
            (first, last)
        };
        (first..=last).map(Ipv4Addr::from)
    }

    /// The address for Service `key`: `wanted` (its `loadBalancerIP`) or the
    /// first free one, given the addresses `assigned` to Services (key →
    /// addresses in their status). Reserved for `key` until the cache shows it.
    pub fn allocate(
        &self,
        key: &str,
        wanted: Option<Ipv4Addr>,
        assigned: &HashMap<String, Vec<Ipv4Addr>>,
    ) -> Result<Ipv4Addr, AllocationError> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Settle reservations the cache now shows (or whose Service is gone).
        in_flight.retain(|k, ip| assigned.get(k).is_some_and(|ips| !ips.contains(ip)));
        let mut owners: HashMap<Ipv4Addr, &str> = HashMap::new();
        for (k, ips) in assigned {
            for ip in ips {
                owners.insert(*ip, k);
            }
        }
        for (k, ip) in in_flight.iter() {
            owners.insert(*ip, k);
        }
        owners.retain(|_, k| *k != key);
        let ip = match wanted {
            Some(ip) if !self.contains(ip) => return Err(AllocationError::NotInPool { ip, pool: self.net }),
            Some(ip) => match owners.get(&ip) {
                Some(owner) => {
                    return Err(AllocationError::InUse {
                        ip,
                        owner: owner.to_string(),
                    })
                }
                None => ip,
            },
            None => {
                let used: BTreeSet<Ipv4Addr> = owners.keys().copied().collect();
                if let Some(ip) = in_flight.get(key).filter(|ip| !used.contains(ip)) {
                    *ip
                } else {
                    self.addresses()
                        .find(|a| !used.contains(a))
                        .ok_or(AllocationError::Exhausted(self.net))?
                }
            }
        };
        in_flight.insert(key.to_string(), ip);
        Ok(ip)
    }
}

fn key_of(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

fn is_ours(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none())
}

/// The ingress IPs in a Service's status.
fn ingress_ips(svc: &Service) -> Vec<Ipv4Addr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// Subscribes the service load balancer controller and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let Some(net) = ctx.config.load_balancer_ip_pool else {
        tracing::info!("no --load-balancer-ip-pool: LoadBalancer Services stay <pending>");
        return Box::pin(futures::future::pending());
    };
    let store = ctx.informers.services.store();
    let own = ctx
        .informers
        .services
        .trigger(|s: &Service| Some(ObjectRef::from_obj(s)));
    let pool = Arc::new(Pool::new(net));
    runner::run("service-lb", ctx, store, vec![own.boxed()], move |svc, ctx| {
        reconcile(svc, ctx, pool.clone())
    })
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>, pool: Arc<Pool>) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    let current = ingress_ips(&svc);
    let ours_now: Vec<Ipv4Addr> = current.iter().copied().filter(|ip| pool.contains(*ip)).collect();
    let is_lb_type = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    if !is_ours(&svc) {
        // No longer a LoadBalancer: its pool address goes (another class: not ours to touch).
        if !is_lb_type && !ours_now.is_empty() {
            let patch = json!({"status": {"loadBalancer": {}}});
            api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok(Action::await_change());
    }
    let key = key_of(&svc);
    let assigned: HashMap<String, Vec<Ipv4Addr>> = ctx
        .informers
        .services
        .store()
        .state()
        .iter()
        .filter(|s| is_ours(s))
        .map(|s| {
            (
                key_of(s),
                ingress_ips(s).into_iter().filter(|ip| pool.contains(*ip)).collect(),
            )
        })
        .collect();
    let wanted = match svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(text) => match text.parse::<Ipv4Addr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                ctx.recorder.record(
                    &*svc,
                    EventType::Warning,
                    "AllocationFailed",
                    format!("Failed to allocate IP for {key:?}: spec.loadBalancerIP {text:?} is not an IPv4 address"),
                );
                return Ok(Action::await_change());
            }
        },
        None => None,
    };
    // Already has a fitting address: only make sure the status says VIP.
    let fits = |ip: &Ipv4Addr| {
        wanted.is_none_or(|w| w == *ip) && !assigned.iter().any(|(k, ips)| *k != key && ips.contains(ip))
    };
    if current.len() == 1 && ours_now.len() == 1 && fits(&ours_now[0]) {
        let vip = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .and_then(|i| i.first())
            .is_some_and(|i| i.ip_mode.as_deref() == Some("VIP"));
        if !vip {
            write_status(&api, &svc, ours_now[0]).await?;
        }
        return Ok(Action::await_change());
    }
    let ip = match pool.allocate(&key, wanted, &assigned) {
        Ok(ip) => ip,
        Err(e) => {
            ctx.recorder.record(
                &*svc,
                EventType::Warning,
                "AllocationFailed",
                format!("Failed to allocate IP for {key:?}: {e}"),
            );
            return Ok(Action::requeue(std::time::Duration::from_secs(30)));
        }
    };
    write_status(&api, &svc, ip).await?;
    ctx.recorder.record(
        &*svc,
        EventType::Normal,
        "IPAllocated",
        format!("Assigned IP [\"{ip}\"]"),
    );
    Ok(Action::await_change())
}

async fn write_status(api: &Api<Service>, svc: &Service, ip: Ipv4Addr) -> Result<(), Error> {
    let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}});
    api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn pool_skips_its_edges_and_never_hands_an_address_out_twice() {
        let pool = Pool::new("10.251.0.240/29".parse().unwrap());
        assert!(!pool.contains(ip("10.251.0.240")) && !pool.contains(ip("10.251.0.247")));
        assert!(pool.contains(ip("10.251.0.241")) && pool.contains(ip("10.251.0.246")));
        let mut assigned: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
        for k in ["a/1", "a/2", "a/3"] {
            assigned.insert(k.into(), vec![]);
        }
        let first = pool.allocate("a/1", None, &assigned).unwrap();
        assert_eq!(first, ip("10.251.0.241"));
        // The cache has not seen a/1's address yet: a/2 gets another one, a/1 the same again.
        assert_eq!(pool.allocate("a/2", None, &assigned).unwrap(), ip("10.251.0.242"));
        assert_eq!(pool.allocate("a/1", None, &assigned).unwrap(), first);
        // loadBalancerIP: given when free and in the pool, refused otherwise.
        assert_eq!(
            pool.allocate("a/3", Some(ip("10.251.0.245")), &assigned).unwrap(),
            ip("10.251.0.245")
        );
        assert_eq!(
            pool.allocate("a/4", Some(ip("10.251.0.245")), &assigned),
            Err(AllocationError::InUse {
                ip: ip("10.251.0.245"),
                owner: "a/3".into()
            })
        );
        assert!(matches!(
            pool.allocate("a/4", Some(ip("10.251.1.9")), &assigned),
            Err(AllocationError::NotInPool { .. })
        ));
    }

    #[test]
    fn exhausted_pool_says_so_and_freed_addresses_return() {
        let pool = Pool::new("10.0.0.0/30".parse().unwrap());
        let mut assigned: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
        assigned.insert("x/a".into(), vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        assigned.insert("x/b".into(), vec![]);
        let err = pool.allocate("x/b", None, &assigned).unwrap_err();
        assert_eq!(err.to_string(), "no available IPs in the pool 10.0.0.0/30");
        assigned.remove("x/a");
        assert_eq!(pool.allocate("x/b", None, &assigned).unwrap(), ip("10.0.0.1"));
    }
}
