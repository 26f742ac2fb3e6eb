//! Pod address management: one file per allocated address, under a file lock.
//!
//! The node's podCIDR is split into pod addresses; each allocation is a file
//! `<state_dir>/ipam/<ip>` naming its owner (container id, interface, host
//! veth). Allocation and release hold an exclusive `flock` on
//! `<state_dir>/ipam/lock`, so concurrent plugin runs never hand out one
//! address twice, and the state survives plugin, noded and node restarts.
//!
//! Crash safety: ADD for an owner that already holds an address returns the
//! same address (a retried ADD never leaks); [`IpamStore::retain`] frees
//! every address whose owner is no longer a live sandbox, which `noded` runs
//! against the CRI sandbox list when it starts.
//!
//! The network address, the broadcast address and the first host address
//! (kept for the node itself) are never handed out. Addresses are handed
//! out round-robin from the last one given, so a freed address is not
//! reused at once (stale conntrack entries and endpoints age out first).

use ipnet::Ipv4Net;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors of the address store.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every address of the range is taken.
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
    /// The state directory could not be read or written.
    #[error("IPAM state {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IpamError + '_ {
    move |source| IpamError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The pod address.
    pub ip: Ipv4Addr,
    /// CRI sandbox id.
    pub container_id: String,
    /// Interface inside the pod.
    pub ifname: String,
    /// Host-side veth name.
    pub host_veth: String,
}

impl Allocation {
    fn encode(&self) -> String {
        format!("{}\n{}\n{}\n", self.container_id, self.ifname, self.host_veth)
    }

    fn decode(ip: Ipv4Addr, text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let container_id = lines.next()?.to_owned();
        let ifname = lines.next()?.to_owned();
        let host_veth = lines.next().unwrap_or_default().to_owned();
        (!container_id.is_empty()).then_some(Self {
            ip,
            container_id,
            ifname,
            host_veth,
        })
    }
}

/// The address store of one node.
#[derive(Debug, Clone)]
pub struct IpamStore {
    dir: PathBuf,
}

/// An exclusive lock on the store, released on drop (or when the process dies).
struct StoreLock(File);

impl Drop for StoreLock {
    fn drop(&mut self) {
        // SAFETY: flock on an fd we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl IpamStore {
    /// The store under `state_dir/ipam` (created on first use).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("ipam"),
        }
    }

    fn lock(&self) -> Result<StoreLock, IpamError> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // SAFETY: flock on an fd we own; blocks until the lock is ours.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(IpamError::Io {
                path,
                source: io::Error::last_os_error(),
            });
        }
        Ok(StoreLock(file))
    }

    /// Every current allocation (unreadable or empty entries are skipped).
    pub fn list(&self) -> Result<Vec<Allocation>, IpamError> {
        let _lock = self.lock()?;
        self.list_locked()
    }

    fn list_locked(&self) -> Result<Vec<Allocation>, IpamError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            match Allocation::decode(ip, &text) {
                Some(allocation) => found.push(allocation),
                // A crash between create and write left an empty file: free it.
                None => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        found.sort_by_key(|a| a.ip);
        Ok(found)
    }

    /// The address held by (container id, interface), if any.
    pub fn get(&self, container_id: &str, ifname: &str) -> Result<Option<Allocation>, IpamError> {
        Ok(self
            .list()?
            .into_iter()
            .find(|a| a.container_id == container_id && a.ifname == ifname))
    }

    /// Give (container id, interface) an address from `range`; the same one again if it has one.
    pub fn allocate(
        &self,
        range: Ipv4Net,
        container_id: &str,
        ifname: &str,
        host_veth: &str,
    ) -> Result<Allocation, IpamError> {
        let _lock = self.lock()?;
        let existing = self.list_locked()?;
        if let Some(held) = existing
            .iter()
            .find(|a| a.container_id == container_id && a.ifname == ifname)
        {
            return Ok(held.clone());
        }
        let taken: std::collections::HashSet<Ipv4Addr> = existing.iter().map(|a| a.ip).collect();
        let candidates = pod_addresses(range);
        if candidates.is_empty() {
            return Err(IpamError::Exhausted(range));
        }
        let last_path = self.dir.join("last-reserved");
        let last: Option<Ipv4Addr> = fs::read_to_string(&last_path).ok().and_then(|s| s.trim().parse().ok());
        let start = last
            .and_then(|last| candidates.iter().position(|ip| *ip == last))
            .map(|i| i + 1)
            .unwrap_or(0);
        let ip = (0..candidates.len())
            .map(|i| candidates[(start + i) % candidates.len()])
            .find(|ip| !taken.contains(ip))
            .ok_or(IpamError::Exhausted(range))?;
        let allocation = Allocation {
            ip,
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
            host_veth: host_veth.to_owned(),
        };
        let path = self.dir.join(ip.to_string());
        let partial = self.dir.join(format!(".{ip}.partial"));
        fs::write(&partial, allocation.encode()).map_err(io_err(&partial))?;
        fs::rename(&partial, &path).map_err(io_err(&path))?;
        fs::write(&last_path, ip.to_string()).map_err(io_err(&last_path))?;
        Ok(allocation)
    }

    /// Free the address of (container id, interface); `Ok(None)` when it had none.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Option<Allocation>, IpamError> {
        let _lock = self.lock()?;
        let held = self
            .list_locked()?
            .into_iter()
            .find(|a| a.container_id == container_id && a.ifname == ifname);
        if let Some(allocation) = &held {
            let path = self.dir.join(allocation.ip.to_string());
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok(held)
    }

    /// Free every allocation whose container is not `live`; returns what was freed.
    pub fn retain(&self, live: impl Fn(&str) -> bool) -> Result<Vec<Allocation>, IpamError> {
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for allocation in self.list_locked()? {
            if !live(&allocation.container_id) {
                let path = self.dir.join(allocation.ip.to_string());
                fs::remove_file(&path).map_err(io_err(&path))?;
                freed.push(allocation);
            }
        }
        Ok(freed)
    }
}

