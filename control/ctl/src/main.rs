//! `ctl`: the Sluice command-line client.
//!
//! A small kubectl for the everyday verbs: `get`, `describe`, `apply`,
//! `create`, `delete`, `scale`. They talk only to the API server (through the
//! kube client and a kubeconfig), resolve resource names through discovery,
//! and print the server's own Tables, so what they show matches kubectl.
//! `dataplane` is the exception: it reads this machine's pinned eBPF maps and
//! asks the API server only for names, when it answers.
//! Each command lives in its own module under [`commands`].

mod api;
mod commands;
mod manifest;
mod printer;

use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;

/// Sluice command-line client.
#[derive(Parser)]
#[command(name = "ctl", version, about = "Manage Sluice (and Kubernetes) objects")]
struct Cli {
    /// Path of the kubeconfig [default: $KUBECONFIG, then $SLUICE_HOME/admin.kubeconfig, then ~/.kube/config].
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Namespace to work in [default: the kubeconfig context's, else "default"].
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result: Result<()> = runtime.block_on(async move {
        if let commands::Command::Dataplane(args) = cli.command {
            // Reads this machine's bpffs; the API server only names things, when there is one.
            let api = match api::kubeconfig_path(cli.kubeconfig) {
                Ok(path) => api::Api::connect(path, None).await.ok(),
                Err(_) => None,
            };
            return commands::dataplane::run(args, api.as_ref(), cli.namespace.as_deref()).await;
        }
        let path = api::kubeconfig_path(cli.kubeconfig)?;
        let mut api = api::Api::connect(path, cli.namespace).await?;
        commands::run(cli.command, &mut api).await
    });
    if let Err(e) = result {
        let msg = format!("{e:#}");
        if msg.starts_with("Error from server") {
            eprintln!("{msg}");
        } else {
            eprintln!("error: {msg}");
        }
        std::process::exit(1);
    }
}
