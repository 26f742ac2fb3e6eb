//! Logging setup shared by the binaries: `tracing` to stderr, filtered by
//! `RUST_LOG` (default `info`), so every component's spans and fields read
//! alike.

use tracing_subscriber::EnvFilter;

/// Install the process-wide subscriber (once, at the top of `main`).
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        // Colours on a terminal only: log files stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
