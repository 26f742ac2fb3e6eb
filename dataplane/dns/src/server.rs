//! The DNS server: UDP and TCP listeners on one address, answers for the
//! cluster domain from the current [`Snapshot`], everything else forwarded.
//!
//! Messages are parsed and written with hickory-proto. A UDP answer larger
//! than the client allows (512 bytes, or its EDNS payload size up to
//! [`MAX_UDP_PAYLOAD`]) is sent truncated (TC set, no records) so the client
//! retries over TCP, where answers go whole. Every answer from the cluster
//! domain is authoritative with TTL [`TTL`] (CoreDNS's default); negative
//! answers carry the zone's SOA, whose minimum is the same TTL. Until the
//! first snapshot is built the cluster domain answers SERVFAIL, never a
//! false NXDOMAIN.

use crate::answer::{self, Answer, Data, QType, Rr};
use crate::forward::{Forwarded, Forwarder};
use crate::records::Snapshot;
use crate::DnsError;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

/// TTL of every cluster record and the SOA minimum (CoreDNS kubernetes: 5 s).
pub const TTL: u32 = 5;
/// The largest UDP answer sent, whatever EDNS payload the client offers
/// (the DNS flag day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// How long a TCP connection may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What the server answers and how.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The cluster domain, e.g. `cluster.local` (no trailing dot).
    pub domain: String,
    /// Listen here (UDP and TCP).
    pub listen: SocketAddr,
}

/// Shared state of a running server: the current snapshot (None until the
/// caches are filled) and the forwarder.
pub struct Zone {
    domain: String,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    forwarder: Forwarder,
}

impl Zone {
    /// A zone for `domain` that forwards other names with `forwarder`.
    pub fn new(domain: &str, forwarder: Forwarder) -> Arc<Self> {
        Arc::new(Self {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            snapshot: RwLock::new(None),
            forwarder,
        })
    }

    /// Replace the snapshot (queries already running keep the old one).
    pub fn set_snapshot(&self, snapshot: Snapshot) {
        let mut guard = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        *guard = Some(Arc::new(snapshot));
    }

