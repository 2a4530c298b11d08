//! The Tencent Cloud API 3.0 dialect (redis, Version 2018-04-12; and Cloud Monitor's
//! GetMonitorData, service `monitor`, Version 2018-07-24, with TC3 only, for charts): requests
//! on `/`, told from v2 by path and from each other by the `Authorization` header (not by
//! X-TC-Action, which the old-signature form does not send):
//!
//! * TC3-HMAC-SHA256: `Authorization` header, action in `X-TC-Action`, parameters as a JSON
//!   body (POST) or a flattened query (GET); the signature covers the Host header exactly as
//!   received (tccli sends `Host: http://127.0.0.1:PORT`) and the raw query.
//! * The 3.0 "signature v1": `Action`, `Version`, `Nonce`, `Timestamp`, `SecretId`,
//!   `SignatureMethod` and `Signature` among the (form or query) parameters.
//!
//! Every answer is HTTP 200 with `Content-Type: application/json` exactly and a
//! `{"Response": {..., "RequestId"}}` body; errors are `Response.Error.{Code,Message}`. The
//! Python SDK only looks for an error under that exact content type.

mod actions;
mod errors;
mod handlers;
pub mod params;

use crate::metrics::with_code;
use crate::pipeline::{Dialect, Request, Signed, Ticket};
use crate::sign_tc3;
use crate::sign_v2::{self, SignatureMethod};
use crate::{AppState, SharedState};
use actions::{Action, Api};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use crsd_core::Error;
use params::Params3;
use serde_json::{json, Map, Value};

/// The metrics' result code of an answer without `Error` (API 3.0 has no success code).
const SUCCESS: &str = "Success";
/// The redis API version this dialect speaks.
pub const VERSION: &str = "2018-04-12";
/// Common parameters of the old-signature form, not the action's.
const COMMON: &[&str] = &[
    "Action",
    "Version",
    "Region",
    "Timestamp",
    "Nonce",
    "SecretId",
    "SignatureMethod",
    "Signature",
    "Token",
    "Language",
    "RequestClient",
];

/// The API 3.0 dialect, as the request pipeline sees it.
pub(crate) struct Tc3;

/// Where a request's parameters are once its signature is checked.
pub(crate) enum Unread {
    /// The old signature's pairs, folded (and bounded) before the signature was checked.
    Folded(Params3),
    /// TC3's JSON body (POST) or query (GET), read once the signature is checked.
    Tc3,
}

impl Dialect for Tc3 {
    const NAME: &'static str = "tc3";
    type Action = Action;
    type Unread = Unread;
    type Params = Params3;
    type Answer = Map<String, Value>;

    async fn authenticate(state: &SharedState, req: &Request) -> Result<Signed<Unread>, Error> {
        let host = crate::request_host(&req.headers, &req.uri);
        authenticate(
            state,
            &req.method,
            &host,
            &req.headers,
            &req.query,
            &req.body,
        )
        .await
    }

    fn action(name: &str) -> Option<Action> {
        Action::parse(name)
    }

    fn instances(params: &Params3) -> Vec<String> {
        params.instance_ids(&["InstanceId"], &["InstanceIds"])
    }

    fn action_name(action: Action) -> &'static str {
        action.name()
    }

    fn params(req: &Request, unread: Unread) -> Result<Params3, Error> {
        let region = || header(&req.headers, "x-tc-region");
        match unread {
            Unread::Folded(params) => Ok(params),
            Unread::Tc3 if req.method == Method::POST => {
                Ok(Params3::from_json(&req.body)?.in_region(region()))
            }
            Unread::Tc3 => Ok(
                Params3::from_pairs(&sign_v2::parse_pairs(&req.query), COMMON)?.in_region(region()),
            ),
        }
    }

    async fn dispatch(
        state: &AppState,
        app_id: i64,
        action: Action,
        params: &Params3,
    ) -> Result<Map<String, Value>, Error> {
        // A region no zone is in is refused whatever the action, as the cloud's endpoints do.
        state.svc.zones_in_region(params.region())?;
        handlers::dispatch(state, app_id, action, params).await
    }

    fn success(mut fields: Map<String, Value>) -> Response {
        fields.insert("RequestId".into(), Value::from(request_id()));
        with_code(answer(Value::Object(fields)), SUCCESS)
    }

    fn failure(_: Option<Action>, e: &Error) -> Response {
        let (code, message) = errors::code(e);
        let response = answer(json!({
            "Error": { "Code": code, "Message": message },
            "RequestId": request_id(),
        }));
        with_code(response, code)
    }
}

/// Every answer's `RequestId`.
fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `{"Response": ...}`, HTTP 200, `Content-Type: application/json` exactly.
fn answer(response: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "Response": response }).to_string(),
    )
        .into_response()
}

