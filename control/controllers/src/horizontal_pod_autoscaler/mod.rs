//! Horizontal pod autoscaler controller: every
//! `--horizontal-pod-autoscaler-sync-period` (15 s) each autoscaling/v2
//! HorizontalPodAutoscaler reads its target's `/scale`, the pods its
//! selector matches and their PodMetrics from `metrics.k8s.io/v1beta1`
//! (through the API server, served by the metrics server), computes the
//! replicas each `Resource` metric asks for ([`replicas`]), takes the
//! largest, stabilizes and rate-limits it ([`behavior`]) and writes the new
//! count through the target's `/scale`.
//!
//! As Kubernetes' `pkg/controller/podautoscaler`: the conditions
//! `AbleToScale`, `ScalingActive` and `ScalingLimited` with its reasons and
//! messages, `status.currentMetrics`/`currentReplicas`/`desiredReplicas`/
//! `lastScaleTime`, and the Events `SuccessfulRescale` (`New size: 3;
//! reason: cpu resource utilization (percentage of request) above target`),
//! `FailedGetScale`, `FailedGetResourceMetric`,
//! `FailedComputeMetricsReplicas`, `FailedRescale`, `SelectorRequired`. The
//! recommendations and scale events the windows look back on are kept in
//! memory per autoscaler (a restarted controller starts from the current
//! count, as Kubernetes' `recordInitialRecommendation`).

pub mod behavior;
pub mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus,
    MetricSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};

use crate::events::EventType;
use crate::informer::Informer;
use crate::{runner, Context, Error};

use self::behavior::{Behavior, Decision, History, Policy, Rules, Select};
use self::replicas::{PodSample, Proposal, Sample, Settings, Target};

/// Name in `--controllers`.
pub const NAME: &str = "horizontal-pod-autoscaler";

/// kube-controller-manager's horizontal-pod-autoscaler flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HpaArgs {
    /// How often every autoscaler is reconciled.
    #[arg(long = "horizontal-pod-autoscaler-sync-period", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sync_period: Duration,
    /// How far back scale-down recommendations are looked at (autoscalers
    /// without `behavior.scaleDown.stabilizationWindowSeconds`).
    #[arg(long = "horizontal-pod-autoscaler-downscale-stabilization", default_value = "5m", value_parser = humantime::parse_duration)]
    pub downscale_stabilization: Duration,
    /// The ratio of usage to target within which nothing changes.
    #[arg(long = "horizontal-pod-autoscaler-tolerance", default_value_t = 0.1)]
    pub tolerance: f64,
    /// How long after a pod starts its CPU samples may predate readiness.
    #[arg(long = "horizontal-pod-autoscaler-cpu-initialization-period", default_value = "5m", value_parser = humantime::parse_duration)]
    pub cpu_initialization_period: Duration,
    /// How long after a pod starts an unready pod is taken as not yet ready.
    #[arg(long = "horizontal-pod-autoscaler-initial-readiness-delay", default_value = "30s", value_parser = humantime::parse_duration)]
    pub initial_readiness_delay: Duration,
}

type Histories = Arc<Mutex<HashMap<String, History>>>;

/// Subscribes the controller (its own HPA informer) and returns its loop.
pub fn init(ctx: Arc<Context>) -> BoxFuture<'static, ()> {
    let informer = Informer::<HorizontalPodAutoscaler>::new(Api::all(ctx.client.clone()), watcher::Config::default());
    let store = informer.store();
    let own = informer.trigger(|h: &HorizontalPodAutoscaler| Some(ObjectRef::from_obj(h)));
    informer.start();
    let histories: Histories = Arc::default();
    runner::run(NAME, ctx, store, vec![own.boxed()], move |hpa, ctx| {
        let histories = histories.clone();
        async move { reconcile(hpa, ctx, histories).await }
    })
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// A Go duration as metrics-server writes `window` (`15s`, `1m0.5s`); 15 s if unreadable.
fn parse_window(w: &str) -> i64 {
    if let Some(secs) = w.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()) {
        return (secs * 1000.0) as i64;
    }
    humantime::parse_duration(w).map(ms).unwrap_or(15_000)
}

