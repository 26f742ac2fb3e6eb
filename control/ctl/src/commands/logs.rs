//! `ctl logs`: print (or follow) a container's log, read through the API
//! server's `pods/log`, which proxies to the node daemon running the pod.

use crate::api::{server_error, Api};
use anyhow::{bail, Context, Result};
use clap::Args;
use futures::AsyncBufReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use tokio::io::AsyncWriteExt;

/// Arguments of `ctl logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// The pod: `NAME` or `pod/NAME`.
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new lines until the container stops (or Ctrl-C).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub tail: i64,
    /// Prefix each line with its time (RFC3339Nano).
    #[arg(long)]
    pub timestamps: bool,
    /// The previous (terminated) instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only lines newer than this, e.g. 30s, 5m, 2h.
    #[arg(long)]
    pub since: Option<String>,
    /// Stop after this many bytes.
    #[arg(long)]
    pub limit_bytes: Option<i64>,
}

/// Seconds in a duration like `90s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration_seconds(text: &str) -> Result<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .with_context(|| format!("invalid duration {text:?} (e.g. 30s, 5m, 2h, 1d)"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("invalid duration {text:?}: unit must be s, m, h or d"),
    };
    Ok(n * factor)
}

/// Run `ctl logs`.
pub async fn run(args: LogsArgs, api: &mut Api) -> Result<()> {
    let name = match args.pod.split_once('/') {
        Some(("pod" | "pods" | "po", name)) => name.to_string(),
        Some((kind, _)) => bail!("ctl logs reads pods; got {kind:?}"),
        None => args.pod.clone(),
    };
    let params = LogParams {
        container: args.container.clone(),
        follow: args.follow,
        limit_bytes: args.limit_bytes,
        previous: args.previous,
        since_seconds: args.since.as_deref().map(parse_duration_seconds).transpose()?,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        timestamps: args.timestamps,
        ..Default::default()
    };
    let pods: kube::Api<Pod> = kube::Api::namespaced(api.client.clone(), &api.namespace);
    let mut reader = std::pin::pin!(pods.log_stream(&name, &params).await.map_err(server_error)?);
    let mut out = tokio::io::stdout();
    loop {
        let chunk = reader.fill_buf().await.context("reading the log stream")?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        out.write_all(chunk).await?;
        out.flush().await?;
        futures::io::AsyncBufRead::consume(reader.as_mut(), n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_seconds("30s").unwrap(), 30);
        assert_eq!(parse_duration_seconds("5m").unwrap(), 300);
        assert_eq!(parse_duration_seconds("2h").unwrap(), 7200);
        assert_eq!(parse_duration_seconds("12").unwrap(), 12);
        assert!(parse_duration_seconds("5x").is_err());
        assert!(parse_duration_seconds("m").is_err());
    }
}
