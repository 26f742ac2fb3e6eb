//! HTTP handlers of the resource API: turns a request (method, path, query,
//! body) into a registry call and the result into a JSON response.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use crate::http::auth::{RequestAttributes, UserInfo};
use crate::http::negotiation::{self, Negotiated, Output};
use crate::http::params::{DeleteQuery, ListOptions, Query, ResourceVersionMatch};
use crate::http::request::{parse_path, Target};
use crate::http::state::AppState;
use crate::http::{node_proxy, watch, wire};
use crate::kinds::table::IncludeObject;
use crate::kinds::{Kind, Resource};
use crate::meta::selectors::{FieldSelector, LabelSelector};
use crate::registry::apply::{self, Tracking};
use crate::registry::patch;
use crate::registry::{FieldValidation, ListBody, ListQuery, Registry, UpdateMode, WriteOptions, Written};
use crate::status::{created_status, ApiError, ApiResult};

/// Largest accepted request body (as Kubernetes: 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Whether responses are indented: `pretty` (Go's ParseBool), the
/// `pretty=1` media type parameter, or a human client's User-Agent, as
/// Kubernetes' `isPrettyPrint`.
fn pretty_print(q: &Query, headers: &HeaderMap) -> bool {
    if let Some(p) = q.get("pretty").filter(|p| !p.is_empty()) {
        return crate::http::params::go_parse_bool(p).unwrap_or(false);
    }
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ["curl", "Wget", "Mozilla/5.0"].iter().any(|p| ua.starts_with(p))
}

/// Render objects as a `meta.k8s.io` Table (kubectl's printing).
fn render_table(k: &Kind, version: &str, objects: &[Value], list_meta: Value, include: IncludeObject) -> Value {
    let mut t = crate::kinds::table::to_table_with(k, objects, list_meta, include, chrono::Utc::now());
    t["apiVersion"] = json!(format!("meta.k8s.io/{version}"));
    t
}

/// Writes every object response of a request: the negotiated conversion
/// (Table, PartialObjectMetadata[List]) and the encoding in [`wire`].
struct Responder {
    kind: Kind,
    r: &'static Resource,
    neg: Negotiated,
    pretty: bool,
    include: IncludeObject,
}

impl Responder {
    /// `warnings`, after the kind's deprecation warning if it has one.
    fn warnings(&self, warnings: &[String]) -> Vec<String> {
        self.kind
            .deprecation()
            .into_iter()
            .chain(warnings.iter().cloned())
            .collect()
    }

    /// One object.
    fn object(&self, code: StatusCode, obj: Value, warnings: &[String]) -> ApiResult<Response> {
        let body = match self.neg.output {
            Output::Table(v) => {
                let rv = obj.pointer("/metadata/resourceVersion").cloned();
                render_table(
                    &self.kind,
                    v,
                    std::slice::from_ref(&obj),
                    json!({"resourceVersion": rv}),
                    self.include,
                )
            }
            other => negotiation::convert_object(self.r, obj, other)?,
        };
        Ok(wire::encoded(
            code,
            &body,
            self.neg.encoding,
            self.pretty,
            &self.warnings(warnings),
        ))
    }
    /// A list.
    fn list(&self, code: StatusCode, list: Value) -> ApiResult<Response> {
        let body = match self.neg.output {
            Output::Table(v) => {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                render_table(&self.kind, v, &items, list["metadata"].clone(), self.include)
            }
            other => negotiation::convert_list(self.r, list, other)?,
        };
        Ok(wire::encoded(
            code,
            &body,
            self.neg.encoding,
            self.pretty,
            &self.warnings(&[]),
        ))
    }

    /// A written object: the JSON the write already produced when the
    /// client asked for the object itself as compact JSON, else as
    /// [`Responder::object`] writes it.
    fn written(&self, code: StatusCode, w: Written) -> ApiResult<Response> {
        match w.json {
            Some(json)
                if self.neg.output == Output::Object
                    && self.neg.encoding == negotiation::Encoding::Json
                    && !self.pretty =>
            {
                let mut body = Vec::with_capacity(json.len() + 1);
                body.extend_from_slice(&json);
                body.push(b'\n');
                Ok(wire::json_response(code, body, &self.warnings(&w.warnings)))
            }
            _ => self.object(code, w.object, &w.warnings),
        }
    }

    /// A body that is never converted (a `Status`, a `Scale`).
    fn raw(&self, code: StatusCode, body: &Value, warnings: &[String]) -> Response {
        wire::encoded(code, body, self.neg.encoding, self.pretty, warnings)
    }
}