/// A milli-value as Kubernetes' `NewMilliQuantity(v, DecimalSI).String()`.
pub fn format_milli(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut value = milli / 1000;
    if value == 0 {
        return "0".into();
    }
    for suffix in ["", "k", "M", "G", "T", "P"] {
        if value % 1000 != 0 {
            return format!("{value}{suffix}");
        }
        value /= 1000;
    }
    format!("{value}E")
}

/// The `Behavior` of `spec.behavior` (Kubernetes' defaults already applied
/// by the API server; an unset scale-down window is the flag's).
fn behavior_of(hpa: &HorizontalPodAutoscaler, downscale: Duration) -> Option<Behavior> {
    let b = hpa.spec.behavior.as_ref()?;
    let rules = |r: Option<&HPAScalingRules>, default_window: i64| Rules {
        window: r
            .and_then(|r| r.stabilization_window_seconds)
            .map(|s| i64::from(s) * 1000)
            .unwrap_or(default_window),
        select: match r.and_then(|r| r.select_policy.as_deref()) {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            _ => Select::Max,
        },
        policies: r
            .and_then(|r| r.policies.as_ref())
            .map(|ps| {
                ps.iter()
                    .map(|p| Policy {
                        pods: p.type_ == "Pods",
                        value: p.value,
                        period: i64::from(p.period_seconds) * 1000,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    Some(Behavior {
        up: rules(b.scale_up.as_ref(), 0),
        down: rules(b.scale_down.as_ref(), ms(downscale)),
    })
}

/// Per-direction tolerances: `behavior.scale*.tolerance`, else the flag.
fn tolerances(hpa: &HorizontalPodAutoscaler, default: f64) -> (f64, f64) {
    let of = |r: Option<&HPAScalingRules>| {
        r.and_then(|r| r.tolerance.as_ref())
            .and_then(|q| sluice_kube::quantity::parse_milli(&q.0).ok())
            .map(|m| m as f64 / 1000.0)
            .unwrap_or(default)
    };
    let b = hpa.spec.behavior.as_ref();
    (
        of(b.and_then(|b| b.scale_down.as_ref())),
        of(b.and_then(|b| b.scale_up.as_ref())),
    )
}

/// What one reconcile sets on the status.
struct Outcome {
    conditions: Vec<HorizontalPodAutoscalerCondition>,
    now: Timestamp,
}

impl Outcome {
    /// Kubernetes' `setCondition`: the transition time moves only when the status does.
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let status = if status { "True" } else { "False" }.to_string();
        let message = Some(message.into());
        let reason = Some(reason.to_string());
        if let Some(c) = self.conditions.iter_mut().find(|c| c.type_ == type_) {
            if c.status != status {
                c.last_transition_time = Some(Time(self.now));
            }
            c.status = status;
            c.reason = reason;
            c.message = message;
        } else {
            self.conditions.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                status,
                reason,
                message,
                last_transition_time: Some(Time(self.now)),
                observed_generation: None,
            });
        }
    }
}

/// The scale target's API (found by discovery).
async fn target_api(ctx: &Context, hpa: &HorizontalPodAutoscaler) -> Result<(Api<DynamicObject>, String), String> {
    let spec = &hpa.spec;
    let r = &spec.scale_target_ref;
    let api_version = r.api_version.clone().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &r.kind);
    let (resource, _) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(|e| format!("unable to determine resource for scale target reference: {e}"))?;
    let ns = hpa.namespace().unwrap_or_default();
    Ok((Api::namespaced_with(ctx.client.clone(), &ns, &resource), r.name.clone()))
}

/// The pods' samples of `resource` from `metrics.k8s.io` (a pod missing it
/// in one container has none, as Kubernetes' metrics client).
async fn pod_samples(
    ctx: &Context,
    ns: &str,
    selector: &str,
    resource: &str,
) -> Result<BTreeMap<String, Sample>, String> {
    let ar = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
    if list.items.is_empty() {
        return Err("no metrics returned from resource metrics API".into());
    }
    let mut out = BTreeMap::new();
    for m in &list.items {
        let containers = m
            .data
            .get("containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut total = 0i64;
        let mut missing = containers.is_empty();
        for c in &containers {
            match c
                .pointer(&format!("/usage/{resource}"))
                .and_then(Value::as_str)
                .and_then(|q| sluice_kube::quantity::parse_milli(q).ok())
            {
                Some(v) => total += v,
                None => missing = true,
            }
        }
        if missing {
            continue;
        }
        let timestamp = m
            .data
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| t.as_millisecond())
            .unwrap_or_default();
        let window = m
            .data
            .get("window")
            .and_then(Value::as_str)
            .map(parse_window)
            .unwrap_or(15_000);
        out.insert(
            m.name_any(),
            Sample {
                value: total,
                timestamp,
                window,
            },
        );
    }
    if out.is_empty() {
        return Err("no metrics returned from resource metrics API".into());
    }
    Ok(out)
}

/// The fields of `pod` the calculation reads.
fn pod_sample(pod: &Pod, resource: &str) -> PodSample {
    let status = pod.status.as_ref();
    let ready = sluice_kube::pods::condition(pod, "Ready").map(|c| {
        (
            c.status == "True",
            c.last_transition_time
                .as_ref()
                .map(|t| t.0.as_millisecond())
                .unwrap_or_default(),
        )
    });
    let mut request = Ok(0);
    for c in pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default() {
        let q = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| sluice_kube::quantity::parse_milli(&q.0).ok());
        request = match (request, q) {
            (Ok(sum), Some(q)) => Ok(sum + q),
            (Ok(_), None) => Err(format!(
                "missing request for {resource} in container {} of Pod {}",
                c.name,
                pod.name_any()
            )),
            (err, _) => err,
        };
    }
    PodSample {
        name: pod.name_any(),
        phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        ready,
        start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0.as_millisecond()),
        request,
    }
}

