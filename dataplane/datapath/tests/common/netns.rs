//! A throwaway network topology made of network namespaces, torn down on
//! drop (even on panic): a "wire" namespace with a bridge as the physical
//! network, hosts on it, pods behind node namespaces, and tiny TCP/UDP
//! servers that answer with their own name and the peer's address.
//!
//! Every address is in 198.18.0.0/15 (reserved for benchmarking) and lives
//! only inside namespaces made here.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Run a command, panic with its output on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `f` on a new thread inside network namespace `ns` and return its result.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .expect("thread in netns panicked")
    })
}

/// Move the calling thread into network namespace `ns` (for good).
pub fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// The namespaces of one test; all deleted on drop.
pub struct Topology {
    pub prefix: String,
    namespaces: Vec<String>,
    stop: Arc<AtomicBool>,
    /// The wire's own datapath, only for its no-op XDP programs
    /// ([`Topology::wire_takes_xdp_tx`]); uninstalled on drop.
    wire_xdp: Option<sluice_datapath::Datapath>,
}

impl Topology {
    /// An empty topology with a wire (bridge) namespace.
    pub fn new() -> Self {
        let prefix = format!(
            "sl{}x{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let mut t = Self {
            prefix,
            namespaces: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            wire_xdp: None,
        };
        let wire = t.add_ns("wire");
        sh(&["ip", "-n", &wire, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &wire, "link", "set", "br0", "up"]);
        t
    }

    /// Full name of a namespace of this topology.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn add_ns(&mut self, short: &str) -> String {
        let name = self.ns(short);
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A host on the wire (198.18.0.0/24) with `eth0` = `addr`. Nodes forward.
    pub fn add_host(&mut self, short: &str, addr: &str, node: bool) -> String {
        let ns = self.add_ns(short);
        let wire = self.ns("wire");
        let port = format!("p-{short}");
        sh(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns", &wire,
        ]);
        sh(&["ip", "-n", &wire, "link", "set", &port, "master", "br0", "up"]);
        // Packets leave a host with complete checksums, as on a physical
        // wire: a node's XDP program may forward them without the kernel.
        in_ns(&ns, || sluice_datapath::checksum_in_software("eth0")).expect("checksums on eth0");
        sh(&["ip", "-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        if node {
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.eth0.send_redirects=0",
            ]);
        }
        ns
    }

    /// A pod on `node` with address `addr`/32, reached through host veth `v-<short>`.
    pub fn add_pod(&mut self, short: &str, node: &str, addr: &str) -> (String, String) {
        let ns = self.add_ns(short);
        let node_ns = self.ns(node);
        let host_if = format!("v-{short}");
        sh(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &host_if, "netns", &node_ns,
        ]);
        // As sluice-cni does: the pod end takes frames redirected from XDP.
        in_ns(&ns, || sluice_datapath::accept_xdp_frames("eth0")).expect("GRO on the pod end");
        sh(&["ip", "-n", &ns, "addr", "add", &format!("{addr}/32"), "dev", "eth0"]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "route", "add", "169.254.1.1", "dev", "eth0"]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &node_ns, "addr", "add", "169.254.1.1/32", "dev", &host_if]);
        sh(&["ip", "-n", &node_ns, "link", "set", &host_if, "up"]);
        sh(&[
            "ip",
            "-n",
            &node_ns,
            "route",
            "add",
            &format!("{addr}/32"),
            "dev",
            &host_if,
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &node_ns,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{host_if}.rp_filter=0"),
        ]);
        (ns, host_if)
    }

    /// Let host `short`'s link take frames the host sends back out with
    /// XDP_TX (the NodePort fast path), as a physical link does: a veth
    /// hands such frames on only to a peer that runs XDP itself, so the
    /// wire's end gets a no-op XDP program.
    pub fn wire_takes_xdp_tx(&mut self, short: &str) {
        let wire = self.ns("wire");
        let root = format!("/sys/fs/bpf/sluice-test-{}-wire", self.prefix);
        let port = format!("p-{short}");
        let dp = self.wire_xdp.get_or_insert_with(|| {
            in_ns(&wire, || {
                sluice_datapath::Datapath::open_or_adopt(sluice_datapath::DatapathConfig::with_pin_root(root))
                    .expect("open the wire's datapath")
            })
        });
        in_ns(&wire, || dp.attach_pass(&port)).expect("no-op XDP on the wire port");
    }

    /// Route `cidr` in namespace `short` via `gw`.
    pub fn route(&self, short: &str, cidr: &str, gw: &str) {
        sh(&["ip", "-n", &self.ns(short), "route", "add", cidr, "via", gw]);
    }

    /// Start a TCP server on `port` in `short`: each connection gets
    /// "<name> <peer ip>\n", then every line it sends is echoed back.
    pub fn tcp_server(&self, short: &str, port: u16, name: &str) {
        let ns = self.ns(short);
        let name = name.to_string();
        let stop = self.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter(&ns);
            let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let name = name.clone();
                        std::thread::spawn(move || {
                            s.set_nonblocking(false).ok();
                            s.set_read_timeout(Some(Duration::from_secs(60))).ok();
                            let _ = writeln!(s, "{name} {}", peer.ip());
                            let mut buf = [0u8; 512];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 || s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("server started");
    }

    /// Start a UDP server on `port` in `short` answering "<name> <peer ip>".
    pub fn udp_server(&self, short: &str, port: u16, name: &str) {
        let ns = self.ns(short);
        let name = name.to_string();
        let stop = self.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter(&ns);
            let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            tx.send(()).unwrap();
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(format!("{name} {}", peer.ip()).as_bytes(), peer);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("udp server started");
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(dp) = self.wire_xdp.take() {
            let _ = dp.uninstall();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// Connect (from the calling thread's namespace) and read the greeting:
/// (server name, address the server saw).
pub fn greet(to: SocketAddrV4) -> std::io::Result<(String, String, TcpStream)> {
    let s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut line = String::new();
    BufReader::new(s.try_clone()?).read_line(&mut line)?;
    let mut it = line.split_whitespace();
    let name = it.next().unwrap_or_default().to_string();
    let peer = it.next().unwrap_or_default().to_string();
    Ok((name, peer, s))
}

/// Send a line on an open connection and check it comes back.
pub fn echo(s: &mut TcpStream, msg: &str) -> std::io::Result<()> {
    writeln!(s, "{msg}")?;
    let mut buf = vec![0u8; msg.len() + 1];
    s.read_exact(&mut buf)?;
    if buf != format!("{msg}\n").as_bytes() {
        return Err(std::io::Error::other("echo mismatch"));
    }
    Ok(())
}

/// One UDP request: (server name, address the server saw).
pub fn udp_ask(to: SocketAddrV4) -> std::io::Result<(String, String)> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.send_to(b"hi", to)?;
    let mut buf = [0u8; 512];
    let (n, _) = s.recv_from(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut it = text.split_whitespace();
    Ok((
        it.next().unwrap_or_default().into(),
        it.next().unwrap_or_default().into(),
    ))
}

pub fn addr(ip: &str, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.parse::<Ipv4Addr>().unwrap(), port)
}