/// Bodies over the limit are still read (up to this much) before the 413 is
/// sent, so clients that are still uploading see the Status, not a reset.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Read a request body, enforcing [`MAX_BODY_BYTES`].
async fn body_bytes(body: Body) -> ApiResult<bytes::Bytes> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))?;
        total += chunk.len();
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(buf.freeze())
}

async fn read_body(body: Body) -> ApiResult<Value> {
    let bytes = body_bytes(body).await?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

async fn read_body_as(body: Body, content_type: &str) -> ApiResult<Value> {
    if content_type.contains("yaml") {
        let bytes = body_bytes(body).await?;
        let v: Value =
            serde_yaml::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        return Ok(v);
    }
    read_body(body).await
}

fn write_options(q: &Query) -> ApiResult<WriteOptions> {
    if let Some(d) = q.get("dryRun") {
        if d != "All" {
            return Err(ApiError::bad_request(format!("dryRun must be \"All\", got {d:?}")));
        }
    }
    Ok(WriteOptions {
        dry_run: q.dry_run(),
        field_validation: FieldValidation::parse(q.get("fieldValidation"))?,
    })
}

/// The selectors and paging of a list or watch from its decoded options.
fn list_query(r: &Resource, o: &ListOptions) -> ApiResult<ListQuery> {
    let label = LabelSelector::parse(&o.label_selector)
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let field = FieldSelector::parse(&o.field_selector, r).map_err(ApiError::bad_request)?;
    let invalid = || ApiError::bad_request(format!("invalid resource version {:?}", o.resource_version));
    let rv = if o.resource_version.is_empty() {
        None
    } else {
        Some(
            o.resource_version
                .parse::<i64>()
                .ok()
                .filter(|rv| *rv >= 0)
                .ok_or_else(invalid)?,
        )
    };
    // As Kubernetes: Exact when asked, and for a paginated list at a
    // resourceVersion other than 0 without resourceVersionMatch (legacy).
    let exact = match o.match_kind() {
        Some(ResourceVersionMatch::Exact) => true,
        Some(ResourceVersionMatch::NotOlderThan) => false,
        None => o.limit > 0 && rv.is_some_and(|rv| rv > 0),
    };
    let exact_revision = if exact {
        Some(rv.filter(|rv| *rv > 0).ok_or_else(invalid)?)
    } else {
        None
    };
    Ok(ListQuery {
        label,
        field,
        limit: o.limit.max(0),
        continue_token: Some(o.continue_token.clone()).filter(|c| !c.is_empty()),
        exact_revision,
        min_revision: if exact { None } else { rv },
    })
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> &'static str {
    // As Kubernetes' request info: `watch` is false only for 0/false.
    let watch = t.legacy_watch || q.flag("watch");
    match (method, t.name.is_some()) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "deletecollection",
        (&Method::DELETE, true) => "delete",
        _ => "unknown",
    }
}

/// Entry point for every `/api/...` and `/apis/...` resource request.
pub async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let q = Query::parse(req.uri().query());
    let Some(target) = parse_path(&state.registry.catalog, &path) else {
        let span = tracing::info_span!("request", verb = %req.method(), path = %path);
        let _g = span.enter();
        tracing::info!(code = 404, "unknown path");
        return ApiError::path_not_found(&path).into_response();
    };
    let verb = verb_of(req.method(), &target, &q);
    let pretty = pretty_print(&q, req.headers());
    let span = tracing::info_span!(
        "request",
        verb,
        resource = target.resource.plural,
        sub = target.subresource.as_deref().unwrap_or(""),
        namespace = target.namespace.as_deref().unwrap_or(""),
        name = target.name.as_deref().unwrap_or(""),
        code = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let err_encoding = negotiation::error_encoding(accept, negotiation::protobuf_served(target.resource));
    let resp = async {
        let user = req
            .extensions()
            .get::<UserInfo>()
            .map(|u| (u.name.clone(), u.uid.clone(), u.groups.clone()));
        // Boxed: every layer a future is moved through (the requester's
        // task-local scope, the span) would otherwise hold a copy of its
        // state, and axum boxes the whole handler per request (40 KB
        // where dispatch's own state is 13 KB).
        let dispatched = Box::pin(dispatch(state, target, verb, q, req));
        let resp = match crate::registry::admission::with_requester(user, dispatched).await {
            Ok(r) => r,
            Err(e) => error_response(&e, pretty, err_encoding),
        };
        let span = tracing::Span::current();
        span.record("code", resp.status().as_u16());
        tracing::info!(elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "done");
        resp
    }
    .instrument(span)
    .await;
    resp
}

