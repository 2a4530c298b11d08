//! The Tencent Cloud CRS API v2 dialect: `/v2/index.php`, parameters in the query (GET) or a
//! form body (POST), HmacSHA1/HmacSHA256 signature over `METHOD host path ? sorted k=v`.
//!
//! Every answer is HTTP 200 with `{"code":0,"message":"","codeDesc":"Success",...}` or an error
//! body with a non-zero `code`: the legacy SDK raises on any other status and hands the body to
//! its caller unparsed, so errors belong in the body, as the seed's examples show.

mod actions;
mod errors;

use crate::metrics::with_code;
use crate::params::Params;
use crate::pipeline::{Dialect, Request, Signed, Ticket};
use crate::sign_v2::{self, SignatureMethod};
use crate::{AppState, SharedState};
use actions::Action;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use crsd_core::Error;

pub const PATH: &str = "/v2/index.php";

/// The v2 dialect, as the request pipeline sees it.
pub(crate) struct V2;

impl Dialect for V2 {
    const NAME: &'static str = "v2";
    type Action = Action;
    // Read (and bounded) before authentication: what is signed is what is used.
    type Unread = Params;
    type Params = Params;
    type Answer = actions::Data;

    async fn authenticate(state: &SharedState, req: &Request) -> Result<Signed<Params>, Error> {
        // GET reads the query; POST reads the body and ignores the query (seed: 请求方法,
        // note 1).
        let raw = if req.method == Method::POST {
            String::from_utf8_lossy(&req.body)
        } else {
            std::borrow::Cow::Borrowed(req.query.as_str())
        };
        let pairs = sign_v2::parse_pairs(&raw);
        // Pairs beyond the bounds of `limits` are refused before anything else is done for
        // them.
        let params = Params::from_pairs(&pairs)?;
        let host = crate::request_host(&req.headers, &req.uri);
        authenticate(state, req.method.as_str(), &host, &pairs, params).await
    }

    fn action(name: &str) -> Option<Action> {
        name.parse().ok()
    }

    fn instances(params: &Params) -> Vec<String> {
        let mut ids: Vec<String> = params.str("redisId").into_iter().collect();
        ids.extend(params.array("redisIds"));
        ids
    }

    fn action_name(action: Action) -> &'static str {
        action.into()
    }

    fn params(_: &Request, params: Params) -> Result<Params, Error> {
        Ok(params)
    }

    async fn dispatch(
        state: &AppState,
        app_id: i64,
        action: Action,
        params: &Params,
    ) -> Result<actions::Data, Error> {
        actions::dispatch(state, app_id, action, params).await
    }

    fn success(data: actions::Data) -> Response {
        with_code(json_200(success(&data)), "0")
    }

    fn failure(action: Option<Action>, e: &Error) -> Response {
        let body = errors::render(action, e);
        let code = body["code"].as_i64().unwrap_or_default().to_string();
        with_code(json_200(body.to_string()), code)
    }
}

/// Every answer: HTTP 200, JSON.
fn json_200(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
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

/// Common params -> key lookup -> string to sign (Host header as received, then each
/// configured public host) -> HMAC -> constant-time compare; the pipeline then checks the
/// timestamp window and the nonce.
async fn authenticate(
    state: &SharedState,
    method: &str,
    host: &str,
    pairs: &[(String, String)],
    params: Params,
) -> Result<Signed<Params>, Error> {
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
    Ok(Signed {
        app_id: creds.app_id,
        action: params.get("Action").unwrap_or_default().to_string(),
        ticket: Ticket::Nonce {
            credential: secret_id.to_string(),
            nonce: nonce.to_string(),
            timestamp,
        },
        unread: params,
    })
}
