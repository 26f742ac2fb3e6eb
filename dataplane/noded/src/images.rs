//! Container images: pull policy, registry credentials, pulls with back-off.
//!
//! Before a container is created the pod worker asks [`ImageManager::ensure`]
//! for its image, which behaves as the kubelet's image manager: the
//! `imagePullPolicy` decides whether to pull (`Never` + absent is
//! `ErrImageNeverPull`); a pull uses the credentials of the pod's
//! `imagePullSecrets` that match the image's registry ([`Keyring`], trying
//! each in turn, anonymous only when none matches); a failed pull is
//! `ErrImagePull` and then `ImagePullBackOff` for 10 s, doubling up to
//! 300 s, per (pod, image). Each step is an Event on the container. Pulls run
//! in the pod's own worker, so they never hold up other pods; containerd
//! de-duplicates concurrent pulls of one image. The image's repo digest is
//! remembered for `containerStatuses[].imageID`.

use crate::backoff::Backoff;
use crate::cri::{api, Cri};
use crate::events::PodEvents;
use crate::format::go_duration;
use crate::lock;
use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Waiting reason: the image could not be pulled.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// Waiting reason: backing off after a failed pull.
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
/// Waiting reason: the image is absent and the policy is `Never`.
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
/// Waiting reason: the runtime could not say whether the image is present.
pub const ERR_IMAGE_INSPECT: &str = "ImageInspectError";
/// Waiting reason: the image name does not parse.
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

/// First wait after a failed pull (kubelet: 10 s).
pub const PULL_BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// Longest wait between pulls (kubelet: 300 s).
pub const PULL_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The Docker Hub host names images and credentials use.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull on every container start.
    Always,
    /// Pull only when the image is absent.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The container's policy; unset is defaulted as the API server does
    /// (`:latest` or no tag: `Always`, else `IfNotPresent`).
    pub fn of(container: &Container) -> Self {
        match container.image_pull_policy.as_deref() {
            Some("Always") => Self::Always,
            Some("Never") => Self::Never,
            Some("IfNotPresent") => Self::IfNotPresent,
            _ => {
                let image = container.image.as_deref().unwrap_or("");
                match tag(image) {
                    _ if digest(image).is_some() => Self::IfNotPresent,
                    None | Some("latest") => Self::Always,
                    Some(_) => Self::IfNotPresent,
                }
            }
        }
    }

    /// Whether to pull, given whether the image is present.
    pub fn should_pull(self, present: bool) -> bool {
        match self {
            Self::Always => true,
            Self::IfNotPresent => !present,
            Self::Never => false,
        }
    }
}

/// The name part of an image reference (without `@digest`).
fn without_digest(image: &str) -> &str {
    image.split_once('@').map_or(image, |(name, _)| name)
}

/// The `@digest` of an image reference.
fn digest(image: &str) -> Option<&str> {
    image.split_once('@').map(|(_, d)| d)
}

/// The `:tag` of an image reference (a `:` after the last `/`).
fn tag(image: &str) -> Option<&str> {
    let name = without_digest(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, t)| t)
}

/// Whether the reference parses: non-empty, no whitespace, lowercase repository.
pub fn valid_reference(image: &str) -> bool {
    let name = without_digest(image);
    let repo = match tag(image) {
        Some(t) => &name[..name.len() - t.len() - 1],
        None => name,
    };
    let has_domain = repo
        .split_once('/')
        .is_some_and(|(first, _)| first.contains(['.', ':']) || first == "localhost");
    !repo.is_empty()
        && !image.chars().any(char::is_whitespace)
        && !repo
            .split('/')
            .skip(usize::from(has_domain))
            .any(|part| part.chars().any(|c| c.is_ascii_uppercase()))
        && !repo.split('/').any(str::is_empty)
}

/// The image with `:latest` when it has neither tag nor digest (the kubelet's default tag).
pub fn with_default_tag(image: &str) -> String {
    if tag(image).is_none() && digest(image).is_none() {
        format!("{image}:latest")
    } else {
        image.to_string()
    }
}

