//! The programs' log records reach `tracing`, rate-limited. Needs root.

mod common;

use common::*;
use sluice_datapath::*;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn rejects_are_logged_through_tracing_with_a_rate_limit() {
    let buf = Buffer::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .init();
    let mut dp = TestDatapath::new("logs");
    let vip = ip("198.19.0.10");
    dp.upsert_service(&ServiceSpec::cluster_ip(Frontend::tcp(vip, 80), vec![]))
        .unwrap();
    for port in 0..100u16 {
        let syn = Pkt::tcp((ip("198.18.1.5"), 1000 + port), (vip, 80), SYN).build();
        dp.test_run(ProgramKind::PodIngress, &syn).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
        let records = text
            .lines()
            .filter(|l| l.contains("no ready backend for 198.19.0.10:80"))
            .count();
        if records > 0 || Instant::now() > deadline {
            assert!(records > 0, "no datapath record in the log: {text}");
            assert!(records <= 20, "{records} records: the rate limit did not apply");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
