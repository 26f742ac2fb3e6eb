//! A pod's resolver configuration (the CRI sandbox's `DNSConfig`, which the
//! runtime writes to the pod's `/etc/resolv.conf`), per `dnsPolicy`, as the
//! kubelet builds it:
//!
//! * `ClusterFirst` (the default): the cluster DNS as the only nameserver,
//!   search `<ns>.svc.<domain> svc.<domain> <domain>` followed by the node's
//!   search list, `options ndots:5`. Without cluster DNS on the node it falls
//!   back to `Default`, as a kubelet without `--cluster-dns` does. A
//!   host-network pod gets `Default` unless its policy is
//!   `ClusterFirstWithHostNet`.
//! * `Default`: the node's resolv.conf (nameservers, search, options).
//! * `None`: nothing but the pod's `dnsConfig`.
//!
//! `dnsConfig` is then merged in (nameservers and searches appended without
//! duplicates, options overriding by name), and the kubelet's limits apply:
//! at most 3 nameservers, 32 search domains and 2048 characters of them.

use crate::cluster_dns::PodDnsSettings;
use crate::cri::api;
use k8s_openapi::api::core::v1::Pod;

/// The kubelet's limits.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// The sandbox DNS configuration of `pod`.
pub fn dns_config(pod: &Pod, settings: &PodDnsSettings) -> api::DnsConfig {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    } && !settings.cluster_dns.is_empty();
    let mut servers: Vec<String> = Vec::new();
    let mut searches: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    if policy != "None" {
        if cluster_first {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let d = &settings.domain;
            servers = settings.cluster_dns.iter().map(ToString::to_string).collect();
            searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            searches.extend(settings.host.search.iter().cloned());
            options = vec!["ndots:5".into()];
        } else {
            servers = settings.host.nameservers.iter().map(ToString::to_string).collect();
            searches = settings.host.search.clone();
            options = settings.host.options.clone();
        }
    }
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for s in extra.nameservers.iter().flatten() {
            if !servers.contains(s) {
                servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !searches.contains(s) {
                searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let rendered = match o.value.as_deref() {
                Some(v) => format!("{}:{v}", o.name.as_deref().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let name = rendered.split(':').next().unwrap_or_default().to_string();
            options.retain(|existing| existing.split(':').next() != Some(name.as_str()));
            options.push(rendered);
        }
    }
    dedup(&mut searches);
    servers.truncate(MAX_NAMESERVERS);
    searches.truncate(MAX_SEARCHES);
    let mut total = 0;
    searches.retain(|s| {
        total += s.len() + 1;
        total <= MAX_SEARCH_CHARS
    });
    api::DnsConfig {
        servers,
        searches,
        options,
    }
}

fn dedup(list: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|s| seen.insert(s.trim_end_matches('.').to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_dns::ResolvConf;

    fn settings(cluster: bool) -> PodDnsSettings {
        PodDnsSettings {
            cluster_dns: if cluster {
                vec!["10.96.0.10".parse().unwrap()]
            } else {
                vec![]
            },
            domain: "cluster.local".into(),
            host: ResolvConf::parse("nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    fn render(c: &api::DnsConfig) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
        (
            c.servers.iter().map(String::as_str).collect(),
            c.searches.iter().map(String::as_str).collect(),
            c.options.iter().map(String::as_str).collect(),
        )
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_and_the_kubelet_search_list() {
        let c = dns_config(&pod(json!({})), &settings(true));
        assert_eq!(
            render(&c),
            (
                vec!["10.96.0.10"],
                vec![
                    "shop.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "corp.example"
                ],
                vec!["ndots:5"]
            )
        );
    }

    #[test]
    fn cluster_first_without_cluster_dns_and_default_use_the_node() {
        let want = (vec!["192.0.2.53"], vec!["corp.example"], vec!["edns0"]);
        assert_eq!(render(&dns_config(&pod(json!({})), &settings(false))), want);
        assert_eq!(
            render(&dns_config(&pod(json!({"dnsPolicy": "Default"})), &settings(true))),
            want
        );
        // Host network: ClusterFirst means Default, ClusterFirstWithHostNet means the cluster.
        assert_eq!(
            render(&dns_config(&pod(json!({"hostNetwork": true})), &settings(true))),
            want
        );
        let c = dns_config(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &settings(true),
        );
        assert_eq!(c.servers, ["10.96.0.10"]);
    }

    #[test]
    fn none_takes_only_dns_config_and_dns_config_merges() {
        let extra = json!({"nameservers": ["1.2.3.4"], "searches": ["a.example"],
                           "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]});
        let c = dns_config(&pod(json!({"dnsPolicy": "None", "dnsConfig": extra})), &settings(true));
        assert_eq!(
            render(&c),
            (vec!["1.2.3.4"], vec!["a.example"], vec!["ndots:2", "edns0"])
        );
        let c = dns_config(&pod(json!({"dnsConfig": extra})), &settings(true));
        assert_eq!(
            render(&c),
            (
                vec!["10.96.0.10", "1.2.3.4"],
                vec![
                    "shop.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "corp.example",
                    "a.example"
                ],
                vec!["ndots:2", "edns0"]
            )
        );
    }
}