/// The registry host (with port) and path of an image, normalized as
/// Docker does: `nginx` is `docker.io` + `library/nginx`.
pub fn registry_and_path(image: &str) -> (String, String) {
    let name = without_digest(image);
    let name = match tag(image) {
        Some(t) => &name[..name.len() - t.len() - 1],
        None => name,
    };
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            let host = if DOCKER_HUB_ALIASES.contains(&first) {
                DOCKER_HUB
            } else {
                first
            };
            let path = if host == DOCKER_HUB && !rest.contains('/') {
                format!("library/{rest}")
            } else {
                rest.to_string()
            };
            (host.to_string(), path)
        }
        Some(_) => (DOCKER_HUB.into(), name.to_string()),
        None => (DOCKER_HUB.into(), format!("library/{name}")),
    }
}

/// The normalized repository of an image (`docker.io/library/nginx`).
pub fn repository(image: &str) -> String {
    let (host, path) = registry_and_path(image);
    format!("{host}/{path}")
}

/// Registry credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// User name.
    pub username: String,
    /// Password (or token).
    pub password: String,
}

impl Credential {
    /// As CRI `AuthConfig`.
    pub fn auth_config(&self) -> api::AuthConfig {
        api::AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            ..Default::default()
        }
    }
}

/// Errors reading registry credentials.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A pull secret's docker config does not parse.
    #[error("invalid docker config in secret {secret:?}: {reason}")]
    Config {
        /// The Secret's name.
        secret: String,
        /// What is wrong.
        reason: String,
    },
}

/// Credentials per registry location (`host[:port][/path]`), as the
/// kubelet's docker keyring: a location matches an image when the ports are
/// equal, the host names have the same number of labels and each matches
/// (labels may be globs such as `*.example.com`), and the location's path
/// is a prefix of the image's. More specific locations are tried first.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    entries: BTreeMap<String, Vec<Credential>>,
}

impl Keyring {
    /// Add the credentials of a pull secret (`kubernetes.io/dockerconfigjson`
    /// or `kubernetes.io/dockercfg`); other secrets add nothing.
    pub fn add_secret(&mut self, secret: &Secret) -> Result<(), ImageError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = secret.data.as_ref();
        let value = |key: &str| {
            data.and_then(|d| d.get(key))
                .map(|v| v.0.as_slice())
                .filter(|v| !v.is_empty())
        };
        let error = |reason: String| ImageError::Config {
            secret: name.clone(),
            reason,
        };
        let auths = match secret.type_.as_deref() {
            Some("kubernetes.io/dockerconfigjson") => match value(".dockerconfigjson") {
                Some(bytes) => {
                    let config: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| error(e.to_string()))?;
                    config.get("auths").cloned().unwrap_or_default()
                }
                None => return Ok(()),
            },
            Some("kubernetes.io/dockercfg") => match value(".dockercfg") {
                Some(bytes) => serde_json::from_slice(bytes).map_err(|e| error(e.to_string()))?,
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        self.add_auths(&auths).map_err(error)
    }

    /// Add a docker config `auths` object: location -> `{auth}` or `{username, password}`.
    pub fn add_auths(&mut self, auths: &serde_json::Value) -> Result<(), String> {
        let Some(auths) = auths.as_object() else {
            return Ok(());
        };
        for (location, entry) in auths {
            let text = |key: &str| entry.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let mut credential = Credential {
                username: text("username"),
                password: text("password"),
            };
            let auth = text("auth");
            if !auth.is_empty() {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("auth of {location:?}: {e}"))?;
                let decoded = String::from_utf8(decoded).map_err(|e| format!("auth of {location:?}: {e}"))?;
                let (user, pass) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("auth of {location:?}: expected user:password"))?;
                credential = Credential {
                    username: user.to_string(),
                    password: pass.trim_matches('\0').to_string(),
                };
            }
            if let Some(key) = location_key(location) {
                self.entries.entry(key).or_default().push(credential);
            }
        }
        Ok(())
    }

    /// Every credential matching `image` (any reference form), most specific location first.
    pub fn lookup(&self, image: &str) -> Vec<Credential> {
        let target = repository(image);
        let mut found: Vec<Credential> = self
            .entries
            .iter()
            .rev()
            .filter(|(key, _)| location_matches(key, &target))
            .flat_map(|(_, creds)| creds.iter().cloned())
            .collect();
        if found.is_empty() && target.starts_with("docker.io/") {
            // Docker Hub's credentials are often stored as https://index.docker.io/v1/.
            found = self.entries.get("index.docker.io").cloned().unwrap_or_default();
        }
        found
    }

    /// Whether no credential was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A config location as a schemeless key (`host[:port][/path]`); Docker's
