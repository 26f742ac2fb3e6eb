//! An API client from `--kubeconfig`, or from the environment
//! (`$KUBECONFIG`, `~/.kube/config`, in-cluster service account) when no
//! path is given — the same lookup for every Sluice binary.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::{Path, PathBuf};

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("reading kubeconfig {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig was read but names no usable context, cluster or user.
    #[error("loading kubeconfig {path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No path was given and the environment holds no configuration.
    #[error("no --kubeconfig given and none could be inferred: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The configuration could not make a client (e.g. bad TLS material).
    #[error("building the API client: {0}")]
    Build(#[from] kube::Error),
}

/// The client configuration of the kubeconfig at `path`, or the inferred one.
pub async fn config(path: Option<&Path>) -> Result<Config, ClientError> {
    match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).map_err(|source| ClientError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Load {
                    path: p.to_path_buf(),
                    source,
                })
        }
        None => Ok(Config::infer().await?),
    }
}

/// A client for the kubeconfig at `path`, or the inferred one.
pub async fn client(path: Option<&Path>) -> Result<Client, ClientError> {
    Ok(Client::try_from(config(path).await?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let Err(err) = client(Some(Path::new("/nonexistent/kubeconfig"))).await else {
            panic!("a client from a missing file");
        };
        assert!(matches!(err, ClientError::Read { .. }));
        assert!(
            err.to_string()
                .starts_with("reading kubeconfig /nonexistent/kubeconfig: "),
            "{err}"
        );
    }
}
