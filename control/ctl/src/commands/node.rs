//! `ctl node`: credentials for joining nodes.
//!
//! `ctl node token create` stores a bootstrap token the Kubernetes way (Secret
//! `kube-system/bootstrap-token-<id>`, type `bootstrap.kubernetes.io/token`)
//! and prints `<id>.<secret>`; a joining noded trades it once for its node
//! client certificate. `ctl node join-command` makes a token and prints the
//! exact commands to run on the new machine.

use crate::api::{server_error, Api, RawRequest};
use crate::commands::logs::parse_duration_seconds;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use serde_json::json;
use std::io::Read;

/// Arguments of `ctl node`.
#[derive(Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Bootstrap tokens for joining nodes.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Create a bootstrap token and print the commands that join another machine.
    JoinCommand {
        /// How long the token is valid (s, m, h, d).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// API server URL as the new machine reaches it [default: the kubeconfig's].
        #[arg(long)]
        apiserver: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bootstrap token and print it (`<id>.<secret>`).
    Create {
        /// How long the token is valid (s, m, h, d; 0 = never expires).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A note stored with the token.
        #[arg(long, default_value = "made by ctl node token create")]
        description: String,
    },
}

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random characters of `[a-z0-9]` from the kernel's random source.
fn random_string(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n * 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    // 252 = 7 * 36: reject bytes above it so every character is equally likely.
    let mut out = String::with_capacity(n);
    let mut pool = bytes.into_iter().filter(|b| *b < 252);
    while out.len() < n {
        match pool.next() {
            Some(b) => out.push(ALPHABET[(b % 36) as usize] as char),
            None => return random_string(n),
        }
    }
    Ok(out)
}

/// The Secret that stores bootstrap token `id.secret`, expiring at `expiration` (RFC3339) if any.
pub fn token_secret(id: &str, secret: &str, expiration: Option<&str>, description: &str) -> serde_json::Value {
    let mut data = json!({
        "token-id": id,
        "token-secret": secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": "system:bootstrappers:sluice:default-node-token",
        "description": description,
    });
    if let Some(exp) = expiration {
        data["expiration"] = json!(exp);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "stringData": data,
    })
}

async fn create_token(api: &Api, ttl: &str, description: &str) -> Result<String> {
    let seconds = parse_duration_seconds(ttl)?;
    if seconds < 0 {
        bail!("--ttl must not be negative");
    }
    let expiration = (seconds > 0).then(|| {
        (chrono::Utc::now() + chrono::Duration::seconds(seconds))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    });
    let id = random_string(6)?;
    let secret = random_string(16)?;
    let body = serde_json::to_vec(&token_secret(&id, &secret, expiration.as_deref(), description))?;
    api.request(RawRequest::with_body(
        Method::POST,
        "/api/v1/namespaces/kube-system/secrets".into(),
        "application/json",
        body,
    ))
    .await
    .map_err(server_error)?;
    Ok(format!("{id}.{secret}"))
}

/// The cluster CA as the kubeconfig holds it.
enum ClusterCa {
    /// base64 of the PEM (`certificate-authority-data`).
    Data(String),
    /// PEM read from `certificate-authority`.
    Pem(String),
}

/// Server URL and CA of the kubeconfig's current cluster.
fn cluster_of(path: &std::path::Path) -> Result<(String, ClusterCa)> {
    let config = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let context = config
        .current_context
        .as_deref()
        .context("the kubeconfig has no current-context")?;
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .context("the current context is not in the kubeconfig")?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .with_context(|| format!("cluster {cluster_name:?} is not in the kubeconfig"))?;
    let server = cluster
        .server
        .clone()
        .context("the kubeconfig's cluster has no server")?;
    let ca = match (cluster.certificate_authority_data, cluster.certificate_authority) {
        (Some(data), _) => ClusterCa::Data(data),
        (None, Some(file)) => {
            ClusterCa::Pem(std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?)
        }
        (None, None) => bail!("the kubeconfig has no cluster CA to hand to the new node"),
    };
    Ok((server, ca))
}

/// Run `ctl node`.
pub async fn run(args: NodeArgs, api: &mut Api) -> Result<()> {
    match args.command {
        NodeCommand::Token {
            command: TokenCommand::Create { ttl, description },
        } => {
            println!("{}", create_token(api, &ttl, &description).await?);
        }
        NodeCommand::JoinCommand { ttl, apiserver } => {
            let (server, ca) = cluster_of(&api.kubeconfig)?;
            let server = apiserver.unwrap_or(server);
            let token = create_token(api, &ttl, "made by ctl node join-command").await?;
            println!("# On the new machine (containerd running, noded installed), as root:");
            println!("mkdir -p /etc/sluice /var/lib/sluice");
            match ca {
                ClusterCa::Data(b64) => println!("echo '{b64}' | base64 -d > /etc/sluice/ca.crt"),
                ClusterCa::Pem(pem) => println!("cat > /etc/sluice/ca.crt <<'EOF'\n{}\nEOF", pem.trim_end()),
            }
            println!(
                "noded --node-name \"$(hostname)\" --node-ip <THIS MACHINE'S IP> \\\n  --apiserver {server} --ca-file /etc/sluice/ca.crt --bootstrap-token {token} \\\n  --kubeconfig /var/lib/sluice/noded.kubeconfig --state-dir /var/lib/sluice/noded \\\n  --containerd-socket /run/containerd/containerd.sock --cni-conf-dir /etc/cni/net.d"
            );
            println!("# The token is valid for {ttl} and needed once: noded keeps its certificate in /var/lib/sluice/noded.kubeconfig.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_bootstrap_shape() {
        let id = random_string(6).unwrap();
        let secret = random_string(16).unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(format!("{id}{secret}").bytes().all(|b| ALPHABET.contains(&b)));
        let s = token_secret(&id, &secret, Some("2030-01-01T00:00:00Z"), "d");
        assert_eq!(s["metadata"]["name"], format!("bootstrap-token-{id}"));
        assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
        assert_eq!(s["stringData"]["expiration"], "2030-01-01T00:00:00Z");
    }
}