    /// Whether the first snapshot is in.
    pub fn is_ready(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cluster domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Answer one wire-format query; `udp_limit` is `Some(client limit)` over
    /// UDP. `None` when the bytes are not even a DNS header (dropped).
    pub async fn handle(&self, bytes: &[u8], udp: bool) -> Option<Vec<u8>> {
        let request = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(e) => {
                debug!(error = %e, "unparsable query");
                if bytes.len() < 12 {
                    return None;
                }
                let id = u16::from_be_bytes([bytes[0], bytes[1]]);
                let reply = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                return reply.to_vec().ok();
            }
        };
        if request.message_type() != MessageType::Query {
            return None;
        }
        let limit = if udp {
            match request.extensions() {
                Some(edns) => edns.max_payload().clamp(512, MAX_UDP_PAYLOAD) as usize,
                None => 512,
            }
        } else {
            u16::MAX as usize
        };
        let mut reply = self.respond(&request).await;
        if let Some(edns) = request.extensions() {
            let mut out = Edns::new();
            out.set_max_payload(MAX_UDP_PAYLOAD);
            out.set_dnssec_ok(edns.flags().dnssec_ok);
            reply.set_edns(out);
        }
        let encoded = match reply.to_vec() {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "encoding an answer failed");
                Message::error_msg(request.id(), request.op_code(), ResponseCode::ServFail)
                    .to_vec()
                    .ok()?
            }
        };
        if encoded.len() <= limit {
            return Some(encoded);
        }
        // Too big for this UDP client: header and question only, TC set.
        let mut truncated = header_of(&request);
        truncated.set_response_code(reply.response_code());
        truncated.set_authoritative(reply.authoritative());
        truncated.set_truncated(true);
        if let Some(edns) = reply.extensions() {
            truncated.set_edns(edns.clone());
        }
        truncated.to_vec().ok()
    }

    async fn respond(&self, request: &Message) -> Message {
        let mut reply = header_of(request);
        if request.op_code() != OpCode::Query {
            reply.set_response_code(ResponseCode::NotImp);
            return reply;
        }
        let [query] = request.queries() else {
            reply.set_response_code(ResponseCode::FormErr);
            return reply;
        };
        let qname = query.name().to_lowercase().to_ascii();
        let qname = qname.trim_end_matches('.');
        let qtype = qtype_of(query.query_type());
        let span = tracing::debug_span!("dns", name = %qname, qtype = %query.query_type());
        async {
            let outcome = match self.current() {
                Some(snap) => answer::answer(&snap, &self.domain, qname, qtype),
                None if answer::reverse_ip(qname).is_none() && in_zone(qname, &self.domain) => {
                    reply.set_response_code(ResponseCode::ServFail);
                    return reply;
                }
                None => Answer::NotOurs,
            };
            match outcome {
                Answer::NotOurs => {
                    let forwarded = self.forwarder.lookup(query.name().clone(), query.query_type()).await;
                    self.apply_forwarded(&mut reply, forwarded);
                }
                Answer::NoData => {
                    reply.set_authoritative(true);
                    reply.add_name_server(self.soa());
                }
                Answer::NxDomain => {
                    reply.set_authoritative(true);
                    reply.set_response_code(ResponseCode::NXDomain);
                    reply.add_name_server(self.soa());
                }
                Answer::Records {
                    answers,
                    additional,
                    chase,
                } => {
                    reply.set_authoritative(true);
                    for rr in &answers {
                        if let Some(r) = self.record(rr, query.name()) {
                            reply.add_answer(r);
                        }
                    }
                    for rr in &additional {
                        if let Some(r) = self.record(rr, query.name()) {
                            reply.add_additional(r);
                        }
                    }
                    if let Some(target) = chase {
                        self.chase(&mut reply, &target, query.query_type()).await;
                    }
                }
            }
            reply
        }
        .instrument(span)
        .await
    }

    /// Append the addresses of an ExternalName target: from the snapshot if
    /// it is a cluster name, else from upstream. A failed chase leaves the
    /// CNAME alone (the client resolves it itself).
    async fn chase(&self, reply: &mut Message, target: &str, rtype: RecordType) {
        if matches!(rtype, RecordType::CNAME) {
            return;
        }
        let Ok(name) = Name::from_ascii(format!("{target}.")) else {
            return;
        };
        let snap = self.current();
        let qtype = qtype_of(rtype);
        let local = snap.as_ref().map(|s| answer::answer(s, &self.domain, target, qtype));
        match local {
            Some(Answer::Records { answers, .. }) => {
                for rr in &answers {
                    if let Some(r) = self.record(rr, &name) {
                        reply.add_answer(r);
                    }
                }
            }
            Some(Answer::NotOurs) | None => {
                if let Forwarded::Records(records) = self.forwarder.lookup(name, rtype).await {
                    for r in records {
                        reply.add_answer(r);
                    }
                }
            }
            Some(_) => {}
        }
    }

    fn apply_forwarded(&self, reply: &mut Message, forwarded: Forwarded) {
        match forwarded {
            Forwarded::Records(records) => {
                for r in records {
                    reply.add_answer(r);
                }
            }
            Forwarded::Negative { code, soa } => {
                reply.set_response_code(code);
                if let Some(soa) = soa {
                    reply.add_name_server(*soa);
                }
            }
            Forwarded::Failed => {
                reply.set_response_code(ResponseCode::ServFail);
            }
        }
    }

    fn zone_name(&self) -> Option<Name> {
        Name::from_ascii(format!("{}.", self.domain)).ok()
    }

    /// The zone's SOA, as CoreDNS writes it.
    fn soa(&self) -> Record {
        let zone = self.zone_name().unwrap_or_else(Name::root);
        let mname = Name::from_ascii(format!("ns.dns.{}.", self.domain)).unwrap_or_else(|_| Name::root());
        let rname = Name::from_ascii(format!("hostmaster.{}.", self.domain)).unwrap_or_else(|_| Name::root());
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let soa = SOA::new(mname, rname, serial, 7200, 1800, 86400, TTL);
        Record::from_rdata(zone, TTL, RData::SOA(soa))
    }

    /// Our record as hickory's; `qname` gives the owner its asked case.
    fn record(&self, rr: &Rr, qname: &Name) -> Option<Record> {
        let owner = if qname.to_lowercase().to_ascii().trim_end_matches('.') == rr.name {
            qname.clone()
        } else {
            Name::from_ascii(format!("{}.", rr.name)).ok()?
        };
        let fqdn = |n: &str| Name::from_ascii(format!("{n}."));
        let data = match &rr.data {
            Data::Ip(IpAddr::V4(ip)) => RData::A(A(*ip)),
            Data::Ip(IpAddr::V6(ip)) => RData::AAAA(AAAA(*ip)),
            Data::Cname(t) => RData::CNAME(CNAME(fqdn(t).ok()?)),
            Data::Ptr(t) => RData::PTR(PTR(fqdn(t).ok()?)),
            Data::Srv { weight, port, target } => RData::SRV(SRV::new(0, *weight, *port, fqdn(target).ok()?)),
            Data::Txt(t) => RData::TXT(TXT::new(vec![t.clone()])),
            Data::Soa => return Some(self.soa()),
        };
        let mut record = Record::from_rdata(owner, TTL, data);
        record.set_dns_class(DNSClass::IN);
        Some(record)
    }
}

