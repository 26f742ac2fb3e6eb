//! The `kubernetes` Service's endpoints: the live API servers, as
//! Kubernetes' `lease` endpoint reconciler (`--endpoint-reconciler-type=lease`,
//! its default).
//!
//! Every API server with an advertise address ([`advertise_address`]) keeps
//! the etcd key `/registry/masterleases/<ip>` alive under an etcd lease of
//! [`LEASE_TTL`] seconds, renewed every [`INTERVAL`]. Each round it lists
//! the keys under that prefix (the live servers: a stopped or killed
//! server's key expires with its lease) and makes the `kubernetes` Endpoints
//! in `default` one subset with those addresses (sorted) and the port
//! `https` = the secure port (label `endpointslice.kubernetes.io/skip-mirror`,
//! as Kubernetes writes it), and the EndpointSlice `kubernetes` (label
//! `kubernetes.io/service-name: kubernetes`, one ready endpoint per address,
//! the same port), writing only when they differ. A server going down
//! cleanly is not handled specially: its address leaves with its lease.
//!
//! The advertise address is `--advertise-address`, else the bind address;
//! when bound to all addresses, the address this host uses for its default
//! route (as Kubernetes picks its default interface); a loopback address
//! is never advertised (pods could not reach it), so a server bound to
//! loopback without `--advertise-address` publishes no endpoints. The
//! serving certificate names the `kubernetes` Service ([`serving_sans`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::kinds::{self, Kind};
use crate::registry::{Registry, UpdateMode, WriteOptions};
use crate::status::ApiError;

/// Where the servers' leases live in etcd.
pub const LEASE_PREFIX: &str = "/registry/masterleases/";

/// Seconds a server's lease lives without renewal (Kubernetes' 15 s).
pub const LEASE_TTL: i64 = 15;

/// How often a server renews its lease and reconciles (Kubernetes' 10 s).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The Service, Endpoints and EndpointSlice name, in `default`.
pub const NAME: &str = "kubernetes";

/// The address to advertise: `flag`, else `bind` unless unspecified (then
/// the default route's source address) or loopback (then none).
pub fn advertise_address(bind: IpAddr, flag: Option<IpAddr>) -> Option<IpAddr> {
    let chosen = match flag {
        Some(ip) => ip,
        None if bind.is_unspecified() => default_route_source()?,
        None => bind,
    };
    (!chosen.is_loopback() && !chosen.is_unspecified()).then_some(chosen)
}

/// The source address the kernel picks for the IPv4 default route
/// (`/proc/net/route`): a UDP socket connected to the gateway, no packet sent.
fn default_route_source() -> Option<IpAddr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    let gateway = default_gateway(&table)?;
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((gateway, 9)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// The gateway of the default route in a `/proc/net/route` table.
fn default_gateway(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || fields[1] != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(fields[2], 16).ok()?;
        // The table prints the address in host (little-endian) byte order.
        let ip = Ipv4Addr::from(raw.swap_bytes());
        (!ip.is_unspecified()).then_some(ip)
    })
}

/// The serving certificate's SANs: `extra` (`--tls-san`), the `kubernetes`
/// Service's names and ClusterIP, and the advertise address.
pub fn serving_sans(extra: &[String], advertise: Option<IpAddr>, kubernetes_ip: Ipv4Addr) -> Vec<String> {
    let mut sans = extra.to_vec();
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        sans.push(name.to_string());
    }
    sans.push(kubernetes_ip.to_string());
    if let Some(ip) = advertise {
        sans.push(ip.to_string());
    }
    sans
}

/// Start the reconciler for this server (`ip`, `port`) in the background.
pub fn start(registry: Arc<Registry>, ip: IpAddr, port: u16) {
    tokio::spawn(async move {
        tracing::info!(%ip, port, "publishing this API server in the kubernetes endpoints");
        loop {
            let span = tracing::info_span!("reconcile", controller = "master-endpoints", %ip);
            if let Err(e) = reconcile(&registry, ip, port).instrument(span).await {
                tracing::warn!(%ip, error = %e, "reconciling the kubernetes endpoints failed");
            }
            tokio::time::sleep(INTERVAL).await;
        }
    });
}

/// One round: renew this server's lease, then write the live servers.
pub async fn reconcile(registry: &Registry, ip: IpAddr, port: u16) -> Result<(), ApiError> {
    renew(registry, ip).await?;
    let live = live_addresses(registry).await?;
    ensure(
        registry,
        &Kind::Builtin(&kinds::endpoints::EndpointsStrategy),
        endpoints(&live, port),
        endpoints_match,
    )
    .await?;
    ensure(
        registry,
        &Kind::Builtin(&kinds::endpointslice::EndpointSlices),
        endpoint_slice(&live, port),
        slice_matches,
    )
    .await
}

