//! The Capital Online (首云 cdsapi) Redis OpenAPI dialect: `/redis` and `/redis/`.
//!
//! * The common parameters (`Action`, `AccessKeyId`, `SignatureMethod` HMAC-SHA1,
//!   `SignatureVersion` 1.0, `SignatureNonce`, `Timestamp` `yyyy-MM-ddTHH:mm:ssZ`,
//!   `Version` 2019-08-08, `Signature`) are always in the query, and the signature covers
//!   exactly the query parameters received (see `sign_co`), never the body.
//! * Business parameters: the query of a GET (any body is ignored); the JSON body of a POST,
//!   parsed whatever the Content-Type (the Go SDK sends none), `null` meaning absent, plus any
//!   the client also put in the query (cds-python-sdk puts them in both).
//! * A repeated query name: the first occurrence counts (the 2026 reference client appends
//!   the business parameters a second time after `Signature`).
//! * Accounts are the Tencent dialects' accounts: `AccessKeyId` is the SecretId, so a user
//!   sees the same instances through every dialect.
//!
//! Answers are `{"Code":"Success","Message":..,"Data":..,"TaskId":..}` with HTTP 200; errors
//! carry the documented HTTP status and `Code` (see `errors`).

mod actions;
mod errors;

use crate::metrics::with_code;
use crate::pipeline::{Dialect, Request, Signed, Ticket};
use crate::sign_co;
use crate::sign_v2::parse_pairs;
use crate::tc3::params::Params3;
use crate::{AppState, SharedState};
use actions::Action;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use crsd_core::Error;
use serde_json::{json, Value};

/// The API version this dialect speaks.
pub const VERSION: &str = "2019-08-08";
/// The signature version the API documents (methods: see `sign_co::Method`).
const SIGNATURE_VERSION: &str = "1.0";
/// Common parameters: never an action's own.
const COMMON: &[&str] = &[
    "Action",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
    "Version",
    "Token",
];

/// What an action handler returns: `Data` and `TaskId` ("" for queries).
pub(crate) struct Answer {
    data: Value,
    task_id: String,
}

/// The Capital Online dialect, as the request pipeline sees it.
pub(crate) struct Co;

impl Dialect for Co {
    const NAME: &'static str = "co";
    type Action = Action;
    // The query's parameters, folded (and bounded) before anything else is done for them.
    type Unread = Params3;
    type Params = Params3;
    type Answer = Answer;

    async fn authenticate(state: &SharedState, req: &Request) -> Result<Signed<Params3>, Error> {
        let pairs = first_wins(parse_pairs(&req.query));
        let query = Params3::from_pairs(&pairs, COMMON)?;
        authenticate(state, &req.method, &pairs, query).await
    }

    fn action(name: &str) -> Option<Action> {
        name.parse().ok()
    }

    fn instances(params: &Params3) -> Vec<String> {
        params.instance_ids(&["InstanceUuid"], &["InstanceUuids"])
    }

    fn action_name(action: Action) -> &'static str {
        action.into()
    }

    /// The query's (GET), or the JSON body's over the query's (POST).
    fn params(req: &Request, query: Params3) -> Result<Params3, Error> {
        let mut p = query;
        if req.method == Method::POST {
            p.overlay(Params3::from_json(&req.body)?);
        }
        Ok(p)
    }

    async fn dispatch(
        state: &AppState,
        app_id: i64,
        action: Action,
        params: &Params3,
    ) -> Result<Answer, Error> {
        actions::dispatch(state, app_id, action, params).await
    }

    fn success(answer: Answer) -> Response {
        let response = envelope(
            axum::http::StatusCode::OK,
            "Success",
            "Success.",
            answer.data,
            answer.task_id,
        );
        with_code(response, "Success")
    }

    /// The table's HTTP status and `Code`, no `Data`.
    fn failure(_: Option<Action>, e: &Error) -> Response {
        let (status, code, message) = errors::code(e);
        with_code(
            envelope(status, code, &message, Value::Null, String::new()),
            code,
        )
    }
}

fn envelope(
    status: axum::http::StatusCode,
    code: &str,
    message: &str,
    data: Value,
    task_id: String,
) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({ "Code": code, "Message": message, "Data": data, "TaskId": task_id }).to_string(),
    )
        .into_response()
}

/// The decoded query with only the first occurrence of each name, in wire order.
fn first_wins(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

/// Checks the common parameters and the signature.
async fn authenticate(
    state: &SharedState,
    method: &Method,
    pairs: &[(String, String)],
    query: Params3,
) -> Result<Signed<Params3>, Error> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    // Every common parameter but the optional Token is required.
    for &name in COMMON.iter().filter(|n| **n != "Token") {
        if get(name).is_empty() {
            return Err(Error::MissingParameter(name.into()));
        }
    }
    let must_be = |name: &str, want: &str| {
        if get(name) == want {
            Ok(())
        } else {
            Err(Error::invalid(name, format!("{} is not {want}", get(name))))
        }
    };
    let digest = sign_co::Method::from_param(get("SignatureMethod")).ok_or_else(|| {
        Error::invalid(
            "SignatureMethod",
            format!(
                "{} is not HMAC-SHA1 (or HmacSHA256)",
                get("SignatureMethod")
            ),
        )
    })?;
    must_be("SignatureVersion", SIGNATURE_VERSION)?;
    must_be("Version", VERSION)?;
    let timestamp = NaiveDateTime::parse_from_str(get("Timestamp"), "%Y-%m-%dT%H:%M:%SZ")
        .map_err(|_| Error::invalid("Timestamp", "must be UTC yyyy-MM-ddTHH:mm:ssZ"))?
        .and_utc()
        .timestamp();
    let access_key = get("AccessKeyId");
    let creds = state.svc.credentials(access_key).await?;
    if !sign_co::verify_with(
        digest,
        &creds.secret_key,
        method.as_str(),
        pairs,
        get("Signature"),
    ) {
        return Err(Error::SignatureMismatch);
    }
    Ok(Signed {
        app_id: creds.app_id,
        action: get("Action").to_string(),
        ticket: Ticket::Nonce {
            credential: access_key.to_string(),
            nonce: get("SignatureNonce").to_string(),
            timestamp,
        },
        unread: query,
    })
}
