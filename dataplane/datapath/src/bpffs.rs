//! bpffs and interface plumbing: mount bpffs when missing, resolve names.

use crate::DatapathError;
use std::ffi::CString;
use std::path::Path;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs on a valid C string into a zeroed struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Make sure the pin root lies in a mounted bpffs: when its nearest existing
/// ancestor is `/sys/fs/bpf` and not yet a bpffs, mount one there (a fresh
/// machine does not mount it).
pub fn ensure_mounted(pin_root: &Path) -> Result<(), DatapathError> {
    let mut existing = pin_root;
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    if is_bpffs(existing) {
        return Ok(());
    }
    let mount_point = Path::new("/sys/fs/bpf");
    if !pin_root.starts_with(mount_point) {
        return Err(DatapathError::MountBpffs {
            path: pin_root.to_path_buf(),
            source: std::io::Error::other("the pin root is not on a bpffs"),
        });
    }
    let target = CString::new("/sys/fs/bpf").expect("no NUL");
    let fstype = CString::new("bpf").expect("no NUL");
    // SAFETY: mount(2) with valid C strings.
    let rc = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 && !is_bpffs(mount_point) {
        return Err(DatapathError::MountBpffs {
            path: mount_point.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The index of an interface in the calling thread's network namespace.
pub fn ifindex(ifname: &str) -> Result<u32, DatapathError> {
    let err = |source| DatapathError::Interface {
        ifname: ifname.to_string(),
        source,
    };
    let c = CString::new(ifname).map_err(|_| err(std::io::Error::other("NUL in name")))?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(idx)
}

/// Let `ifname` accept packets whose source is one of this node's addresses.
///
/// After reverse NAT of a NodePort reply (local backend) or source NAT to the
/// node (remote backend) the packet the kernel receives carries the node's
/// own address as source; without `accept_local` it drops it as martian.
/// Written for the calling thread's network namespace.
pub fn accept_local(ifname: &str) -> Result<(), DatapathError> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/accept_local");
    std::fs::write(&path, "1").map_err(|source| DatapathError::Interface {
        ifname: ifname.to_string(),
        source,
    })
}