async fn renew(registry: &Registry, ip: IpAddr) -> Result<(), ApiError> {
    let lease = registry.store.grant_lease(LEASE_TTL).await?;
    let mut client = registry.store.client();
    let value = json!({"kind": "Endpoints", "apiVersion": "v1", "subsets": [{"addresses": [{"ip": ip.to_string()}]}]});
    client
        .put(
            format!("{LEASE_PREFIX}{ip}"),
            serde_json::to_vec(&value).unwrap_or_default(),
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .map_err(crate::storage::store::storage_error)?;
    Ok(())
}

/// The addresses of every server whose lease is alive, sorted.
async fn live_addresses(registry: &Registry) -> Result<Vec<IpAddr>, ApiError> {
    let mut ips: Vec<IpAddr> = registry
        .store
        .keys(LEASE_PREFIX)
        .await?
        .iter()
        .filter_map(|k| k.strip_prefix(LEASE_PREFIX)?.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// Create `want`, or update the stored object when `matches` says it differs.
async fn ensure(
    registry: &Registry,
    kind: &Kind,
    want: Value,
    matches: fn(&Value, &Value) -> bool,
) -> Result<(), ApiError> {
    match registry.get(kind, Some("default"), NAME).await {
        Ok(current) if matches(&current.object, &want) => Ok(()),
        Ok(_) => registry
            .update(
                kind,
                Some("default"),
                NAME,
                UpdateMode::Main,
                WriteOptions::default(),
                |cur| {
                    let mut next = cur.clone();
                    for field in ["subsets", "addressType", "endpoints", "ports"] {
                        match want.get(field) {
                            Some(v) => next[field] = v.clone(),
                            None => {
                                if let Some(o) = next.as_object_mut() {
                                    o.remove(field);
                                }
                            }
                        }
                    }
                    let labels = &mut next["metadata"]["labels"];
                    if !labels.is_object() {
                        *labels = json!({});
                    }
                    for (k, v) in want["metadata"]["labels"].as_object().into_iter().flatten() {
                        labels[k] = v.clone();
                    }
                    Ok(next)
                },
            )
            .await
            .map(|_| ()),
        Err(e) if e.code == 404 => match registry
            .create(kind, Some("default"), want, WriteOptions::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

fn port(port: u16) -> Value {
    json!({"name": "https", "port": port, "protocol": "TCP"})
}

/// The `kubernetes` Endpoints for `live` servers.
pub fn endpoints(live: &[IpAddr], secure_port: u16) -> Value {
    let subsets = if live.is_empty() {
        json!([])
    } else {
        json!([{
            "addresses": live.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
            "ports": [port(secure_port)],
        }])
    };
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": NAME, "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    })
}

/// The `kubernetes` EndpointSlice for `live` servers.
pub fn endpoint_slice(live: &[IpAddr], secure_port: u16) -> Value {
    let v6 = live.first().is_some_and(IpAddr::is_ipv6);
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": NAME, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": if v6 { "IPv6" } else { "IPv4" },
        "endpoints": live.iter()
            .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
            .collect::<Vec<_>>(),
        "ports": [port(secure_port)],
    })
}

fn labels_hold(current: &Value, want: &Value) -> bool {
    want["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| current["metadata"]["labels"].get(k) == Some(v))
}

fn empty_as_null(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        other => other.clone(),
    }
}

fn endpoints_match(current: &Value, want: &Value) -> bool {
    labels_hold(current, want) && empty_as_null(&current["subsets"]) == empty_as_null(&want["subsets"])
}

fn slice_matches(current: &Value, want: &Value) -> bool {
    let addresses = |v: &Value| -> Vec<Value> {
        v["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| json!([e["addresses"], e["conditions"]["ready"]]))
            .collect()
    };
    labels_hold(current, want)
        && current["addressType"] == want["addressType"]
        && addresses(current) == addresses(want)
        && current["ports"] == want["ports"]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertise_address_is_never_loopback() {
        let flag: IpAddr = "10.251.3.1".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(advertise_address(lo, Some(flag)), Some(flag));
        assert_eq!(advertise_address(flag, None), Some(flag));
        assert_eq!(advertise_address(lo, None), None);
        assert_eq!(advertise_address(flag, Some(lo)), None);
    }

    #[test]
    fn the_default_gateway_is_read_from_the_route_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                     eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(default_gateway("Iface\tDestination\tGateway\n"), None);
    }

    #[test]
    fn the_certificate_names_the_kubernetes_service() {
        let sans = serving_sans(
            &["10.251.3.1".into()],
            Some("10.251.3.1".parse().unwrap()),
            Ipv4Addr::new(10, 96, 0, 1),
        );
        for want in [
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            "10.251.3.1",
        ] {
            assert!(sans.iter().any(|s| s == want), "{want} missing from {sans:?}");
        }
    }

    #[test]
    fn endpoints_and_slice_list_the_live_servers_on_the_secure_port() {
        let live: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let ep = endpoints(&live, 6443);
        assert_eq!(ep["subsets"][0]["addresses"][1]["ip"], "10.0.0.2");
        assert_eq!(
            ep["subsets"][0]["ports"][0],
            json!({"name": "https", "port": 6443, "protocol": "TCP"})
        );
        let slice = endpoint_slice(&live, 6443);
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes");
        assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);

        // What the API server stores (defaults added) still matches; another server's arrival does not.
        let mut stored = slice.clone();
        stored["endpoints"][0]["conditions"]["serving"] = json!(true);
        stored["metadata"]["labels"]["extra"] = json!("x");
        assert!(slice_matches(&stored, &slice));
        assert!(!slice_matches(&stored, &endpoint_slice(&live[..1], 6443)));
        assert!(endpoints_match(&ep, &ep));
        assert!(!endpoints_match(&ep, &endpoints(&live, 443)));
        assert!(endpoints_match(
            &json!({"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}}),
            &endpoints(&[], 6443)
        ));
    }
}
