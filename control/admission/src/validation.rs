//! Checks of MutatingWebhookConfiguration / ValidatingWebhookConfiguration
//! objects on create and update. Each problem is a [`FieldError`]; the API
//! server answers 422 with [`invalid_status`].
//!
//! `matchConditions` are not supported by this crate, so any webhook that sets
//! them is refused here (`webhooks[i].matchConditions: Forbidden: …`).

use std::collections::HashSet;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Status, StatusCause, StatusDetails};

use crate::error::FieldError;
use crate::selector;

struct Common<'a> {
    name: &'a str,
    client_config: &'a WebhookClientConfig,
    rules: Option<&'a Vec<RuleWithOperations>>,
    failure_policy: Option<&'a str>,
    match_policy: Option<&'a str>,
    side_effects: &'a str,
    timeout_seconds: Option<i32>,
    review_versions: &'a [String],
    namespace_selector: Option<&'a LabelSelector>,
    object_selector: Option<&'a LabelSelector>,
    match_conditions: usize,
}

/// Field errors of a MutatingWebhookConfiguration (empty when valid).
pub fn validate_mutating_configuration(config: &MutatingWebhookConfiguration) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, w) in config.webhooks.iter().flatten().enumerate() {
        let common = Common {
            name: &w.name,
            client_config: &w.client_config,
            rules: w.rules.as_ref(),
            failure_policy: w.failure_policy.as_deref(),
            match_policy: w.match_policy.as_deref(),
            side_effects: &w.side_effects,
            timeout_seconds: w.timeout_seconds,
            review_versions: &w.admission_review_versions,
            namespace_selector: w.namespace_selector.as_ref(),
            object_selector: w.object_selector.as_ref(),
            match_conditions: w.match_conditions.as_ref().map_or(0, Vec::len),
        };
        check_common(i, &common, &mut names, &mut errs);
        if let Some(p) = w.reinvocation_policy.as_deref() {
            if !["Never", "IfNeeded"].contains(&p) {
                errs.push(FieldError::not_supported(
                    format!("webhooks[{i}].reinvocationPolicy"),
                    p,
                    &["IfNeeded", "Never"],
                ));
            }
        }
    }
    errs
}

/// Field errors of a ValidatingWebhookConfiguration (empty when valid).
pub fn validate_validating_configuration(config: &ValidatingWebhookConfiguration) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, w) in config.webhooks.iter().flatten().enumerate() {
        let common = Common {
            name: &w.name,
            client_config: &w.client_config,
            rules: w.rules.as_ref(),
            failure_policy: w.failure_policy.as_deref(),
            match_policy: w.match_policy.as_deref(),
            side_effects: &w.side_effects,
            timeout_seconds: w.timeout_seconds,
            review_versions: &w.admission_review_versions,
            namespace_selector: w.namespace_selector.as_ref(),
            object_selector: w.object_selector.as_ref(),
            match_conditions: w.match_conditions.as_ref().map_or(0, Vec::len),
        };
        check_common(i, &common, &mut names, &mut errs);
    }
    errs
}

