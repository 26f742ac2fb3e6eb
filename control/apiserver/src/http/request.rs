//! Parsing a request path and query into what it addresses.
//!
//! Kubernetes paths: `/api/v1/...` (core) and `/apis/<group>/<version>/...`,
//! then `[namespaces/<ns>/]<plural>[/<name>[/<subresource>]]`, optionally
//! prefixed by the legacy `watch/` segment. A connect subresource that
//! proxies (`nodes/<name>/proxy/<path>`) takes the rest of the path along.

pub use crate::http::params::Query;
use crate::kinds::{Catalog, Kind, Resource};

/// The object or collection a request addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The kind served at the path.
    pub kind: Kind,
    /// Its description.
    pub resource: &'static Resource,
    /// Namespace from the path (None for cluster-scoped or all-namespaces).
    pub namespace: Option<String>,
    /// Object name from the path.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `binding`, `finalize`).
    pub subresource: Option<String>,
    /// Legacy `/watch/` path prefix was used.
    pub legacy_watch: bool,
    /// The path after a `proxy` subresource (`/` when none), for the proxy.
    pub proxy_path: Option<String>,
}

/// Parse a request path; `None` when the server does not serve it.
pub fn parse_path(catalog: &Catalog, path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let target = |plural: &str, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        let kind = catalog.by_path(group, version, plural)?;
        let r = kind.resource();
        if ns.is_some() && !r.namespaced {
            return None;
        }
        if let Some(s) = sub {
            r.subresource(s)?;
        }
        Some(Target {
            kind,
            resource: r,
            namespace: ns.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
            legacy_watch,
            proxy_path: None,
        })
    };
    // `<object>/proxy/<anything>`: the rest of the path goes to the proxy.
    let proxied = |plural: &str, ns: Option<&str>, name: &str, rest: &[&str]| {
        let mut t = target(plural, ns, Some(name), Some("proxy"))?;
        t.proxy_path = Some(format!("/{}", rest.join("/")));
        Some(t)
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if catalog
                .by_path(group, version, plural)
                .is_some_and(|k| k.resource().namespaced) =>
        {
            match tail {
                [] => target(plural, Some(ns), None, None),
                [name] => target(plural, Some(ns), Some(name), None),
                [name, sub] => target(plural, Some(ns), Some(name), Some(sub)),
                [name, "proxy", rest @ ..] => proxied(plural, Some(ns), name, rest),
                _ => None,
            }
        }
        [plural] => target(plural, None, None, None),
        [plural, name] => target(plural, None, Some(name), None),
        [plural, name, "proxy", rest @ ..] => proxied(plural, None, name, rest),
        [plural, name, sub] => target(plural, None, Some(name), Some(sub)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_paths() {
        let t = parse_path(&Catalog::new(), "/api/v1/namespaces/default/pods/p1/status").unwrap();
        assert_eq!(t.resource.plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("default"));
        assert_eq!(t.name.as_deref(), Some("p1"));
        assert_eq!(t.subresource.as_deref(), Some("status"));
        let t = parse_path(&Catalog::new(), "/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(t.resource.plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("kube-system"));
        let t = parse_path(&Catalog::new(), "/api/v1/namespaces/x/finalize").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("finalize"));
        let t = parse_path(&Catalog::new(), "/apis/apps/v1/deployments").unwrap();
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = parse_path(&Catalog::new(), "/apis/apps/v1/namespaces/a/deployments/d/scale").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("scale"));
        assert!(parse_path(&Catalog::new(), "/api/v1/namespaces/a/nodes").is_none());
        assert!(parse_path(&Catalog::new(), "/api/v1/foos").is_none());
        assert!(parse_path(&Catalog::new(), "/apis/apps/v1/namespaces/a/deployments/d/binding").is_none());
        let t = parse_path(&Catalog::new(), "/api/v1/nodes/n1/proxy/dataplane/flows").unwrap();
        assert_eq!(t.subresource.as_deref(), Some("proxy"));
        assert_eq!(t.proxy_path.as_deref(), Some("/dataplane/flows"));
        let t = parse_path(&Catalog::new(), "/api/v1/nodes/n1/proxy").unwrap();
        assert_eq!(t.proxy_path.as_deref(), Some("/"));
        assert!(parse_path(&Catalog::new(), "/apis/apps/v1/namespaces/a/deployments/d/proxy/x").is_none());
        assert!(
            parse_path(&Catalog::new(), "/api/v1/watch/namespaces/a/pods")
                .unwrap()
                .legacy_watch
        );
    }
}
