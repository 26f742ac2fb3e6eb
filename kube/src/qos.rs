//! A pod's QoS class (`Guaranteed`, `Burstable`, `BestEffort`) as
//! Kubernetes' `GetPodQOS` computes it, from the cpu and memory of its
//! containers and init containers.

/// One container's cpu and memory requests and limits, in thousandths of
/// their unit ([`crate::quantity::parse_milli`]); `None` when unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerResources {
    /// `requests.cpu`.
    pub cpu_request: Option<i64>,
    /// `limits.cpu`.
    pub cpu_limit: Option<i64>,
    /// `requests.memory`.
    pub memory_request: Option<i64>,
    /// `limits.memory`.
    pub memory_limit: Option<i64>,
}

/// `Guaranteed` when every container limits cpu and memory and requests
/// what it limits (a missing request defaults to the limit), `BestEffort`
/// when no container requests or limits either, `Burstable` otherwise.
/// Zero counts as unset.
pub fn qos_class(containers: impl IntoIterator<Item = ContainerResources>) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        for (request, limit) in [(c.cpu_request, c.cpu_limit), (c.memory_request, c.memory_limit)] {
            let (request, limit) = (request.filter(|v| *v != 0), limit.filter(|v| *v != 0));
            any |= request.is_some() || limit.is_some();
            guaranteed &= limit.is_some() && request.is_none_or(|r| Some(r) == limit);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(cpu: (Option<i64>, Option<i64>), memory: (Option<i64>, Option<i64>)) -> ContainerResources {
        ContainerResources {
            cpu_request: cpu.0,
            cpu_limit: cpu.1,
            memory_request: memory.0,
            memory_limit: memory.1,
        }
    }

    #[test]
    fn classes_follow_requests_and_limits() {
        assert_eq!(qos_class([]), "BestEffort");
        assert_eq!(qos_class([c((None, None), (None, None))]), "BestEffort");
        assert_eq!(qos_class([c((None, Some(250)), (None, Some(64)))]), "Guaranteed");
        assert_eq!(
            qos_class([c((Some(250), Some(250)), (Some(64), Some(64)))]),
            "Guaranteed"
        );
        assert_eq!(qos_class([c((Some(100), None), (None, None))]), "Burstable");
        assert_eq!(qos_class([c((None, None), (None, Some(64)))]), "Burstable");
        assert_eq!(
            qos_class([c((Some(100), Some(250)), (Some(64), Some(64)))]),
            "Burstable"
        );
        // One best-effort container beside a guaranteed one: Burstable.
        assert_eq!(
            qos_class([c((None, Some(1)), (None, Some(1))), c((None, None), (None, None))]),
            "Burstable"
        );
        assert_eq!(qos_class([c((Some(0), Some(0)), (None, None))]), "BestEffort");
    }
}
