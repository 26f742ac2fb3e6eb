//! `resolv.conf` as the kubelet reads it: nameservers, search domains and
//! options (the node's upstream resolvers, and the host part of pods' DNS
//! configuration).

use std::net::IpAddr;

/// The parts of a `resolv.conf` that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order.
    pub nameservers: Vec<IpAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
    /// `options` words, in order.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parse the text of a `resolv.conf` (unknown lines are ignored, as libc does).
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.split('%').next()?.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.map(|w| w.trim_end_matches('.').to_string()).collect();
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// Read and parse a file (a missing file is an empty configuration).
    pub fn read(path: &std::path::Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_search_and_options() {
        let c = ResolvConf::parse(
            "# generated\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch a.example b.example.\noptions edns0 ndots:2 ; c\nbogus\n",
        );
        assert_eq!(
            c.nameservers,
            vec!["10.0.0.2".parse::<IpAddr>().unwrap(), "fe80::1".parse().unwrap()]
        );
        assert_eq!(c.search, vec!["a.example", "b.example"]);
        assert_eq!(c.options, vec!["edns0", "ndots:2"]);
    }
}
