//! The Tencent Cloud API 3.0 dialect (redis, Version 2018-04-12): requests on `/`, told from
//! v2 by path and from each other by the `Authorization` header (not by X-TC-Action, which
//! the old-signature form does not send):
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
pub mod params;

use crate::sign_tc3;
use crate::sign_v2::{self, SignatureMethod};
use crate::SharedState;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use crsd_core::Error;
use params::Params3;
use serde_json::{json, Value};

/// The API version this dialect speaks.
pub const VERSION: &str = "2018-04-12";
/// The service name in TC3 credential scopes.
const SERVICE: &str = "redis";
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

/// A request, authenticated: who asks for what, with which parameters.
struct Authenticated {
    app_id: i64,
    action: String,
    params: Params3,
}

pub async fn handle(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let host = crate::request_host(&headers, &uri);
    let query = query.unwrap_or_default();
    let result = match authenticate(&state, &method, &host, &headers, &query, &body).await {
        Ok(req) => {
            if !actions::MODEL.contains(&req.action.as_str()) {
                Err(Error::UnknownAction(req.action.clone()))
            } else if state.limiter.allow(req.app_id, &req.action) {
                actions::dispatch(&state, req.app_id, &req.action, &req.params).await
            } else {
                Err(Error::RateLimited(req.action.clone()))
            }
        }
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(mut fields) => {
            fields.insert("RequestId".into(), Value::from(request_id));
            Value::Object(fields)
        }
        Err(e) => error_response(&e, request_id),
    };
    answer(response)
}

/// An error answer to a request refused before it reached `handle` (see `crate::gate`).
pub(crate) fn refusal(e: &Error) -> Response {
    answer(error_response(e, uuid::Uuid::new_v4().to_string()))
}

fn error_response(e: &Error, request_id: String) -> Value {
    if let Error::Internal(detail) = e {
        tracing::error!(detail = %detail, "internal error");
    }
    let (code, message) = errors::code(e);
    json!({ "Error": { "Code": code, "Message": message }, "RequestId": request_id })
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
) -> Result<Authenticated, Error> {
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
    for name in ["Action", "SecretId", "Signature", "Nonce", "Timestamp"] {
        if get(name).is_none_or(|v| v.is_empty()) {
            return Err(Error::MissingParameter(name.into()));
        }
    }
    check_version(get("Version").as_deref())?;
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
    state
        .replay
        .admit(&secret_id, &nonce, timestamp, state.svc.now().timestamp())?;
    Ok(Authenticated {
        app_id: creds.app_id,
        action: get("Action").unwrap_or_default(),
        params,
    })
}

async fn authenticate_tc3(
    state: &SharedState,
    method: &Method,
    headers: &HeaderMap,
    query: &str,
    body: &[u8],
    authorization: &str,
) -> Result<Authenticated, Error> {
    let auth = sign_tc3::parse_authorization(authorization)
        .map_err(|e| Error::MalformedAuthorization(e.to_string()))?;
    let action =
        header(headers, "x-tc-action").ok_or(Error::MissingParameter("X-TC-Action".into()))?;
    check_version(header(headers, "x-tc-version").as_deref())?;
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
    if auth.service != SERVICE {
        return Err(Error::MalformedAuthorization(format!(
            "credential scope names service {:?}, not {SERVICE}",
            auth.service
        )));
    }
    sign_tc3::verify(&creds.secret_key, &auth, &req).map_err(|e| {
        if e.code() == "AuthFailure.InvalidAuthorization" {
            Error::MalformedAuthorization(e.to_string())
        } else {
            Error::SignatureMismatch
        }
    })?;
    // TC3 requests carry no Nonce: the signature itself changes something once (lower-cased,
    // as it is compared, so a change of case is the same signature).
    state.replay.admit_signature(
        &auth.signature.to_ascii_lowercase(),
        actions::reads_only(&action),
        timestamp,
        state.svc.now().timestamp(),
    )?;
    let params = if *method == Method::POST {
        Params3::from_json(body)?
    } else {
        Params3::from_pairs(&sign_v2::parse_pairs(query), COMMON)?
    };
    Ok(Authenticated {
        app_id: creds.app_id,
        action,
        params,
    })
}

fn check_version(v: Option<&str>) -> Result<(), Error> {
    match v {
        Some(VERSION) => Ok(()),
        None | Some("") => Err(Error::MissingParameter("Version".into())),
        Some(other) => Err(Error::invalid(
            "Version",
            format!("{other} is not {VERSION}"),
        )),
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