/// One metric's proposal: (replicas, metric name, status entry), or the
/// error Kubernetes reports for it.
async fn metric_proposal(
    ctx: &Context,
    hpa: &HorizontalPodAutoscaler,
    spec: &MetricSpec,
    current: i32,
    selector: &str,
    pods: &[Pod],
) -> Result<(i32, String, Value), String> {
    let Some(res) = spec.resource.as_ref().filter(|_| spec.type_ == "Resource") else {
        return Err(format!("metric type {} is not supported", spec.type_));
    };
    let name = res.name.as_str();
    let target = match (res.target.average_utilization, res.target.average_value.as_ref()) {
        (Some(u), _) => Target::Utilization(i64::from(u)),
        (None, Some(q)) => Target::AverageValue(sluice_kube::quantity::parse_milli(&q.0).map_err(|e| e.to_string())?),
        _ => {
            return Err(
                "invalid resource metric source: neither a utilization target nor a value target was set".into(),
            )
        }
    };
    let ns = hpa.namespace().unwrap_or_default();
    let what = match target {
        Target::Utilization(_) => "utilization",
        Target::AverageValue(_) => "usage",
    };
    let wrap = |e: String| format!("failed to get {name} {what}: unable to get metrics for resource {name}: {e}");
    let samples = pod_samples(ctx, &ns, selector, name).await.map_err(wrap)?;
    let (tolerance_down, tolerance_up) = tolerances(hpa, ctx.config.hpa.tolerance);
    let settings = Settings {
        tolerance_down,
        tolerance_up,
        cpu_initialization_period: ms(ctx.config.hpa.cpu_initialization_period),
        initial_readiness_delay: ms(ctx.config.hpa.initial_readiness_delay),
        now: Timestamp::now().as_millisecond(),
    };
    let pods: Vec<PodSample> = pods.iter().map(|p| pod_sample(p, name)).collect();
    let Proposal {
        replicas,
        utilization,
        average,
    } = replicas::replicas(current, target, name == "cpu", &pods, &samples, &settings)
        .map_err(|e| format!("failed to get {name} {what}: {e}"))?;
    let mut current_value = json!({"averageValue": format_milli(average)});
    if let Some(u) = utilization {
        current_value["averageUtilization"] = json!(u);
    }
    let metric = match target {
        Target::Utilization(_) => format!("{name} resource utilization (percentage of request)"),
        Target::AverageValue(_) => format!("{name} resource"),
    };
    let status = json!({"type": "Resource", "resource": {"name": name, "current": current_value}});
    Ok((replicas, metric, status))
}