/// `/v1/` and `/v2/` API prefixes stand for the host itself, and
/// `registry-1.docker.io` is `index.docker.io`.
fn location_key(location: &str) -> Option<String> {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if host.is_empty() {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let host = if host == "registry-1.docker.io" {
        "index.docker.io".to_string()
    } else {
        host
    };
    let path = path
        .strip_prefix("v1/")
        .or_else(|| path.strip_prefix("v2/"))
        .unwrap_or(if path == "v1" || path == "v2" { "" } else { path })
        .trim_end_matches('/');
    Some(if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    })
}

/// Whether a keyring location matches a normalized repository.
fn location_matches(key: &str, repository: &str) -> bool {
    let (key_host, key_path) = key.split_once('/').map_or((key, ""), |(h, p)| (h, p));
    let (host, path) = repository.split_once('/').map_or((repository, ""), |(h, p)| (h, p));
    let split_port = |h: &str| {
        h.split_once(':')
            .map_or((h.to_string(), String::new()), |(n, p)| (n.into(), p.into()))
    };
    let ((key_name, key_port), (name, port)) = (split_port(key_host), split_port(host));
    if key_port != port || !path.starts_with(key_path) {
        return false;
    }
    let key_labels: Vec<&str> = key_name.split('.').collect();
    let labels: Vec<&str> = name.split('.').collect();
    key_labels.len() == labels.len() && key_labels.iter().zip(&labels).all(|(g, l)| glob(g, l))
}

/// `*` (any run) and `?` (any one character) glob match of one host label.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.chars().next() {
        None => text.is_empty(),
        Some('*') => (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .any(|i| glob(&pattern[1..], &text[i..])),
        Some(p) => {
            let mut chars = text.chars();
            match chars.next() {
                Some(c) if p == '?' || p.eq_ignore_ascii_case(&c) => glob(&pattern[p.len_utf8()..], chars.as_str()),
                _ => false,
            }
        }
    }
}

