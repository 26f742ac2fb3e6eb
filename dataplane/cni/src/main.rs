//! `sluice-cni`: the CNI 1.0 plugin binary containerd executes.
//!
//! Reads the `CNI_*` environment and the network config on stdin, runs the
//! command, prints the result (or a CNI error object) on stdout and exits
//! non-zero on error, as the CNI spec requires.

use sluice_cni::spec::{code, CniError, Invocation};
use std::io::{Read, Write};

fn main() {
    let outcome = run();
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(Some(result)) => {
            let _ = writeln!(stdout, "{result}");
        }
        Ok(None) => {}
        Err(err) => {
            let json =
                serde_json::to_string(&err).unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"error\"}}", err.code));
            let _ = writeln!(stdout, "{json}");
            let _ = stdout.flush();
            std::process::exit(1);
        }
    }
}

fn run() -> Result<Option<serde_json::Value>, CniError> {
    let invocation = Invocation::from_env()?;
    let mut stdin = Vec::new();
    if invocation.command != sluice_cni::spec::Command::Version {
        std::io::stdin().read_to_end(&mut stdin).map_err(|e| {
            CniError::new(code::IO_FAILURE, "cannot read the network config from stdin").with_details(e)
        })?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::new(code::IO_FAILURE, "cannot start the async runtime").with_details(e))?;
    runtime.block_on(sluice_cni::plugin::run(&invocation, &stdin))
}
