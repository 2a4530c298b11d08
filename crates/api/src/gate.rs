//! The gate: what crsd checks of an API request before it reads the body, and how it reads it.
//!
//! A stranger needs no key to send a request head and then stall: before this gate, each such
//! request buffered up to 2 MB and held it for as long as the client liked. So, on the three
//! dialect paths, before a byte of the body is read:
//!
//! * the method must be GET or POST, the query string at most `max_query_bytes` long and a
//!   declared `Content-Length` at most `max_body_bytes`;
//! * when a body is coming and the credential's id is in the head (the TC3 `Authorization`
//!   header, or Capital Online's `AccessKeyId`, whose signature covers only the query), the
//!   id must be a known one.
//!
//! Then the body is read under three bounds: `body_timeout` for the whole body,
//! `max_body_bytes` for its size whatever the framing, and `body_budget_bytes` for all bodies
//! being read or handled at once across every connection (bytes are counted as they arrive
//! and given back when the answer is sent), so memory held for bodies is bounded however many
//! connections are open. A refusal is in the dialect's own error shape (known from the path)
//! and closes the connection, so an unread body is never drained.

use crate::pipeline::refusal;
use crate::SharedState;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use crsd_core::Error;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bounds on what one request may send, and on all bodies at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Longest query string accepted, in bytes (longer ones get the dialect's error, up to
    /// what the HTTP parser itself accepts; see the listener).
    pub max_query_bytes: usize,
    /// Time allowed to receive a whole body, from the end of the head.
    pub body_timeout: Duration,
    /// Body bytes held at once across all requests.
    pub body_budget_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1 << 20,
            max_query_bytes: 32 << 10,
            body_timeout: Duration::from_secs(20),
            body_budget_bytes: 64 << 20,
        }
    }
}

/// The limits and the shared body budget.
pub struct Gate {
    limits: Limits,
    budget: Arc<Semaphore>,
}

impl Gate {
    pub fn new(limits: Limits) -> Gate {
        let permits = usize::try_from(limits.body_budget_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Gate {
            budget: Arc::new(Semaphore::new(permits)),
            limits,
        }
    }

    /// Bytes of the budget not held by any request now.
    pub fn budget_available(&self) -> usize {
        self.budget.available_permits()
    }
}

/// Which dialect serves a path; the gate leaves other paths alone (none of them reads a body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    V2,
    Tc3,
    Co,
}

fn dialect(path: &str) -> Option<Dialect> {
    match path {
        crate::v2::PATH => Some(Dialect::V2),
        "/" => Some(Dialect::Tc3),
        "/redis" | "/redis/" => Some(Dialect::Co),
        _ => None,
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn check(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let Some(dialect) = dialect(req.uri().path()) else {
        return next.run(req).await;
    };
    let limits = &state.gate.limits;
    let (parts, body) = req.into_parts();
    let expects_body = match declared_length(&parts.headers) {
        Ok(Some(len)) if len > limits.max_body_bytes => {
            return refuse(dialect, &too_large("body", limits.max_body_bytes));
        }
        Ok(Some(len)) => len > 0,
        Ok(None) => parts.headers.contains_key(header::TRANSFER_ENCODING),
        Err(e) => return refuse(dialect, &e),
    };
    if let Err(e) = check_head(limits, &parts.method, &parts.uri) {
        return refuse(dialect, &e);
    }
    if expects_body {
        if let Err(e) = check_credential(&state, dialect, &parts.uri, &parts.headers).await {
            return refuse(dialect, &e);
        }
    }
    let (bytes, _held) = match read_body(&state.gate, body).await {
        Ok(read) => read,
        Err(e) => return refuse(dialect, &e),
    };
    // `_held` keeps the body's share of the budget until the answer is made.
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Method and query length.
fn check_head(limits: &Limits, method: &Method, uri: &axum::http::Uri) -> Result<(), Error> {
    if method != Method::GET && method != Method::POST {
        return Err(Error::invalid("HTTP method", "must be GET or POST"));
    }
    let limit = limits.max_query_bytes;
    if uri.query().map_or(0, str::len) > limit {
        return Err(too_large("query string", limit as u64));
    }
    Ok(())
}

/// The credential's id, where the head carries it: unknown ones are refused here.
async fn check_credential(
    state: &SharedState,
    dialect: Dialect,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Result<(), Error> {
    let secret_id = match dialect {
        Dialect::Tc3 => {
            let Some(auth) = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(());
            };
            crate::sign_tc3::parse_authorization(auth)
                .map_err(|e| Error::MalformedAuthorization(e.to_string()))?
                .secret_id
        }
        Dialect::Co => {
            let query = uri.query().unwrap_or_default();
            match form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "AccessKeyId") {
                Some((_, v)) if !v.is_empty() => v.into_owned(),
                _ => return Ok(()),
            }
        }
        // The v2 SecretId of a POST is in the body.
        Dialect::V2 => return Ok(()),
    };
    match state.svc.credentials(&secret_id).await {
        Err(Error::SecretIdNotFound) => Err(Error::SecretIdNotFound),
        // Anything else is found out again, and answered, by the dialect's own checks.
        _ => Ok(()),
    }
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| Error::invalid("Content-Length", "must be a number of bytes")),
    }
}