fn in_zone(qname: &str, domain: &str) -> bool {
    qname == domain || qname.ends_with(&format!(".{domain}"))
}

fn header_of(request: &Message) -> Message {
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_checking_disabled(request.checking_disabled());
    for q in request.queries() {
        reply.add_query(Query::clone(q));
    }
    reply
}

fn qtype_of(rtype: RecordType) -> QType {
    match rtype {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::PTR => QType::Ptr,
        RecordType::CNAME => QType::Cname,
        RecordType::TXT => QType::Txt,
        RecordType::SOA => QType::Soa,
        RecordType::ANY => QType::Any,
        _ => QType::Other,
    }
}

/// A running server; dropping it stops the listeners.
pub struct Server {
    tasks: JoinSet<()>,
    local_addr: SocketAddr,
}

impl Server {
    /// Bind UDP and TCP on `config.listen` (port 0 picks one free port for
    /// both) and start answering from `zone`.
    pub async fn bind(config: &DnsConfig, zone: Arc<Zone>) -> Result<Self, DnsError> {
        let (udp, tcp) = bind_pair(config.listen).await?;
        let local_addr = udp.local_addr().map_err(|e| DnsError::Bind(config.listen, e))?;
        info!(addr = %local_addr, domain = %zone.domain, "cluster DNS listening (udp+tcp)");
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(Arc::new(udp), zone.clone()));
        tasks.spawn(serve_tcp(tcp, zone));
        Ok(Self { tasks, local_addr })
    }

    /// The address both listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop answering (the sockets close).
    pub fn shutdown(mut self) {
        self.tasks.abort_all();
    }
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    // With port 0, find a port free for both protocols.
    for _ in 0..20 {
        let udp = UdpSocket::bind(addr).await.map_err(|e| DnsError::Bind(addr, e))?;
        let bound = udp.local_addr().map_err(|e| DnsError::Bind(addr, e))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() != 0 => return Err(DnsError::Bind(bound, e)),
            Err(_) => continue,
        }
    }
    Err(DnsError::Bind(
        addr,
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "no port free for both UDP and TCP"),
    ))
}

async fn serve_udp(socket: Arc<UdpSocket>, zone: Arc<Zone>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let query = buf[..len].to_vec();
        let (socket, zone) = (socket.clone(), zone.clone());
        // Each query on its own task: a slow upstream never holds up cluster names.
        tokio::spawn(async move {
            if let Some(reply) = zone.handle(&query, true).await {
                if let Err(e) = socket.send_to(&reply, peer).await {
                    debug!(%peer, error = %e, "udp send failed");
                }
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let zone = zone.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_tcp_conn(stream, zone).await {
                        debug!(%peer, error = %e, "tcp connection ended");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_tcp_conn(mut stream: TcpStream, zone: Arc<Zone>) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut query).await?;
        if let Some(reply) = zone.handle(&query, false).await {
            let Ok(n) = u16::try_from(reply.len()) else { continue };
            let mut out = Vec::with_capacity(reply.len() + 2);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&reply);
            stream.write_all(&out).await?;
        }
    }
}