/// An error as its `Status`, encoded like every other response.
fn error_response(e: &ApiError, pretty: bool, encoding: negotiation::Encoding) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = wire::encoded(code, &e.to_status(), encoding, pretty, &[]);
    // As Kubernetes: a Status that says when to retry says it in Retry-After too.
    let retry_after = e
        .details
        .as_ref()
        .and_then(|d| d.get("retryAfterSeconds"))
        .and_then(Value::as_i64)
        .filter(|s| *s > 0);
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

async fn dispatch(state: AppState, t: Target, verb: &'static str, q: Query, req: Request) -> ApiResult<Response> {
    let user = req
        .extensions()
        .get::<UserInfo>()
        .cloned()
        .ok_or_else(ApiError::unauthorized)?;
    let attrs = RequestAttributes {
        verb: verb.to_string(),
        group: t.resource.group.to_string(),
        resource: t.resource.plural.to_string(),
        subresource: t.subresource.clone(),
        namespace: t.namespace.clone(),
        // A list or watch of one object by field selector names it, as in Kubernetes.
        name: t.name.clone().or_else(|| {
            matches!(verb, "list" | "watch")
                .then(|| crate::meta::selectors::named_by(q.get("fieldSelector").unwrap_or_default()))
                .flatten()
        }),
        path: None,
    };
    state
        .authorizer
        .authorize(&user, &attrs)
        .map_err(|reason| crate::http::authz::forbidden(&user.name, &attrs, &reason))?;
    let reg = state.registry.clone();
    let r = t.resource;
    // Verbs a kind does not serve (componentstatuses: get and list only).
    if t.subresource.is_none() && !t.kind.verbs().contains(&verb) {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ));
    }
    if let Some(sub) = t
        .subresource
        .as_deref()
        .filter(|s| node_proxy::STREAM_SUBRESOURCES.contains(s))
    {
        let (ns, name) = (
            t.namespace.as_deref().unwrap_or_default(),
            t.name.as_deref().unwrap_or_default(),
        );
        return node_proxy::pod_stream(&state, ns, name, sub, &q, req).await;
    }
    if t.subresource.as_deref() == Some("proxy") {
        let name = t.name.as_deref().unwrap_or_default();
        return node_proxy::node_proxy(&state, name, t.proxy_path.as_deref().unwrap_or("/"), req).await;
    }
    let ns = t.namespace.as_deref();
    let headers = req.headers().clone();
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let neg = negotiation::negotiate_for(accept, negotiation::protobuf_served(r));
    let neg = if verb == "watch" {
        negotiation::stream_encoding(neg)?
    } else {
        neg?
    };
    let k = t.kind.clone();
    let out = Responder {
        kind: k.clone(),
        r,
        neg,
        pretty: neg.pretty || pretty_print(&q, &headers),
        include: IncludeObject::parse(q.get("includeObject")),
    };
    let mut content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let mut body = req.into_body();
    // Protobuf bodies (not patches, which are JSON-only) become the JSON the registry works on.
    let protobuf_body = negotiation::Encoding::of_content_type(&content_type) == negotiation::Encoding::Protobuf;
    if protobuf_body && negotiation::protobuf_served(r) && verb != "patch" {
        body = Body::from(serde_json::to_vec(&wire::from_protobuf(&body_bytes(body).await?)?).unwrap_or_default());
        content_type = "application/json".into();
    } else if protobuf_body && verb == "patch" {
        patch_kind(&t.kind, &content_type)?;
    } else if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(&content_type));
    }
    if r.namespaced && t.namespace.is_none() && !matches!(verb, "list" | "watch") {
        return Err(ApiError::path_not_found("a namespace is required for this request"));
    }
    if verb == "create" && crate::http::reviews::is_review(r) {
        let obj = read_body_as(body, &content_type).await?;
        let answered = crate::http::reviews::answer(&reg, &user, r, ns, obj)?;
        return out.object(StatusCode::CREATED, answered, &[]);
    }
    if verb == "create" && *r == crate::kinds::binding::RESOURCE {
        let ns = ns.unwrap_or_default();
        let mut obj = read_body_as(body, &content_type).await?;
        let opts = write_options(&q)?;
        let warnings = crate::registry::binding::check_fields(&mut obj, opts.field_validation)?;
        let binding = crate::registry::binding::decode(&obj, ns, crate::registry::binding::Target::Collection)?;
        crate::registry::binding::bind(&reg, ns, &binding, opts).await?;
        return Ok(out.raw(StatusCode::CREATED, &created_status(), &warnings));
    }
    if verb == "create" && *r == crate::kinds::tokenreview::RESOURCE {
        let obj = read_body_as(body, &content_type).await?;
        let answered = crate::http::token_request::review(&state, obj).await?;
        return out.object(StatusCode::CREATED, answered, &[]);
    }
    if verb == "create" && t.subresource.as_deref() == Some("token") && *r == crate::kinds::serviceaccount::RESOURCE {
        let obj = read_body_as(body, &content_type).await?;
        let (ns, name) = (ns.unwrap_or_default(), t.name.as_deref().unwrap_or_default());
        let answered = crate::http::token_request::create(&reg, &state.sa_tokens, ns, name, obj).await?;
        return Ok(out.raw(StatusCode::CREATED, &answered, &[]));
    }
    if t.subresource.as_deref() == Some("log") && verb == "get" {
        let name = t.name.as_deref().unwrap_or_default();
        return crate::http::node_proxy::pod_log(&state, ns.unwrap_or_default(), name, &q).await;
    }
    if let Some(sub) = t.subresource.as_deref() {
        let name = t.name.as_deref().unwrap_or_default();
        return subresource(reg, &out, ns, name, sub, verb, &q, &headers, &content_type, body).await;
    }
    match verb {
        "get" => {
            let name = t.name.as_deref().unwrap_or_default();
            let obj = reg.get(&k, ns, name).await?.object;
            out.object(StatusCode::OK, obj, &[])
        }
        "list" => {
            let opts = ListOptions::parse(&q, false)?;
            let lq = list_query(r, &opts)?;
            // Compact JSON of the object itself can be copied from the watch cache.
            let json =
                out.neg.output == Output::Object && out.neg.encoding == negotiation::Encoding::Json && !out.pretty;
            match reg.list_body(&k, ns, &lq, json).await? {
                ListBody::Json(body) => Ok(wire::json_response(StatusCode::OK, body, &out.warnings(&[]))),
                ListBody::Value(list) => out.list(StatusCode::OK, list),
            }
        }
        "watch" => {
            let opts = ListOptions::parse(&q, true)?;
            let mut lq = list_query(r, &opts)?;
            if let Some(name) = &t.name {
                lq.field.0.push(("metadata.name".into(), true, name.clone()));
            }
            let rv = Some(opts.resource_version.as_str()).filter(|v| !v.is_empty() && *v != "0");
            let mut resource_version = match rv {
                Some(v) => Some(
                    v.parse::<i64>()
                        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
                ),
                None => None,
            };
            // sendInitialEvents=false without a resourceVersion: only changes from now on.
            if opts.send_initial_events == Some(false) && resource_version.is_none() {
                resource_version = Some(reg.store.current_revision().await?);
            }
            let wrap: Option<crate::http::watch::Wrap> = match neg.output {
                Output::Table(v) => {
                    let include = out.include;
                    let k = k.clone();
                    Some(Arc::new(move |o: &Value| {
                        let rv = o.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
                        render_table(&k, v, std::slice::from_ref(o), json!({"resourceVersion": rv}), include)
                    }))
                }
                Output::PartialObjectMetadata(v) => {
                    Some(Arc::new(move |o: &Value| negotiation::partial_object_metadata(o, v)))
                }
                // A watch sends single objects: a list conversion cannot apply.
                Output::PartialObjectMetadataList(_) => {
                    negotiation::convert_object(r, Value::Null, neg.output)?;
                    None
                }
                Output::Object => None,
            };
            // Kinds that convert on read (custom resources: the requested
            // version, with defaults; events.k8s.io: from core Events).
            let wrap: Option<crate::http::watch::Wrap> = match (k.converts_on_read(), wrap) {
                (true, inner) => {
                    let k = k.clone();
                    Some(Arc::new(move |o: &Value| {
                        let mut o = o.clone();
                        k.on_read(&mut o);
                        match &inner {
                            Some(w) => w(&o),
                            None => o,
                        }
                    }))
                }
                (_, w) => w,
            };
            let wr = watch::WatchRequest {
                kind: k.clone(),
                resource: r,
                namespace: t.namespace.clone(),
                query: lq,
                resource_version,
                bookmarks: opts.allow_watch_bookmarks,
                send_initial_events: opts.send_initial_events == Some(true),
                timeout: opts
                    .timeout_seconds
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(s as u64)),
                wrap_bookmarks: matches!(neg.output, Output::PartialObjectMetadata(_)),
                wrap,
                encoding: neg.encoding,
            };
            let rx = watch::start(reg, wr).await?;
            let stream = ReceiverStream::new(rx);
            let body = Body::from_stream(futures::StreamExt::map(stream, Ok::<_, std::convert::Infallible>));
            let mut resp = Response::new(body);
            let content_type = match neg.encoding {
                negotiation::Encoding::Protobuf => sluice_protobuf::WATCH_MEDIA_TYPE,
                negotiation::Encoding::Json | negotiation::Encoding::Yaml => "application/json",
            };
            resp.headers_mut()
                .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, private"),
            );
            Ok(resp)
        }
        "create" => {
            if t.name.is_some() {
                return Err(ApiError::method_not_allowed("POST on an object"));
            }
            let opts = write_options(&q)?;
            let manager = field_manager(&q, &headers, "CreateOptions")?;
            let obj = read_body(body).await?;
            let w = reg
                .create_tracked(&k, ns, obj, opts, &Tracking::update(manager, ""))
                .await?;
            out.written(StatusCode::CREATED, w)
        }
        "update" => {
            let name = t.name.as_deref().unwrap_or_default().to_string();
            let opts = write_options(&q)?;
            let manager = field_manager(&q, &headers, "UpdateOptions")?;
            let obj = read_body(body).await?;
            if !obj.is_object() {
                return Err(ApiError::bad_request("the request body must be a JSON object"));
            }
            let tracking = Tracking::update(manager, "");
            let w = reg
                .update_tracked(&k, ns, &name, UpdateMode::Main, opts, &tracking, |_| Ok(obj.clone()))
                .await?;
            out.written(StatusCode::OK, w)
        }
        "patch" => {
            let name = t.name.as_deref().unwrap_or_default().to_string();
            let opts = write_options(&q)?;
            let patch_opts = patch_options(&q, &headers, &content_type)?;
            let patch_body = read_body_as(body, &content_type).await?;
            if let Some(force) = patch_opts.apply {
                return apply_patch(reg, &out, ns, &name, patch_body, &patch_opts.manager, force, opts).await;
            }
            let kind = patch_kind(&k, &content_type)?;
            let tracking = Tracking::update(patch_opts.manager, "");
            let w = reg
                .update_tracked(&k, ns, &name, UpdateMode::Main, opts, &tracking, |cur| {
                    apply_patch_kind(kind, cur, &patch_body)
                })
                .await?;
            out.written(StatusCode::OK, w)
        }
        "delete" => {
            let name = t.name.as_deref().unwrap_or_default().to_string();
            let opts = write_options(&q)?;
            let options = delete_options(body, &q).await?;
            let (obj, gone) = reg.delete(&k, ns, &name, &options, opts).await?;
            // 202 only for a pending deletion the client asked to cascade
            // with `orphanDependents: false`, as Kubernetes (for compatibility).
            let cascading = options.get("orphanDependents").and_then(Value::as_bool) == Some(false);
            out.object(
                if !gone && cascading {
                    StatusCode::ACCEPTED
                } else {
                    StatusCode::OK
                },
                obj,
                &[],
            )
        }
        "deletecollection" => {
            let opts = write_options(&q)?;
            let options = delete_options(body, &q).await?;
            let mut lq = list_query(r, &ListOptions::parse(&q, false)?)?;
            lq.limit = 0;
            lq.continue_token = None;
            let list = reg.list(&k, ns, &lq).await?;
            let mut deleted = Vec::new();
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let item_ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .map(String::from);
                match reg.delete(&k, item_ns.as_deref(), &name, &options, opts).await {
                    Ok((obj, _)) => deleted.push(obj),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": {"resourceVersion": list["metadata"]["resourceVersion"]}, "items": deleted});
            out.list(StatusCode::OK, list)
        }
        _ => Err(ApiError::method_not_allowed(verb)),
    }
}