async fn reconcile(
    hpa: Arc<HorizontalPodAutoscaler>,
    ctx: Arc<Context>,
    histories: Histories,
) -> Result<Action, Error> {
    let period = ctx.config.hpa.sync_period;
    let key = format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any());
    if hpa.metadata.deletion_timestamp.is_some() {
        histories.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let old_status = hpa.status.clone().unwrap_or_default();
    let mut out = Outcome {
        conditions: old_status.conditions.clone().unwrap_or_default(),
        now,
    };
    let mut status = HorizontalPodAutoscalerStatus {
        current_metrics: old_status.current_metrics.clone(),
        current_replicas: old_status.current_replicas,
        desired_replicas: old_status.desired_replicas,
        last_scale_time: old_status.last_scale_time.clone(),
        observed_generation: hpa.metadata.generation,
        conditions: None,
    };
    let spec = hpa.spec.clone();
    let hpa_api: Api<HorizontalPodAutoscaler> =
        Api::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default());

    let scale = match target_api(&ctx, &hpa).await {
        Ok((api, name)) => api
            .get_scale(&name)
            .await
            .map(|s| (api, name, s))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let (target, target_name, scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            ctx.recorder
                .record(&*hpa, EventType::Warning, "FailedGetScale", e.clone());
            out.set(
                "AbleToScale",
                false,
                "FailedGetScale",
                format!("the HPA controller was unable to get the target's current scale: {e}"),
            );
            write_status(&hpa_api, &hpa, status, out).await?;
            return Ok(Action::requeue(period));
        }
    };
    out.set(
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
    );
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale
        .status
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let behavior = behavior_of(&hpa, ctx.config.hpa.downscale_stabilization);
    {
        // Kubernetes' recordInitialRecommendation.
        let mut h = histories.lock().unwrap_or_else(|p| p.into_inner());
        h.entry(key.clone())
            .or_insert_with(|| History::starting_at(current, now.as_millisecond()));
    }

    let mut rescale_reason = String::new();
    let mut desired = 0;
    let mut rescale = true;
    if current == 0 && min != 0 {
        rescale = false;
        out.set(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
        );
    } else if current > max {
        rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        if selector.is_empty() {
            ctx.recorder.record(
                &*hpa,
                EventType::Warning,
                "SelectorRequired",
                "selector is required".into(),
            );
            out.set(
                "ScalingActive",
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            );
            write_status(&hpa_api, &hpa, status, out).await?;
            return Ok(Action::requeue(period));
        }
        let pods = Api::<Pod>::namespaced(ctx.client.clone(), &hpa.namespace().unwrap_or_default())
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let metrics = spec.metrics.clone().unwrap_or_default();
        let mut statuses = Vec::new();
        let (mut proposal, mut metric_name) = (0, String::new());
        let mut invalid = 0;
        let mut first_error = None;
        for m in &metrics {
            match metric_proposal(&ctx, &hpa, m, current, &selector, &pods).await {
                Ok((replicas, name, st)) => {
                    statuses.push(st);
                    if proposal == 0 || replicas > proposal {
                        proposal = replicas;
                        metric_name = name;
                    }
                }
                Err(e) => {
                    let resource = m.resource.as_ref().map(|r| r.name.clone()).unwrap_or_default();
                    ctx.recorder
                        .record(&*hpa, EventType::Warning, "FailedGetResourceMetric", e.clone());
                    statuses.push(json!({}));
                    if invalid == 0 {
                        first_error = Some((format!("failed to get {resource} resource metric value: {e}"), e));
                    }
                    invalid += 1;
                }
            }
        }
        status.current_metrics = serde_json::from_value(json!(statuses
            .into_iter()
            .filter(|s| s.get("type").is_some())
            .collect::<Vec<_>>()))
        .ok()
        .filter(|v: &Vec<_>| !v.is_empty());
        if let Some((error, condition_error)) = first_error.filter(|_| invalid >= metrics.len() || proposal < current) {
            out.set(
                "ScalingActive",
                false,
                "FailedGetResourceMetric",
                format!("the HPA was unable to compute the replica count: {condition_error}"),
            );
            ctx.recorder.record(
                &*hpa,
                EventType::Warning,
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {error}",
                    metrics.len()
                ),
            );
            status.current_replicas = (current != 0).then_some(current);
            write_status(&hpa_api, &hpa, status, out).await?;
            return Ok(Action::requeue(period));
        }
        out.set(
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!("the HPA was able to successfully calculate a replica count from {metric_name}"),
        );
        desired = proposal;
        if desired > current {
            rescale_reason = format!("{metric_name} above target");
        } else if desired < current {
            rescale_reason = "All metrics below target".into();
        }
        let Decision {
            replicas,
            able,
            limited,
        } = {
            let mut h = histories.lock().unwrap_or_else(|p| p.into_inner());
            let history = h.entry(key.clone()).or_default();
            behavior::normalize(
                history,
                behavior.as_ref(),
                ms(ctx.config.hpa.downscale_stabilization),
                current,
                desired,
                min,
                max,
                now.as_millisecond(),
            )
        };
        desired = replicas;
        out.set("AbleToScale", true, able.0, able.1);
        out.set("ScalingLimited", limited.0, limited.1, limited.2);
        rescale = desired != current;
    }

    if rescale {
        // An update of the Scale read above, as Kubernetes (its role grants
        // `update` on `*/scale`, not `patch`); a conflict is retried next sync.
        let mut new_scale = scale.clone();
        new_scale.spec.get_or_insert_with(Default::default).replicas = Some(desired);
        if let Err(e) = target
            .replace_scale(&target_name, &PostParams::default(), &new_scale)
            .await
        {
            ctx.recorder.record(
                &*hpa,
                EventType::Warning,
                "FailedRescale",
                format!("New size: {desired}; reason: {rescale_reason}; error: {e}"),
            );
            out.set(
                "AbleToScale",
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {e}"),
            );
            status.current_replicas = (current != 0).then_some(current);
            write_status(&hpa_api, &hpa, status, out).await?;
            return Ok(Action::requeue(period));
        }
        out.set(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
        ctx.recorder.record(
            &*hpa,
            EventType::Normal,
            "SuccessfulRescale",
            format!("New size: {desired}; reason: {rescale_reason}"),
        );
        histories
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .record_scale(behavior.as_ref(), current, desired, now.as_millisecond());
        tracing::info!(from = current, to = desired, reason = %rescale_reason, "rescaled");
        status.last_scale_time = Some(Time(now));
    } else {
        desired = current;
    }
    status.current_replicas = (current != 0).then_some(current);
    status.desired_replicas = desired;
    write_status(&hpa_api, &hpa, status, out).await?;
    Ok(Action::requeue(period))
}

