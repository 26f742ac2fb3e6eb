//! Text the kubelet prints, formatted the same way here: Go durations
//! (`313ms`, `1.594s`, `2m40s`) in events and waiting messages, and a Pod
//! named as `name_namespace(uid)`.

use k8s_openapi::api::core::v1::Pod;
use std::time::Duration;

/// `d` as Go's `time.Duration` prints it (`0s`, `1.5µs`, `313ms`, `1.594s`, `5m0s`, `1h2m3s`).
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => ("µs", 1_000u128),
            _ => ("ms", 1_000_000u128),
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let (hours, minutes) = (total_secs / 3600, (total_secs / 60) % 60);
    let seconds = decimal(nanos % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `value / scale` with the fraction's trailing zeros dropped (`1.5`, `2`).
fn decimal(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A Pod as the kubelet names it in messages: `name_namespace(uid)`.
pub fn pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// A gRPC status as Go's grpc prints an error: `rpc error: code = NotFound desc = ...`.
pub fn grpc_status(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        grpc_code(status.code()),
        status.message()
    )
}

/// The Go name of a gRPC code (`NotFound`, `Unavailable`...).
pub fn grpc_code(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(ms(313)), "313ms");
        assert_eq!(go_duration(ms(1594)), "1.594s");
        assert_eq!(go_duration(ms(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_duration(ms(62_500)), "1m2.5s");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(Duration::from_nanos(1500)), "1.5µs");
    }

    #[test]
    fn pods_and_grpc_errors_are_named_like_the_kubelet() {
        let p: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}),
        )
        .unwrap();
        assert_eq!(pod(&p), "web_default(u-1)");
        assert_eq!(
            grpc_status(&tonic::Status::not_found("no such image")),
            "rpc error: code = NotFound desc = no such image"
        );
        assert_eq!(grpc_code(tonic::Code::Cancelled), "Canceled");
    }
}