/// `DeleteOptions`: from the body when there is one, else from the query (as Kubernetes).
async fn delete_options(body: Body, q: &Query) -> ApiResult<Value> {
    let options = read_body(body).await?;
    if options.is_object() {
        return Ok(options);
    }
    let d = DeleteQuery::parse(q)?;
    let mut options = json!({});
    if let Some(g) = d.grace_period_seconds {
        options["gracePeriodSeconds"] = json!(g);
    }
    if let Some(p) = d.propagation_policy {
        options["propagationPolicy"] = json!(p);
    }
    if let Some(o) = d.orphan_dependents {
        options["orphanDependents"] = json!(o);
    }
    Ok(options)
}

#[derive(Clone, Copy)]
enum PatchKind {
    Merge,
    Json,
    Strategic,
}

/// The patch format of a Content-Type; strategic merge only for kinds that
/// have it (Kubernetes answers 415 for custom resources).
fn patch_kind(k: &Kind, ct: &str) -> ApiResult<PatchKind> {
    if ct.starts_with("application/merge-patch+json") {
        Ok(PatchKind::Merge)
    } else if ct.starts_with("application/json-patch+json") {
        Ok(PatchKind::Json)
    } else if ct.starts_with("application/strategic-merge-patch+json") && k.strategic_merge() {
        Ok(PatchKind::Strategic)
    } else {
        Err(ApiError::unsupported_patch_type(k.strategic_merge()))
    }
}