fn check_common<'a>(i: usize, w: &Common<'a>, names: &mut HashSet<&'a str>, errs: &mut Vec<FieldError>) {
    let f = |s: &str| format!("webhooks[{i}].{s}");
    if w.name.is_empty() {
        errs.push(FieldError::required(f("name"), ""));
    } else if w.name.split('.').filter(|s| !s.is_empty()).count() < 3 {
        errs.push(FieldError::invalid(
            f("name"),
            w.name,
            "should be a domain with at least three segments separated by dots",
        ));
    } else if !names.insert(w.name) {
        errs.push(FieldError {
            field: f("name"),
            reason: "FieldValueDuplicate",
            message: format!("{}: Duplicate value: {:?}", f("name"), w.name),
        });
    }
    if !w.review_versions.iter().any(|v| v == "v1") {
        errs.push(FieldError::invalid(
            f("admissionReviewVersions"),
            &format!("{:?}", w.review_versions),
            "must include at least one of v1",
        ));
    }
    if !["None", "NoneOnDryRun"].contains(&w.side_effects) {
        if w.side_effects.is_empty() {
            errs.push(FieldError::required(f("sideEffects"), ""));
        } else {
            errs.push(FieldError::not_supported(
                f("sideEffects"),
                w.side_effects,
                &["None", "NoneOnDryRun"],
            ));
        }
    }
    if let Some(p) = w.failure_policy.filter(|p| !["Fail", "Ignore"].contains(p)) {
        errs.push(FieldError::not_supported(f("failurePolicy"), p, &["Fail", "Ignore"]));
    }
    if let Some(p) = w.match_policy.filter(|p| !["Exact", "Equivalent"].contains(p)) {
        errs.push(FieldError::not_supported(f("matchPolicy"), p, &["Equivalent", "Exact"]));
    }
    if let Some(t) = w.timeout_seconds.filter(|t| !(1..=30).contains(t)) {
        errs.push(FieldError::invalid(
            f("timeoutSeconds"),
            &t.to_string(),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    check_client_config(&f("clientConfig"), w.client_config, errs);
    for (j, rule) in w.rules.into_iter().flatten().enumerate() {
        check_rule(&f(&format!("rules[{j}]")), rule, errs);
    }
    for (name, sel) in [
        ("namespaceSelector", w.namespace_selector),
        ("objectSelector", w.object_selector),
    ] {
        if let Some(Err(e)) = sel.map(selector::validate) {
            errs.push(FieldError::invalid(f(name), "", &e.to_string()));
        }
    }
    if w.match_conditions > 0 {
        errs.push(FieldError::forbidden(
            f("matchConditions"),
            "matchConditions are not supported by this server",
        ));
    }
}

fn check_client_config(path: &str, c: &WebhookClientConfig, errs: &mut Vec<FieldError>) {
    match (&c.url, &c.service) {
        (Some(_), Some(_)) | (None, None) => {
            errs.push(FieldError::required(
                path.to_owned(),
                "exactly one of url or service is required",
            ));
        }
        (Some(url), None) => match url.parse::<http::Uri>() {
            Err(e) => errs.push(FieldError::invalid(
                format!("{path}.url"),
                url,
                &format!("host must be specified: {e}"),
            )),
            Ok(u) if u.scheme_str() != Some("https") => errs.push(FieldError::invalid(
                format!("{path}.url"),
                url,
                "'https' is the only allowed URL scheme",
            )),
            Ok(u) if u.host().is_none_or(str::is_empty) => errs.push(FieldError::invalid(
                format!("{path}.url"),
                url,
                "host must be specified",
            )),
            Ok(_) => {}
        },
        (None, Some(svc)) => {
            if svc.name.is_empty() {
                errs.push(FieldError::required(
                    format!("{path}.service.name"),
                    "service name is required",
                ));
            }
            if svc.namespace.is_empty() {
                errs.push(FieldError::required(
                    format!("{path}.service.namespace"),
                    "service namespace is required",
                ));
            }
            if let Some(p) = svc.port.filter(|p| !(1..=65535).contains(p)) {
                errs.push(FieldError::invalid(
                    format!("{path}.service.port"),
                    &p.to_string(),
                    "port is not valid: must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(p) = svc.path.as_deref().filter(|p| !p.is_empty() && !p.starts_with('/')) {
                errs.push(FieldError::invalid(
                    format!("{path}.service.path"),
                    p,
                    "must start with a '/'",
                ));
            }
        }
    }
    if let Some(ca) = c.ca_bundle.as_ref().filter(|b| !b.0.is_empty()) {
        let mut reader = ca.0.as_slice();
        let ok = rustls_pemfile::certs(&mut reader)
            .collect::<Result<Vec<_>, _>>()
            .is_ok_and(|c| !c.is_empty());
        if !ok {
            errs.push(FieldError::invalid(
                format!("{path}.caBundle"),
                "",
                "unable to load root certificates",
            ));
        }
    }
}

fn check_rule(path: &str, r: &RuleWithOperations, errs: &mut Vec<FieldError>) {
    for (field, list) in [
        ("apiGroups", &r.api_groups),
        ("apiVersions", &r.api_versions),
        ("resources", &r.resources),
    ] {
        if list.as_ref().is_none_or(Vec::is_empty) {
            errs.push(FieldError::required(format!("{path}.{field}"), ""));
        }
    }
    let ops = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
    match r.operations.as_ref().filter(|o| !o.is_empty()) {
        None => errs.push(FieldError::required(format!("{path}.operations"), "")),
        Some(list) => {
            for (k, op) in list.iter().enumerate() {
                if !ops.contains(&op.as_str()) {
                    errs.push(FieldError::not_supported(format!("{path}.operations[{k}]"), op, &ops));
                }
            }
        }
    }
    if let Some(s) = r
        .scope
        .as_deref()
        .filter(|s| !["*", "Cluster", "Namespaced"].contains(s))
    {
        errs.push(FieldError::not_supported(
            format!("{path}.scope"),
            s,
            &["*", "Cluster", "Namespaced"],
        ));
    }
}

/// The 422 `Invalid` status for `kind` (e.g. `MutatingWebhookConfiguration`) `name`.
pub fn invalid_status(kind: &str, name: &str, errors: &[FieldError]) -> Status {
    let list = match errors {
        [one] => one.message.clone(),
        many => format!(
            "[{}]",
            many.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    Status {
        code: Some(422),
        message: Some(format!(
            "{kind}.admissionregistration.k8s.io {name:?} is invalid: {list}"
        )),
        reason: Some("Invalid".into()),
        status: Some("Failure".into()),
        details: Some(StatusDetails {
            group: Some("admissionregistration.k8s.io".into()),
            kind: Some(kind.to_owned()),
            name: Some(name.to_owned()),
            causes: Some(
                errors
                    .iter()
                    .map(|e| StatusCause {
                        field: Some(e.field.clone()),
                        message: Some(e.message.clone()),
                        reason: Some(e.reason.to_owned()),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        metadata: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{MatchCondition, MutatingWebhook, ValidatingWebhook};

    fn good() -> MutatingWebhook {
        MutatingWebhook {
            name: "add-label.example.com".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            client_config: WebhookClientConfig {
                url: Some("https://127.0.0.1:8443/m".into()),
                ..Default::default()
            },
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["v1".into()]),
                resources: Some(vec!["pods".into()]),
                operations: Some(vec!["CREATE".into()]),
                scope: Some("Namespaced".into()),
            }]),
            ..Default::default()
        }
    }

    fn cfg(hooks: Vec<MutatingWebhook>) -> MutatingWebhookConfiguration {
        MutatingWebhookConfiguration {
            webhooks: Some(hooks),
            ..Default::default()
        }
    }

    #[test]
    fn valid_configuration() {
        assert_eq!(validate_mutating_configuration(&cfg(vec![good()])), vec![]);
    }

    #[test]
    fn match_conditions_are_refused_with_field() {
        let mut w = good();
        w.name = "second.example.com".into();
        w.match_conditions = Some(vec![MatchCondition {
            name: "c".into(),
            expression: "true".into(),
        }]);
        let errs = validate_mutating_configuration(&cfg(vec![good(), w]));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "webhooks[1].matchConditions");
        assert_eq!(errs[0].reason, "FieldValueForbidden");
        let st = invalid_status("MutatingWebhookConfiguration", "cfg", &errs);
        assert_eq!(st.code, Some(422));
        assert_eq!(
            st.message.as_deref(),
            Some(
                "MutatingWebhookConfiguration.admissionregistration.k8s.io \"cfg\" is invalid: \
                 webhooks[1].matchConditions: Forbidden: matchConditions are not supported by this server"
            )
        );
        let v = ValidatingWebhookConfiguration {
            webhooks: Some(vec![ValidatingWebhook {
                name: "v.example.com".into(),
                admission_review_versions: vec!["v1".into()],
                side_effects: "None".into(),
                client_config: WebhookClientConfig {
                    url: Some("https://h/".into()),
                    ..Default::default()
                },
                match_conditions: Some(vec![MatchCondition::default()]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let errs = validate_validating_configuration(&v);
        assert_eq!(
            errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(),
            ["webhooks[0].matchConditions"]
        );
    }

    #[test]
    fn field_errors() {
        let mut w = good();
        w.name = "short.name".into();
        w.side_effects = "Some".into();
        w.timeout_seconds = Some(31);
        w.failure_policy = Some("Maybe".into());
        w.reinvocation_policy = Some("Always".into());
        w.client_config.url = Some("http://insecure/".into());
        w.admission_review_versions = vec!["v1beta1".into()];
        if let Some(r) = w.rules.as_mut().and_then(|r| r.first_mut()) {
            r.operations = Some(vec!["PATCH".into()]);
            r.scope = Some("Global".into());
        }
        let errs = validate_mutating_configuration(&cfg(vec![w]));
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "webhooks[0].name",
                "webhooks[0].admissionReviewVersions",
                "webhooks[0].sideEffects",
                "webhooks[0].failurePolicy",
                "webhooks[0].timeoutSeconds",
                "webhooks[0].clientConfig.url",
                "webhooks[0].rules[0].operations[0]",
                "webhooks[0].rules[0].scope",
                "webhooks[0].reinvocationPolicy",
            ]
        );
        assert_eq!(
            errs[4].message,
            "webhooks[0].timeoutSeconds: Invalid value: \"31\": the timeout value must be between 1 and 30 seconds"
        );
    }

    #[test]
    fn duplicate_names_and_client_config() {
        let mut second = good();
        second.client_config = WebhookClientConfig::default();
        let errs = validate_mutating_configuration(&cfg(vec![good(), second]));
        let fields: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.reason)).collect();
        assert_eq!(
            fields,
            [
                ("webhooks[1].name", "FieldValueDuplicate"),
                ("webhooks[1].clientConfig", "FieldValueRequired")
            ]
        );
    }
}