/// Errors of several pull attempts as one message (the kubelet's aggregate:
/// one error as itself, several as `[a, b]`, duplicates once).
pub fn aggregate(errors: &[String]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for e in errors {
        if !unique.contains(&e.as_str()) {
            unique.push(e);
        }
    }
    match unique.as_slice() {
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Event and status texts, worded as the kubelet's.
pub mod messages {
    use super::*;

    /// Normal `Pulling`.
    pub fn pulling(image: &str) -> String {
        format!("Pulling image {image:?}")
    }
    /// Normal `Pulled` after a pull.
    pub fn pulled(image: &str, pull: Duration, total: Duration, size: u64) -> String {
        let ms = |d: Duration| Duration::from_millis(d.as_millis() as u64);
        format!(
            "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
            go_duration(ms(pull)),
            go_duration(ms(total))
        )
    }
    /// Normal `Pulled` without a pull.
    pub fn already_present(image: &str) -> String {
        format!("Container image {image:?} already present on machine")
    }
    /// Warning `ErrImageNeverPull` and the waiting message.
    pub fn never_pull(image: &str) -> String {
        format!("Container image {image:?} is not present with pull policy of Never")
    }
    /// Warning `Failed` after a failed pull.
    pub fn failed_to_pull(image: &str, error: &str) -> String {
        format!("Failed to pull image {image:?}: {error}")
    }
    /// Normal `BackOff` (the waiting message adds `: ErrImagePull: <error>`).
    pub fn back_off(image: &str) -> String {
        format!("Back-off pulling image {image:?}")
    }
    /// Waiting message of `ImagePullBackOff`.
    pub fn back_off_waiting(image: &str, last_error: Option<&str>) -> String {
        match last_error {
            Some(error) => format!("{}: {ERR_IMAGE_PULL}: {error}", back_off(image)),
            None => back_off(image),
        }
    }
    /// Warning `Failed` naming the waiting reason.
    pub fn error(reason: &str) -> String {
        format!("Error: {reason}")
    }
    /// Warning `FailedToRetrieveImagePullSecret` on the Pod.
    pub fn missing_pull_secrets(names: &[String]) -> String {
        format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
            names.join(", ")
        )
    }
    /// Warning `InspectFailed` / waiting message of `InvalidImageName`.
    pub fn invalid_name(image: &str) -> String {
        format!("Failed to apply default image tag {image:?}: couldn't parse image reference {image:?}: invalid reference format")
    }
    /// Warning `InspectFailed` / waiting message of `ImageInspectError`.
    pub fn inspect_failed(image: &str, error: &str) -> String {
        format!("Failed to inspect image {image:?}: {error}")
    }
}

/// Why a container cannot start yet: its waiting reason and message.
pub type Waiting = (String, String);

/// Pulls images for the node's pods (shared by every pod worker).
pub struct ImageManager {
    cri: Cri,
    client: kube::Client,
    backoff: Mutex<Backoff>,
    last_errors: Mutex<HashMap<(String, String), String>>,
    digests: Mutex<HashMap<String, String>>,
}

/// The repo digest of `image` among an image's `repo_digests` (same repository first).
pub fn repo_digest(image: &str, repo_digests: &[String]) -> Option<String> {
    let wanted = repository(image);
    repo_digests
        .iter()
        .find(|d| d.split_once('@').is_some_and(|(repo, _)| repository(repo) == wanted))
        .or_else(|| repo_digests.first())
        .cloned()
}

impl ImageManager {
    /// A manager pulling through `cri`, reading pull secrets with `client`.
    pub fn new(cri: Cri, client: kube::Client) -> Self {
        Self {
            cri,
            client,
            backoff: Mutex::new(Backoff::new(PULL_BACKOFF_INITIAL, PULL_BACKOFF_MAX)),
            last_errors: Mutex::default(),
            digests: Mutex::default(),
        }
    }

    /// The repo digest (`docker.io/library/nginx@sha256:...`) last seen for `image`.
    pub fn image_id(&self, image: &str) -> Option<String> {
        lock(&self.digests).get(image).cloned()
    }

    /// Forget a pod's back-offs (pod removed).
    pub fn forget_pod(&self, uid: &str) {
        lock(&self.backoff).forget_pod(uid);
        lock(&self.last_errors).retain(|(u, _), _| u != uid);
    }

    /// Make sure the container's image is on the node, pulling it per policy.
    /// Records the kubelet's events; `Ok` is the image's status as the
    /// runtime last gave it (`None` if it could not say after a pull), which
    /// the container's config reads its user from; `Err` is the container's
    /// waiting state.
    #[tracing::instrument(skip_all, fields(container = %container.name, image = container.image.as_deref().unwrap_or("")))]
    pub async fn ensure(
        &self,
        pod: &Pod,
        container: &Container,
        events: &PodEvents,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<Option<api::Image>, Waiting> {
        let image = container.image.clone().unwrap_or_default();
        let name = container.name.as_str();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !valid_reference(&image) {
            let message = messages::invalid_name(&image);
            events.warning(pod, name, "InspectFailed", message.clone());
            return Err((INVALID_IMAGE_NAME.into(), message));
        }
        let spec_image = with_default_tag(&image);
        let present = match self.cri.image_status(&spec_image).await {
            Ok(status) => status,
            Err(err) => {
                let message = messages::inspect_failed(&image, &err.runtime_message());
                events.warning(pod, name, "InspectFailed", message.clone());
                return Err((ERR_IMAGE_INSPECT.into(), message));
            }
        };
        let policy = PullPolicy::of(container);
        if !policy.should_pull(present.is_some()) {
            return match present {
                Some(found) => {
                    self.remember(&image, &found);
                    events.normal(pod, name, "Pulled", messages::already_present(&image));
                    Ok(Some(found))
                }
                None => {
                    let message = messages::never_pull(&image);
                    events.warning(pod, name, ERR_IMAGE_NEVER_PULL, message.clone());
                    Err((ERR_IMAGE_NEVER_PULL.into(), message))
                }
            };
        }
        let key = (uid.clone(), image.clone());
        if lock(&self.backoff).check(&uid, &image, Instant::now()).is_err() {
            events.normal(pod, name, "BackOff", messages::back_off(&image));
            let last = lock(&self.last_errors).get(&key).cloned();
            return Err((
                IMAGE_PULL_BACK_OFF.into(),
                messages::back_off_waiting(&image, last.as_deref()),
            ));
        }
        events.normal(pod, name, "Pulling", messages::pulling(&image));
        let started = Instant::now();
        let keyring = self.keyring(pod, events).await;
        let result = match keyring {
            Ok(keyring) => self.pull(&spec_image, &keyring, sandbox_config).await,
            Err(err) => Err(err.to_string()),
        };
        let pulled_in = started.elapsed();
        match result {
            Ok(()) => {
                let found = self.cri.image_status(&spec_image).await.ok().flatten();
                let size = found.as_ref().map(|i| i.size).unwrap_or(0);
                if let Some(found) = &found {
                    self.remember(&image, found);
                }
                tracing::info!(elapsed = ?pulled_in, size, "image pulled");
                events.normal(
                    pod,
                    name,
                    "Pulled",
                    messages::pulled(&image, pulled_in, started.elapsed(), size),
                );
                lock(&self.backoff).forget(&uid, &image);
                lock(&self.last_errors).remove(&key);
                Ok(found)
            }
            Err(error) => {
                tracing::warn!(%error, "image pull failed");
                events.warning(pod, name, "Failed", messages::failed_to_pull(&image, &error));
                lock(&self.backoff).failed(&uid, &image, Instant::now());
                lock(&self.last_errors).insert(key, error.clone());
                Err((ERR_IMAGE_PULL.into(), error))
            }
        }
    }

    fn remember(&self, image: &str, found: &api::Image) {
        if let Some(digest) = repo_digest(image, &found.repo_digests) {
            lock(&self.digests).insert(image.to_string(), digest);
        }
    }

    /// The pod's pull secrets as a keyring; missing secrets are an Event, not an error.
    async fn keyring(&self, pod: &Pod, events: &PodEvents) -> Result<Keyring, ImageError> {
        let mut keyring = Keyring::default();
        let refs = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_deref())
            .unwrap_or(&[]);
        if refs.is_empty() {
            return Ok(keyring);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let mut missing = Vec::new();
        for reference in refs {
            let name = reference.name.as_str();
            match secrets.get_opt(name).await {
                Ok(Some(secret)) => keyring.add_secret(&secret)?,
                Ok(None) => missing.push(name.to_string()),
                Err(err) => {
                    tracing::warn!(secret = name, %err, "cannot read a pull secret");
                    missing.push(name.to_string());
                }
            }
        }
        if !missing.is_empty() {
            events.warning(
                pod,
                "",
                "FailedToRetrieveImagePullSecret",
                messages::missing_pull_secrets(&missing),
            );
        }
        Ok(keyring)
    }

    /// Pull with each matching credential in turn (anonymously when none matches).
    async fn pull(&self, image: &str, keyring: &Keyring, sandbox_config: &api::PodSandboxConfig) -> Result<(), String> {
        let credentials = keyring.lookup(image);
        if credentials.is_empty() {
            return self
                .cri
                .pull_image(image, None, Some(sandbox_config.clone()))
                .await
                .map(drop)
                .map_err(|e| e.runtime_message());
        }
        let mut errors = Vec::new();
        for credential in credentials {
            match self
                .cri
                .pull_image(image, Some(credential.auth_config()), Some(sandbox_config.clone()))
                .await
            {
                Ok(_) => return Ok(()),
                Err(err) => errors.push(err.runtime_message()),
            }
        }
        Err(aggregate(&errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn policies_decide_pulls_and_default_from_the_tag() {
        assert_eq!(PullPolicy::of(&container("nginx", None)), PullPolicy::Always);
        assert_eq!(PullPolicy::of(&container("nginx:latest", None)), PullPolicy::Always);
        assert_eq!(PullPolicy::of(&container("nginx:1.27", None)), PullPolicy::IfNotPresent);
        assert_eq!(
            PullPolicy::of(&container("registry:5000/app", None)),
            PullPolicy::Always,
            "a port is no tag"
        );
        assert_eq!(
            PullPolicy::of(&container("nginx@sha256:abc", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(PullPolicy::of(&container("nginx", Some("Never"))), PullPolicy::Never);
        assert!(PullPolicy::Always.should_pull(true));
        assert!(PullPolicy::IfNotPresent.should_pull(false));
        assert!(!PullPolicy::IfNotPresent.should_pull(true));
        assert!(!PullPolicy::Never.should_pull(false));
    }

    #[test]
    fn references_normalize_like_docker() {
        assert_eq!(repository("nginx"), "docker.io/library/nginx");
        assert_eq!(repository("nginx:1.27"), "docker.io/library/nginx");
        assert_eq!(repository("bitnami/redis:7"), "docker.io/bitnami/redis");
        assert_eq!(repository("index.docker.io/busybox"), "docker.io/library/busybox");
        assert_eq!(
            repository("registry.local:5000/team/app:v1@sha256:ab"),
            "registry.local:5000/team/app"
        );
        assert_eq!(repository("localhost/app"), "localhost/app");
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("host:5000/busybox"), "host:5000/busybox:latest");
        assert_eq!(with_default_tag("busybox:1.35.0"), "busybox:1.35.0");
        assert!(valid_reference("sluice.local/busybox:1.35.0"));
        assert!(!valid_reference(""));
        assert!(!valid_reference("Nginx/Bad"));
        assert!(!valid_reference("Nginx"));
        assert!(valid_reference("Registry.Example/app"));
        assert!(!valid_reference("nginx latest"));
    }

    fn auths(json: serde_json::Value) -> Keyring {
        let mut keyring = Keyring::default();
        keyring.add_auths(&json).unwrap();
        keyring
    }

    fn cred(user: &str, pass: &str) -> Credential {
        Credential {
            username: user.into(),
            password: pass.into(),
        }
    }

    #[test]
    fn credentials_match_host_port_and_path() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let k = auths(serde_json::json!({
            "registry.local:5000": {"auth": b64("alice:s3cret")},
            "https://registry.local:5000/team/": {"username": "team", "password": "pw"},
            "*.corp.example": {"username": "corp", "password": "x"},
            "other.example": {"username": "o", "password": "y"},
        }));
        assert_eq!(
            k.lookup("registry.local:5000/team/app:v1"),
            [cred("team", "pw"), cred("alice", "s3cret")],
            "the more specific location first"
        );
        assert_eq!(k.lookup("registry.local:5000/solo"), [cred("alice", "s3cret")]);
        assert!(k.lookup("registry.local/solo").is_empty(), "ports must match");
        assert!(k.lookup("registry.local:5001/solo").is_empty());
        assert_eq!(k.lookup("images.corp.example/app"), [cred("corp", "x")]);
        assert!(
            k.lookup("a.images.corp.example/app").is_empty(),
            "label counts must match"
        );
        assert!(k.lookup("nginx").is_empty());
    }

    #[test]
    fn docker_hub_credentials_under_any_of_its_names() {
        for location in [
            "https://index.docker.io/v1/",
            "docker.io",
            "registry-1.docker.io",
            "index.docker.io",
        ] {
            let k = auths(serde_json::json!({ location: {"username": "hub", "password": "pw"} }));
            assert_eq!(k.lookup("nginx"), [cred("hub", "pw")], "{location}");
            assert_eq!(k.lookup("docker.io/bitnami/redis:7"), [cred("hub", "pw")], "{location}");
            assert!(k.lookup("quay.io/app").is_empty(), "{location}");
        }
    }

    #[test]
    fn pull_secrets_of_both_types_are_read_and_bad_ones_rejected() {
        let secret = |type_: &str, key: &str, value: serde_json::Value| Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("s".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(serde_json::to_vec(&value).unwrap()),
            )])),
            ..Default::default()
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode("u:p:with:colons");
        let mut k = Keyring::default();
        k.add_secret(&secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            serde_json::json!({"auths": {"r.example": {"auth": b64}}}),
        ))
        .unwrap();
        k.add_secret(&secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            serde_json::json!({"q.example": {"username": "v", "password": "w", "email": "e@x"}}),
        ))
        .unwrap();
        k.add_secret(&secret("Opaque", "x", serde_json::json!({}))).unwrap();
        assert_eq!(k.lookup("r.example/app"), [cred("u", "p:with:colons")]);
        assert_eq!(k.lookup("q.example/app"), [cred("v", "w")]);
        let bad = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            serde_json::json!({"auths": {"r.example": {"auth": "!!notbase64"}}}),
        );
        assert!(Keyring::default().add_secret(&bad).is_err());
        assert_eq!(cred("a", "b").auth_config().username, "a");
    }

    #[test]
    fn errors_aggregate_like_the_kubelet() {
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into(), "a".into()]), "[a, b]");
    }

    #[test]
    fn repo_digests_prefer_the_same_repository() {
        let digests = [
            "quay.io/x/nginx@sha256:1".to_string(),
            "docker.io/library/nginx@sha256:2".to_string(),
        ];
        assert_eq!(
            repo_digest("nginx:1.27", &digests).as_deref(),
            Some("docker.io/library/nginx@sha256:2")
        );
        assert_eq!(
            repo_digest("other", &digests).as_deref(),
            Some("quay.io/x/nginx@sha256:1")
        );
        assert_eq!(repo_digest("nginx", &[]), None);
    }

    #[test]
    fn messages_are_worded_like_the_kubelet() {
        let image = "nginx:1.27";
        assert_eq!(messages::pulling(image), "Pulling image \"nginx:1.27\"");
        assert_eq!(
            messages::pulled(
                image,
                Duration::from_micros(1_234_567),
                Duration::from_micros(1_234_567),
                42
            ),
            "Successfully pulled image \"nginx:1.27\" in 1.234s (1.234s including waiting). Image size: 42 bytes."
        );
        assert_eq!(
            messages::already_present(image),
            "Container image \"nginx:1.27\" already present on machine"
        );
        assert_eq!(
            messages::never_pull(image),
            "Container image \"nginx:1.27\" is not present with pull policy of Never"
        );
        assert_eq!(
            messages::failed_to_pull(image, "rpc error: code = NotFound desc = not found"),
            "Failed to pull image \"nginx:1.27\": rpc error: code = NotFound desc = not found"
        );
        assert_eq!(messages::back_off(image), "Back-off pulling image \"nginx:1.27\"");
        assert_eq!(
            messages::back_off_waiting(image, Some("boom")),
            "Back-off pulling image \"nginx:1.27\": ErrImagePull: boom"
        );
        assert_eq!(messages::error(IMAGE_PULL_BACK_OFF), "Error: ImagePullBackOff");
        assert_eq!(
            messages::missing_pull_secrets(&["a".into(), "b".into()]),
            "Unable to retrieve some image pull secrets (a, b); attempting to pull the image may not succeed."
        );
    }
}