/// The Scale view of an object of a kind serving `/scale`.
fn scale_of(k: &Kind, obj: &Value) -> ApiResult<Value> {
    k.scale(obj).unwrap_or_else(|| {
        Err(ApiError::path_not_found(
            "the server could not find the requested resource",
        ))
    })
}

fn apply_patch_kind(kind: PatchKind, cur: &Value, p: &Value) -> ApiResult<Value> {
    let out = match kind {
        PatchKind::Merge => {
            if !p.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            Ok(patch::merge_patch(cur, p))
        }
        PatchKind::Json => patch::json_patch(cur, p),
        PatchKind::Strategic => patch::strategic_merge(cur, p),
    };
    let mut out = out.map_err(|e| ApiError {
        code: 422,
        reason: "Invalid",
        message: format!("the server rejected our request due to an error in our request: {e}"),
        details: None,
    })?;
    // The patch may carry a resourceVersion precondition; otherwise drop the
    // current one so the registry does not treat it as one.
    let patched_rv = out.pointer("/metadata/resourceVersion").cloned();
    if patched_rv == cur.pointer("/metadata/resourceVersion").cloned() {
        if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
    }
    Ok(out)
}

/// The manager of a create or update (`fieldManager`, else the
/// User-Agent's first token), validated as Kubernetes validates
/// `CreateOptions`/`UpdateOptions`.
fn field_manager(q: &Query, headers: &HeaderMap, options_kind: &str) -> ApiResult<String> {
    let given = q.get("fieldManager");
    let errs = apply::validate_field_manager(given.unwrap_or_default());
    if !errs.is_empty() {
        return Err(ApiError::invalid_kind("meta.k8s.io", options_kind, "", errs));
    }
    let ua = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    Ok(apply::manager_or_user_agent(given, ua))
}