/// Writes the status when it changed (Kubernetes' `updateStatusIfNeeded`).
async fn write_status(
    api: &Api<HorizontalPodAutoscaler>,
    hpa: &HorizontalPodAutoscaler,
    mut status: HorizontalPodAutoscalerStatus,
    out: Outcome,
) -> Result<(), Error> {
    status.conditions = Some(out.conditions);
    if hpa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // `update` of the status, as Kubernetes' role grants.
    let mut updated = hpa.clone();
    updated.status = Some(status);
    api.replace_status(&hpa.name_any(), &PostParams::default(), &updated)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_as_kubernetes() {
        assert_eq!(format_milli(250), "250m");
        assert_eq!(format_milli(1000), "1");
        assert_eq!(format_milli(0), "0");
        assert_eq!(format_milli(2_000_000), "2k");
        assert_eq!(format_milli(104_857_600_000), "104857600");
        assert_eq!(format_milli(5_000_000_000), "5M");
    }

    #[test]
    fn windows_parse_as_go_durations() {
        assert_eq!(parse_window("15s"), 15_000);
        assert_eq!(parse_window("10.5s"), 10_500);
        assert_eq!(parse_window("1m"), 60_000);
    }

    #[test]
    fn behavior_takes_the_flag_for_an_unset_scale_down_window() {
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
                "behavior": {"scaleDown": {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Min", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
                        "tolerance": "50m"}}},
        }))
        .unwrap();
        let b = behavior_of(&hpa, Duration::from_secs(300)).unwrap();
        assert_eq!(b.down.window, 300_000);
        assert_eq!(b.up.select, Select::Min);
        assert_eq!(
            b.up.policies,
            [Policy {
                pods: true,
                value: 4,
                period: 15_000
            }]
        );
        assert_eq!(tolerances(&hpa, 0.1), (0.1, 0.05));
    }
}
