//! What several benchmark drivers share (the drivers are the binaries in `src/bin`).

pub mod cpu;
pub mod dnsperf;
pub mod running;
pub mod stats;