/// The first host address of a range: reserved for the node itself.
pub fn node_address(range: Ipv4Net) -> Ipv4Addr {
    range.hosts().next().unwrap_or(range.network())
}

/// Addresses of `range` that pods may get (all hosts but the node's).
pub fn pod_addresses(range: Ipv4Net) -> Vec<Ipv4Addr> {
    range.hosts().skip(1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocation_is_idempotent_per_owner_and_unique_across_owners() {
        let dir = tempfile::tempdir().unwrap();
        let store = IpamStore::new(dir.path());
        let r = range("10.244.1.0/24");
        let a = store.allocate(r, "c1", "eth0", "lxc1").unwrap();
        let again = store.allocate(r, "c1", "eth0", "lxc1").unwrap();
        let b = store.allocate(r, "c2", "eth0", "lxc2").unwrap();
        assert_eq!(a, again);
        assert_ne!(a.ip, b.ip);
        assert_eq!(
            a.ip,
            "10.244.1.2".parse::<Ipv4Addr>().unwrap(),
            "network and node address skipped"
        );
    }

    #[test]
    fn release_frees_and_freed_address_is_not_reused_immediately() {
        let dir = tempfile::tempdir().unwrap();
        let store = IpamStore::new(dir.path());
        let r = range("10.244.1.0/29"); // hosts .1-.6, pods .2-.6
        let a = store.allocate(r, "c1", "eth0", "lxc1").unwrap();
        assert_eq!(store.release("c1", "eth0").unwrap(), Some(a.clone()));
        assert_eq!(store.release("c1", "eth0").unwrap(), None, "DEL is idempotent");
        let b = store.allocate(r, "c2", "eth0", "lxc2").unwrap();
        assert_ne!(b.ip, a.ip);
    }

    #[test]
    fn exhaustion_is_reported_and_retain_frees_dead_owners() {
        let dir = tempfile::tempdir().unwrap();
        let store = IpamStore::new(dir.path());
        let r = range("10.244.1.0/30"); // hosts .1-.2: one pod address
        store.allocate(r, "c1", "eth0", "lxc1").unwrap();
        assert!(matches!(
            store.allocate(r, "c2", "eth0", "lxc2"),
            Err(IpamError::Exhausted(_))
        ));
        let freed = store.retain(|id| id == "c2").unwrap();
        assert_eq!(freed.len(), 1);
        assert_eq!(
            store.allocate(r, "c2", "eth0", "lxc2").unwrap().ip,
            "10.244.1.2".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn state_survives_a_new_store_and_concurrent_allocations_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let r = range("10.244.2.0/24");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = IpamStore::new(dir.path());
                std::thread::spawn(move || store.allocate(r, &format!("c{i}"), "eth0", "x").unwrap().ip)
            })
            .collect();
        let mut ips: Vec<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), 8);
        assert_eq!(IpamStore::new(dir.path()).list().unwrap().len(), 8);
    }
}