/// The decoded `PatchOptions` of a patch.
struct PatchOptions {
    /// Who patches.
    manager: String,
    /// `Some(force)` for server-side apply.
    apply: Option<bool>,
}

/// `PatchOptions` as Kubernetes decodes and validates them: `force` is a
/// `*bool` (Go's ParseBool, 400 when unparsable) allowed only for apply,
/// which requires a `fieldManager` (422 otherwise).
fn patch_options(q: &Query, headers: &HeaderMap, content_type: &str) -> ApiResult<PatchOptions> {
    let force = match q.get("force") {
        Some(v) => Some(
            crate::http::params::go_parse_bool(v)
                .ok_or_else(|| ApiError::bad_request(format!("strconv.ParseBool: parsing {v:?}: invalid syntax")))?,
        ),
        None => None,
    };
    let is_apply = content_type.starts_with("application/apply-patch");
    let given = q.get("fieldManager").unwrap_or_default();
    let mut errs = Vec::new();
    if !is_apply && force.is_some() {
        errs.push(crate::status::FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    if is_apply && given.is_empty() {
        errs.push(crate::status::FieldError::required(
            "fieldManager",
            "is required for apply patch",
        ));
    }
    errs.extend(apply::validate_field_manager(given));
    if !errs.is_empty() {
        return Err(ApiError::invalid_kind("meta.k8s.io", "PatchOptions", "", errs));
    }
    let ua = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    Ok(PatchOptions {
        manager: apply::manager_or_user_agent(Some(given), ua),
        apply: is_apply.then_some(force.unwrap_or(false)),
    })
}

/// `obj` merged onto `cur` without `cur`'s resourceVersion, which is not a
/// precondition (one the applied configuration names is kept).
fn without_base_version(mut obj: Value, cur: &Value) -> Value {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if m.get("resourceVersion") == cur.pointer("/metadata/resourceVersion") {
            m.remove("resourceVersion");
        }
    }
    obj
}

/// Server-side apply: merge the applied configuration into the object (or
/// create it), owning its fields in `managedFields` (see [`apply`]).
#[allow(clippy::too_many_arguments)]
async fn apply_patch(
    reg: Arc<Registry>,
    out: &Responder,
    ns: Option<&str>,
    name: &str,
    applied: Value,
    manager: &str,
    force: bool,
    opts: WriteOptions,
) -> ApiResult<Response> {
    let k = &out.kind;
    if !applied.is_object() {
        return Err(ApiError::bad_request("the applied configuration must be an object"));
    }
    match reg
        .update_tracked(k, ns, name, UpdateMode::Main, opts, &Tracking::Applied, |cur| {
            apply::apply_to(k, Some(cur), &applied, manager, "", force).map(|o| without_base_version(o, cur))
        })
        .await
    {
        Ok(w) => out.written(StatusCode::OK, w),
        Err(e) if e.code == 404 && e.reason == "NotFound" => {
            let mut obj = apply::apply_to(k, None, &applied, manager, "", force)?;
            if obj.pointer("/metadata/name").is_none() {
                obj["metadata"]["name"] = json!(name);
            }
            let w = reg.create_tracked(k, ns, obj, opts, &Tracking::Applied).await?;
            out.written(StatusCode::CREATED, w)
        }
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn subresource(
    reg: Arc<Registry>,
    out: &Responder,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    verb: &str,
    q: &Query,
    headers: &HeaderMap,
    content_type: &str,
    body: Body,
) -> ApiResult<Response> {
    let r = out.r;
    let k = &out.kind;
    let opts = write_options(q)?;
    let writes = matches!(verb, "create" | "update" | "patch");
    let patch_opts = if verb == "patch" {
        Some(patch_options(q, headers, content_type)?)
    } else {
        None
    };
    let manager = match &patch_opts {
        Some(p) => p.manager.clone(),
        None if writes => field_manager(
            q,
            headers,
            if verb == "create" {
                "CreateOptions"
            } else {
                "UpdateOptions"
            },
        )?,
        None => String::new(),
    };
    match (sub, verb) {
        ("status" | "approval", "get") => out.object(StatusCode::OK, reg.get(k, ns, name).await?.object, &[]),
        // CertificateSigningRequests: approval and signing need the signer's verbs.
        ("approval" | "status", "update" | "patch") if r.group == "certificates.k8s.io" => {
            if patch_opts.as_ref().is_some_and(|o| o.apply.is_some()) {
                return Err(ApiError::bad_request(format!(
                    "server-side apply is not served on {}/{sub}",
                    r.plural
                )));
            }
            let p = if verb == "patch" {
                read_body_as(body, content_type).await?
            } else {
                read_body(body).await?
            };
            let kind = if verb == "patch" {
                Some(patch_kind(k, content_type)?)
            } else {
                None
            };
            let tracking = Tracking::update(manager, sub);
            let w = reg
                .update_tracked(k, ns, name, UpdateMode::Status, opts, &tracking, |cur| {
                    let proposed = match kind {
                        Some(kind) => apply_patch_kind(kind, cur, &p)?,
                        None => p.clone(),
                    };
                    crate::registry::certificates::subresource_write(&reg, sub, cur, &proposed)
                })
                .await?;
            out.written(StatusCode::OK, w)
        }
        ("status", "update") => {
            let obj = read_body(body).await?;
            let tracking = Tracking::update(manager, "status");
            let w = reg
                .update_tracked(k, ns, name, UpdateMode::Status, opts, &tracking, |_| Ok(obj.clone()))
                .await?;
            out.written(StatusCode::OK, w)
        }
        ("status", "patch") => {
            let p = read_body_as(body, content_type).await?;
            let w = match patch_opts.as_ref().and_then(|o| o.apply) {
                Some(force) => {
                    if !p.is_object() {
                        return Err(ApiError::bad_request("the applied configuration must be an object"));
                    }
                    reg.update_tracked(k, ns, name, UpdateMode::Status, opts, &Tracking::Applied, |cur| {
                        apply::apply_to(k, Some(cur), &p, &manager, "status", force)
                            .map(|o| without_base_version(o, cur))
                    })
                    .await?
                }
                None => {
                    let kind = patch_kind(k, content_type)?;
                    let tracking = Tracking::update(manager, "status");
                    reg.update_tracked(k, ns, name, UpdateMode::Status, opts, &tracking, |cur| {
                        apply_patch_kind(kind, cur, &p)
                    })
                    .await?
                }
            };
            out.written(StatusCode::OK, w)
        }
        ("finalize", "update") => {
            let obj = read_body(body).await?;
            let w = reg
                .update(k, ns, name, UpdateMode::Finalize, opts, |_| Ok(obj.clone()))
                .await?;
            out.written(StatusCode::OK, w)
        }
        ("scale", "get") => {
            let obj = reg.get(k, ns, name).await?.object;
            Ok(out.raw(StatusCode::OK, &scale_of(k, &obj)?, &[]))
        }
        ("scale", "update") | ("scale", "patch") => {
            let input = read_body_as(body, content_type).await?;
            let kind = if verb == "patch" {
                Some(patch_kind(k, content_type)?)
            } else {
                None
            };
            let tracking = Tracking::update(manager, "scale");
            let w = reg
                .update_tracked(k, ns, name, UpdateMode::Internal, opts, &tracking, |cur| {
                    let scale = match kind {
                        Some(p) => apply_patch_kind(p, &scale_of(k, cur)?, &input)?,
                        None => input.clone(),
                    };
                    if crate::registry::schema::typed_unknown_fields("autoscaling", "Scale", &scale)?.is_none() {
                        return Err(ApiError::internal("no Scale schema"));
                    }
                    let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                    if replicas < 0 {
                        return Err(ApiError::invalid(
                            r,
                            name,
                            vec![crate::status::FieldError::invalid(
                                "spec.replicas",
                                &json!(replicas),
                                "must be greater than or equal to 0",
                            )],
                        ));
                    }
                    let mut new = cur.clone();
                    k.set_replicas(&mut new, replicas)
                        .unwrap_or_else(|| Err(ApiError::path_not_found("scale")))?;
                    // A resourceVersion in the Scale is a precondition on the object.
                    match scale.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                        Some(rv) if kind.is_none() && !rv.is_empty() => new["metadata"]["resourceVersion"] = json!(rv),
                        _ => {
                            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                                m.remove("resourceVersion");
                            }
                        }
                    }
                    Ok(new)
                })
                .await?;
            Ok(out.raw(StatusCode::OK, &scale_of(k, &w.object)?, &[]))
        }
        ("ephemeralcontainers", "get") => out.object(StatusCode::OK, reg.get(k, ns, name).await?.object, &[]),
        ("ephemeralcontainers", "update" | "patch") => {
            let input = read_body_as(body, content_type).await?;
            let kind = if verb == "patch" {
                Some(patch_kind(k, content_type)?)
            } else {
                None
            };
            let tracking = Tracking::update(manager, "ephemeralcontainers");
            let w = reg
                .update_tracked(k, ns, name, UpdateMode::Internal, opts, &tracking, |cur| {
                    let proposed = match kind {
                        Some(p) => apply_patch_kind(p, cur, &input)?,
                        None => input.clone(),
                    };
                    crate::kinds::pod_support::ephemeral_write(r, name, cur, &proposed)
                })
                .await?;
            out.written(StatusCode::OK, w)
        }
        ("eviction", "create") => {
            let eviction = read_body(body).await?;
            let status = crate::registry::eviction::evict(&reg, ns.unwrap_or_default(), name, eviction, opts).await?;
            Ok(out.raw(StatusCode::CREATED, &status, &[]))
        }
        ("binding", "create") => {
            let ns = ns.unwrap_or_default();
            let mut obj = read_body(body).await?;
            let warnings = crate::registry::binding::check_fields(&mut obj, opts.field_validation)?;
            let binding =
                crate::registry::binding::decode(&obj, ns, crate::registry::binding::Target::Subresource(name))?;
            crate::registry::binding::bind(&reg, ns, &binding, opts).await?;
            Ok(out.raw(StatusCode::CREATED, &created_status(), &warnings))
        }
        _ => Err(ApiError::method_not_allowed(format!("{verb} on {}/{sub}", r.plural))),
    }
}

#[cfg(test)]
mod tests {
    fn future_size<A, B, F: std::future::Future>(_: fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size5<A, B, C, D, E, F: std::future::Future>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every request in flight holds its handler's future, boxed by axum:
    /// the request-wide layers hold dispatch's state once, behind a
    /// pointer, not one copy per layer it is moved through.
    #[test]
    fn a_request_in_flight_holds_one_copy_of_its_state() {
        let handle = future_size(super::handle);
        let dispatch = future_size5(super::dispatch);
        assert!(
            handle < 4096,
            "handle's future takes {handle} bytes (dispatch's {dispatch})"
        );
    }
}