async fn authenticate(
    state: &SharedState,
    method: &Method,
    host: &str,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
) -> Result<Signed<Unread>, Error> {
    if let Some(auth) = header(headers, "authorization") {
        return authenticate_tc3(state, method, headers, query, body, &auth).await;
    }
    // The old signature: parameters in the form body (POST) or the query (GET).
    let raw = if *method == Method::POST {
        String::from_utf8_lossy(body).into_owned()
    } else {
        query.to_string()
    };
    let pairs = sign_v2::parse_pairs(&raw);
    // Folded (and bounded) before anything else is done for them.
    let params = Params3::from_pairs(&pairs, COMMON)?;
    let get = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let params = params.in_region(get("Region"));
    for name in ["Action", "SecretId", "Signature", "Nonce", "Timestamp"] {
        if get(name).is_none_or(|v| v.is_empty()) {
            return Err(Error::MissingParameter(name.into()));
        }
    }
    // The old signature names no service: redis only.
    check_version(Api::Redis, get("Version").as_deref())?;
    let timestamp = parse_timestamp(get("Timestamp").as_deref())?;
    let nonce = get("Nonce").unwrap_or_default();
    if nonce.parse::<u64>().map_or(true, |n| n == 0) {
        return Err(Error::invalid("Nonce", "must be a positive integer"));
    }
    let secret_id = get("SecretId").unwrap_or_default();
    let creds = state.svc.credentials(&secret_id).await?;
    let sig_method = SignatureMethod::from_param(get("SignatureMethod").as_deref());
    let provided = get("Signature").unwrap_or_default();
    let signed_ok = std::iter::once(host)
        .chain(state.cfg.public_hosts.iter().map(String::as_str))
        .any(|h| {
            let msg = sign_tc3::old_string_to_sign(method.as_str(), h, &pairs);
            sign_v2::verify(sig_method, creds.secret_key.as_bytes(), &msg, &provided)
        });
    if !signed_ok {
        return Err(Error::SignatureMismatch);
    }
    let action = get("Action").unwrap_or_default();
    only_actions_of(Api::Redis, &action)?;
    Ok(Signed {
        app_id: creds.app_id,
        action,
        ticket: Ticket::Nonce {
            credential: secret_id,
            nonce,
            timestamp,
        },
        unread: Unread::Folded(params),
    })
}

async fn authenticate_tc3(
    state: &SharedState,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
    authorization: &str,
) -> Result<Signed<Unread>, Error> {
    let auth = sign_tc3::parse_authorization(authorization)
        .map_err(|e| Error::MalformedAuthorization(e.to_string()))?;
    let action =
        header(headers, "x-tc-action").ok_or(Error::MissingParameter("X-TC-Action".into()))?;
    let api = Api::of_service(&auth.service).ok_or_else(|| {
        Error::MalformedAuthorization(format!(
            "credential scope names service {:?}, not {} or {}",
            auth.service,
            sign_tc3::SERVICE,
            sign_tc3::MONITOR_SERVICE
        ))
    })?;
    check_version(api, header(headers, "x-tc-version").as_deref())?;
    let timestamp = parse_timestamp(header(headers, "x-tc-timestamp").as_deref())?;
    let creds = state.svc.credentials(&auth.secret_id).await?;
    let all_headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    // With `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` the signature does not cover the body:
    // anyone on the path could change what a signed request asks for.
    if sign_tc3::is_unsigned_payload(&all_headers) {
        return Err(Error::MalformedAuthorization(
            "unsigned payloads are not accepted: sign the body".into(),
        ));
    }
    let req = sign_tc3::Tc3Request {
        method: method.as_str(),
        path: "/",
        query,
        headers: &all_headers,
        payload: body,
        timestamp,
    };
    sign_tc3::verify(&creds.secret_key, &auth, &req).map_err(|e| {
        if e.code() == "AuthFailure.InvalidAuthorization" {
            Error::MalformedAuthorization(e.to_string())
        } else {
            Error::SignatureMismatch
        }
    })?;
    only_actions_of(api, &action)?;
    Ok(Signed {
        app_id: creds.app_id,
        // TC3 requests carry no Nonce: the signature itself changes something once (lower-
        // cased, as it is compared, so a change of case is the same signature).
        ticket: Ticket::Signature {
            signature: auth.signature.to_ascii_lowercase(),
            reads_only: actions::reads_only(&action),
            timestamp,
        },
        action,
        unread: Unread::Tc3,
    })
}

fn check_version(api: Api, v: Option<&str>) -> Result<(), Error> {
    match v {
        Some(v) if v == api.version() => Ok(()),
        None | Some("") => Err(Error::MissingParameter("Version".into())),
        Some(other) => Err(Error::invalid(
            "Version",
            format!("{other} is not {}", api.version()),
        )),
    }
}

/// An action of the other API is no action of this one (GetMonitorData is not redis's, and
/// Cloud Monitor has no DescribeInstances).
fn only_actions_of(api: Api, name: &str) -> Result<(), Error> {
    match Action::parse(name) {
        Some(a) if a.api() != api => Err(Error::UnknownAction(name.to_string())),
        _ => Ok(()),
    }
}

fn parse_timestamp(v: Option<&str>) -> Result<i64, Error> {
    v.and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or_else(|| Error::invalid("Timestamp", "must be unix seconds"))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
