//! ImageLocality: nodes that already hold the pod's container images score
//! higher, scaled by how widely each image has spread, as kube-scheduler
//! scores it.
//!
//! Each container's (init containers included) image found on the node under
//! its normalized name adds its size × (nodes holding it / all nodes), so an
//! image present everywhere does not pull every pod onto the same nodes
//! ("node heating"). The sum is clamped to [23 MiB, 1000 MiB × containers]
//! and mapped linearly onto 0..=100. Names are matched as the node reports
//! them (`status.images[].names`: repo digests and repo tags); a pod image
//! without a tag gets `:latest`, and no other normalization happens (so
//! `nginx:1.27` does not match `docker.io/library/nginx:1.27`, exactly as in
//! kube-scheduler).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::cache::Cache;
use crate::framework::{NodeInfo, PodInfo, ScorePlugin, MAX_NODE_SCORE};

/// Plugin name.
pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
/// Below this, image presence does not count (the sum is raised to it).
pub const MIN_THRESHOLD: i64 = 23 * MB;
/// The upper bound per container.
pub const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The name a pod's image is looked up by: `:latest` added when it has no tag.
pub fn normalized_image_name(name: &str) -> String {
    if name.rfind(':').map(|i| i as isize).unwrap_or(-1) <= name.rfind('/').map(|i| i as isize).unwrap_or(-1) {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// The node's score from the summed scaled image sizes: clamped to
/// [`MIN_THRESHOLD`, `MAX_CONTAINER_THRESHOLD` × `containers`] and scaled onto 0..=100.
pub fn calculate_priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers as i64;
    if max <= MIN_THRESHOLD {
        return 0;
    }
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// A pod's container images (init containers included) as scoring reads
/// them: each normalized name with the share of all nodes holding it, worked
/// out once per pod rather than for every node scored.
pub struct PodImages {
    images: Vec<(String, f64)>,
    containers: usize,
}

impl PodImages {
    /// `pod`'s images, where `nodes_with(name)` of `total_nodes` nodes hold each.
    pub fn of(pod: &Pod, nodes_with: impl Fn(&str) -> usize, total_nodes: usize) -> PodImages {
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
        let images: Vec<(String, f64)> = containers
            .map(|c| {
                let name = normalized_image_name(c.image.as_deref().unwrap_or_default());
                let spread = nodes_with(&name) as f64 / total_nodes.max(1) as f64;
                (name, spread)
            })
            .collect();
        PodImages {
            containers: images.len(),
            images,
        }
    }

    /// The score of a node holding `images` (size by name).
    pub fn score(&self, images: &HashMap<String, i64>) -> i64 {
        let sum: i64 = self
            .images
            .iter()
            .filter_map(|(name, spread)| Some((*images.get(name)? as f64 * spread) as i64))
            .sum();
        calculate_priority(sum, self.containers)
    }
}

/// The ImageLocality score.
pub struct ImageLocality;

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _pod: &PodInfo, _node: &NodeInfo) -> i64 {
        // Needs the whole cluster's image spread: see `score_nodes`.
        0
    }

    fn score_nodes(&self, pod: &PodInfo, nodes: &[&NodeInfo], cache: &Cache) -> Option<Vec<i64>> {
        let images = PodImages::of(&pod.pod, |name| cache.image_node_count(name), cache.nodes().len());
        Some(nodes.iter().map(|n| images.score(&n.images)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::testing::*;
    use k8s_openapi::api::core::v1::{Container, ContainerImage, NodeStatus};
    use std::sync::Arc;

    fn with_images(name: &str, images: &[(&[&str], i64)]) -> k8s_openapi::api::core::v1::Node {
        let mut n = node(name, "4", "8Gi");
        let status: &mut NodeStatus = n.status.as_mut().unwrap();
        status.images = Some(
            images
                .iter()
                .map(|(names, size)| ContainerImage {
                    names: Some(names.iter().map(|s| s.to_string()).collect()),
                    size_bytes: Some(*size),
                })
                .collect(),
        );
        n
    }

    fn pod_with_images(init: &[&str], images: &[&str]) -> Pod {
        let mut p = pod("p", "", "");
        let spec = p.spec.as_mut().unwrap();
        let c = |(i, image): (usize, &&str)| Container {
            name: format!("c{i}"),
            image: Some(image.to_string()),
            ..Default::default()
        };
        spec.containers = images.iter().enumerate().map(c).collect();
        spec.init_containers = (!init.is_empty()).then(|| init.iter().enumerate().map(c).collect());
        p
    }

    #[test]
    fn names_without_a_tag_get_latest() {
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.27"), "nginx:1.27");
        assert_eq!(normalized_image_name("registry:5000/app"), "registry:5000/app:latest");
        assert_eq!(normalized_image_name("registry:5000/app:v2"), "registry:5000/app:v2");
        assert_eq!(normalized_image_name("app@sha256:abc"), "app@sha256:abc");
    }

    #[test]
    fn priority_is_clamped_between_the_thresholds() {
        assert_eq!(calculate_priority(0, 1), 0);
        assert_eq!(calculate_priority(MIN_THRESHOLD, 1), 0);
        assert_eq!(calculate_priority(MAX_CONTAINER_THRESHOLD, 1), 100);
        assert_eq!(calculate_priority(10 * MAX_CONTAINER_THRESHOLD, 1), 100);
        // 500 MiB of one container: (500 - 23) / (1000 - 23) of 100.
        assert_eq!(calculate_priority(500 * MB, 1), 48);
        // The same 500 MiB for two containers counts against 2000 MiB.
        assert_eq!(calculate_priority(500 * MB, 2), 24);
    }

    #[test]
    fn nodes_holding_the_images_score_higher_scaled_by_spread() {
        let big = 800 * MB;
        let small = 200 * MB;
        let mut cache = Cache::new();
        cache.upsert_node(Arc::new(with_images(
            "both",
            &[(&["sha256:aaa", "app:v1"], big), (&["sidecar:latest"], small)],
        )));
        cache.upsert_node(Arc::new(with_images("app-only", &[(&["app:v1"], big)])));
        cache.upsert_node(Arc::new(with_images("none", &[])));
        cache.upsert_node(Arc::new(with_images("other", &[(&["other:v1"], big)])));
        assert_eq!(cache.image_node_count("app:v1"), 2);
        assert_eq!(cache.image_node_count("sidecar:latest"), 1);

        let p = pod_info(pod_with_images(&["sidecar"], &["app:v1"]));
        let nodes: Vec<&NodeInfo> = cache.nodes().iter().collect();
        let scores = ImageLocality.score_nodes(&p, &nodes, &cache).unwrap();
        let by_name: HashMap<&str, i64> = nodes.iter().map(|n| n.name()).zip(scores).collect();
        // app:v1 on 2 of 4 nodes: 400 MiB; sidecar on 1 of 4: 50 MiB; two containers.
        let both = calculate_priority(400 * MB + (small as f64 * 0.25) as i64, 2);
        assert_eq!(by_name["both"], both);
        assert_eq!(by_name["app-only"], calculate_priority(400 * MB, 2));
        assert!(by_name["both"] > by_name["app-only"] && by_name["app-only"] > 0);
        assert_eq!((by_name["none"], by_name["other"]), (0, 0));

        // A node losing the image no longer counts towards its spread.
        cache.upsert_node(Arc::new(with_images("app-only", &[])));
        assert_eq!(cache.image_node_count("app:v1"), 1);
        cache.remove_node("both");
        assert_eq!(cache.image_node_count("app:v1"), 0);
        assert_eq!(cache.image_node_count("sidecar:latest"), 0);
    }
}
