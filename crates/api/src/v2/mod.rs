//! The Tencent Cloud CRS API v2 dialect: `/v2/index.php`, parameters in the query (GET) or a
//! form body (POST), HmacSHA1/HmacSHA256 signature over `METHOD host path ? sorted k=v`.
//!
//! Every answer is HTTP 200 with `{"code":0,"message":"","codeDesc":"Success",...}` or an error
//! body with a non-zero `code`: the legacy SDK raises on any other status and hands the body to
//! its caller unparsed, so errors belong in the body, as the seed's examples show.

mod actions;
mod errors;

use crate::params::Params;
use crate::sign_v2::{self, SignatureMethod};
use crate::SharedState;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use crsd_core::Error;

pub const PATH: &str = "/v2/index.php";

/// An authenticated caller.
pub struct Caller {
    pub app_id: i64,
}

pub async fn handle(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    // GET reads the query; POST reads the body and ignores the query (seed: 请求方法, note 1).
    let raw = if method == Method::POST {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        query.unwrap_or_default()
    };
    let pairs = sign_v2::parse_pairs(&raw);
    // Pairs beyond the bounds of `limits` are refused before anything else is done for them.
    let params = match Params::from_pairs(&pairs) {
        Ok(params) => params,
        Err(e) => {
            let body = errors::render("", &e).to_string();
            return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
    };
    let action = params.get("Action").unwrap_or_default().to_string();
    let host = crate::request_host(&headers, &uri);
    let result = match authenticate(&state, method.as_str(), &host, &pairs, &params).await {
        Ok(caller) => {
            if !actions::is_known(&action) {
                Err(Error::UnknownAction(action.clone()))
            } else if state.limiter.allow(caller.app_id, &action) {
                actions::dispatch(&state, &caller, &action, &params).await
            } else {
                Err(Error::RateLimited(action.clone()))
            }
        }
        Err(e) => Err(e),
    };
    let body = match result {
        Ok(data) => success(&data),
        Err(e) => errors::render(&action, &e).to_string(),
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An error answer to a request refused before it reached `handle` (see `crate::gate`).
pub(crate) fn refusal(e: &Error) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        errors::render("", e).to_string(),
    )
        .into_response()
}

/// `{"code":0,"message":"","codeDesc":"Success", ...the action's fields}`.
fn success(data: &actions::Data) -> String {
    let mut out = String::from(r#"{"code":0,"message":"","codeDesc":"Success""#);
    for (name, value) in data.fields() {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        out.push_str(value.get());
    }
    out.push('}');
    out
}

/// Signature pipeline: common params -> key lookup -> string to sign (Host header as received,
/// then each configured public host) -> HMAC -> constant-time compare -> timestamp window ->
/// nonce.
async fn authenticate(
    state: &SharedState,
    method: &str,
    host: &str,
    pairs: &[(String, String)],
    params: &Params,
) -> Result<Caller, Error> {
    for name in ["Action", "SecretId", "Signature", "Nonce", "Timestamp"] {
        if params.str(name).is_none() {
            return Err(Error::MissingParameter(name.into()));
        }
    }
    let timestamp = params
        .get("Timestamp")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or_else(|| Error::invalid("Timestamp", "must be unix seconds"))?;
    let nonce = params.get("Nonce").unwrap_or_default();
    if nonce.parse::<u64>().map_or(true, |n| n == 0) {
        return Err(Error::invalid("Nonce", "must be a positive integer"));
    }
    let secret_id = params.get("SecretId").unwrap_or_default();
    let creds = state.svc.credentials(secret_id).await?;
    let sig_method = SignatureMethod::from_param(params.get("SignatureMethod"));
    let provided = params.get("Signature").unwrap_or_default();
    let signed_ok = std::iter::once(host)
        .chain(state.cfg.public_hosts.iter().map(String::as_str))
        .any(|h| {
            let msg = sign_v2::string_to_sign(method, h, PATH, pairs);
            sign_v2::verify(sig_method, creds.secret_key.as_bytes(), &msg, provided)
        });
    if !signed_ok {
        return Err(Error::SignatureMismatch);
    }
    state
        .replay
        .admit(secret_id, nonce, timestamp, state.svc.now().timestamp())?;
    Ok(Caller {
        app_id: creds.app_id,
    })
}
