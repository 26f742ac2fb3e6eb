//! `pause`: the first process of every pod sandbox.
//!
//! The sandbox container only exists to hold the pod's namespaces (network,
//! IPC, optionally PID) alive while the app containers come and go. Its
//! process therefore does nothing but wait: it exits cleanly on SIGTERM or
//! SIGINT (so a sandbox stops without a SIGKILL timeout) and, as PID 1 of a
//! shared PID namespace, reaps orphaned children so they never linger as
//! zombies.
//!
//! `cargo xtask images` builds it statically (`+crt-static`), packs it as the
//! image `sluice.local/pause:<workspace version>` and pushes it to the cluster
//! registry, through which containerd pulls it as its `sandbox_image`.

use std::io::Write;

/// Exit immediately and successfully: the sandbox is being stopped.
extern "C" fn exit_on_signal(_signal: libc::c_int) {
    // SAFETY: `_exit` is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Reap every child that has exited (orphans re-parented to us as PID 1).
extern "C" fn reap_children(_signal: libc::c_int) {
    // SAFETY: `waitpid` is async-signal-safe; a null status pointer is allowed.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// Install `handler` for `signal`, or fail with the OS error.
fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction with a handler and an empty mask is valid;
    // the handlers above only call async-signal-safe functions.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("sluice-pause {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    for (signal, handler) in [
        (libc::SIGTERM, exit_on_signal as extern "C" fn(libc::c_int)),
        (libc::SIGINT, exit_on_signal),
        (libc::SIGCHLD, reap_children),
    ] {
        if let Err(err) = install(signal, handler) {
            let _ = writeln!(
                std::io::stderr(),
                "pause: cannot install handler for signal {signal}: {err}"
            );
            std::process::exit(1);
        }
    }
    loop {
        // SAFETY: `pause` only blocks until a signal arrives.
        unsafe { libc::pause() };
    }
}
