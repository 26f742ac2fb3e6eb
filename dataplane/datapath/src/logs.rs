//! The programs' aya-log records, forwarded into `tracing` (target
//! `sluice_datapath::ebpf`) by a background thread, rate-limited so a flood
//! of rejects cannot flood the node daemon's log: at most [`PER_SECOND`]
//! records a second, then one line saying how many were suppressed.

use aya::Ebpf;
use aya_log::EbpfLogger;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records forwarded per second at most.
pub const PER_SECOND: u32 = 20;

struct Limiter {
    window: Instant,
    used: u32,
    suppressed: u64,
}

/// A `log::Log` that forwards into tracing with a rate limit.
struct TracingLog {
    limiter: Mutex<Limiter>,
}

impl log::Log for TracingLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let Ok(mut l) = self.limiter.lock() else { return };
        if l.window.elapsed() >= Duration::from_secs(1) {
            if l.suppressed > 0 {
                tracing::warn!(target: "sluice_datapath::ebpf", suppressed = l.suppressed, "datapath log records suppressed (rate limit)");
            }
            *l = Limiter {
                window: Instant::now(),
                used: 0,
                suppressed: 0,
            };
        }
        if l.used >= PER_SECOND {
            l.suppressed += 1;
            return;
        }
        l.used += 1;
        let msg = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: "sluice_datapath::ebpf", "{msg}"),
            log::Level::Warn => tracing::warn!(target: "sluice_datapath::ebpf", "{msg}"),
            log::Level::Info => tracing::info!(target: "sluice_datapath::ebpf", "{msg}"),
            log::Level::Debug => tracing::debug!(target: "sluice_datapath::ebpf", "{msg}"),
            log::Level::Trace => tracing::trace!(target: "sluice_datapath::ebpf", "{msg}"),
        }
    }

    fn flush(&self) {}
}

/// The background reader; stops (and joins) on drop.
pub struct LogForwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogForwarder {
    /// Start forwarding the records of `ebpf`'s programs (takes its `AYA_LOGS` map).
    pub fn start(ebpf: &mut Ebpf) -> Option<Self> {
        let logger = TracingLog {
            limiter: Mutex::new(Limiter {
                window: Instant::now(),
                used: 0,
                suppressed: 0,
            }),
        };
        let mut reader = match EbpfLogger::init_with_logger(ebpf, logger) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "datapath logs are not forwarded");
                return None;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("datapath-logs".into())
            .spawn(move || {
                let fd = reader.as_raw_fd();
                while !flag.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: poll on one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 200) };
                    reader.flush();
                }
            })
            .ok()?;
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for LogForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