/// Reads the whole body within the time, size and budget limits. The permit returned holds
/// the body's bytes of the budget.
async fn read_body(
    gate: &Gate,
    mut body: Body,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Error> {
    let limits = &gate.limits;
    let deadline = tokio::time::Instant::now() + limits.body_timeout;
    let mut buf = Vec::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Error::invalid(
                    "body",
                    format!(
                        "not received in full within {} s",
                        limits.body_timeout.as_secs_f64()
                    ),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Error::invalid("body", "could not be read")),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        if (buf.len() + data.len()) as u64 > limits.max_body_bytes {
            return Err(too_large("body", limits.max_body_bytes));
        }
        let n = u32::try_from(data.len()).map_err(|_| too_large("body", limits.max_body_bytes))?;
        let permit = gate
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Error::ServerBusy)?;
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        buf.extend_from_slice(&data);
    }
    Ok((Bytes::from(buf), held))
}

fn too_large(what: &str, limit: u64) -> Error {
    Error::RequestTooLarge {
        what: what.to_string(),
        limit,
    }
}

/// The dialect's error answer, on a connection that then closes (its body may be unread).
fn refuse(dialect: Dialect, e: &Error) -> Response {
    let mut response = match dialect {
        Dialect::V2 => refusal::<crate::v2::V2>(e),
        Dialect::Tc3 => refusal::<crate::tc3::Tc3>(e),
        Dialect::Co => refusal::<crate::co::Co>(e),
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_dialect_paths_are_gated() {
        assert_eq!(dialect("/v2/index.php"), Some(Dialect::V2));
        assert_eq!(dialect("/"), Some(Dialect::Tc3));
        assert_eq!(dialect("/redis"), Some(Dialect::Co));
        assert_eq!(dialect("/redis/"), Some(Dialect::Co));
        assert_eq!(dialect("/healthz"), None);
        assert_eq!(dialect("/download/x.rdb"), None);
    }

    #[tokio::test]
    async fn a_body_is_refused_past_its_size_or_the_shared_budget() {
        let gate = Gate::new(Limits {
            max_body_bytes: 10,
            body_budget_bytes: 16,
            ..Limits::default()
        });
        let (bytes, held) = read_body(&gate, Body::from("0123456789")).await.unwrap();
        assert_eq!(&bytes[..], b"0123456789");
        assert_eq!(gate.budget_available(), 6);
        assert_eq!(
            read_body(&gate, Body::from("0123456789"))
                .await
                .unwrap_err(),
            Error::ServerBusy
        );
        drop(held);
        assert_eq!(gate.budget_available(), 16);
        assert!(matches!(
            read_body(&gate, Body::from("0123456789a")).await,
            Err(Error::RequestTooLarge { limit: 10, .. })
        ));
        assert_eq!(gate.budget_available(), 16, "a refused body holds nothing");
    }
}
