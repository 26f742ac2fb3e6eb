//! Building a kube [`Client`] from `--kubeconfig` or the environment.

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::Path;

/// A client for the kubeconfig at `path`, or the inferred one (`$KUBECONFIG`, in-cluster).
pub async fn client(path: Option<&Path>) -> Result<Client> {
    let config = match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).with_context(|| format!("reading kubeconfig {}", p.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("loading kubeconfig {}", p.display()))?
        }
        None => Config::infer()
            .await
            .context("no --kubeconfig given and none could be inferred")?,
    };
    Client::try_from(config).context("building the API client")
}
