//! API request metrics and the access log, recorded in one place: a layer around the router.
//!
//! The layer cannot know what a request asked for or how its dialect answered, and the
//! dialects should not each count: so the answer carries it. A dialect's `success` and
//! `failure` put its result code ([`ResultCode`]: v2's `code`, API 3.0's `Error.Code`,
//! Capital Online's `Code`, or each one's success value) into the response's extensions, the
//! pipeline adds the dialect and the action ([`Called`]), and [`record`] reads both and times
//! the whole exchange, the gate's reading of the body included.
//!
//! Labels stay bounded whatever clients send: the action is the canonical name of an action
//! the dialect knows, else [`UNKNOWN`]; codes come from each dialect's one error table.
//! Requests outside the dialects (health, downloads) are not counted here.
//!
//! The access log is one `info` line per request, target `crsd::access`: dialect, action,
//! account (`app_id`, once the signature checked out), the instance ids the request named,
//! the result code and the latency. Nothing else of the request: no key, signature, password
//! or parameter value. Instance ids come from the client: each is logged only if it looks like
//! one (letters, digits, `-` and `_`, at most 64), else as `?`, and at most 20 of them.

use crate::SharedState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::borrow::Cow;
use std::time::Instant;

/// The action label of a request that named no action its dialect knows (or that was
/// refused before its action was read).
pub(crate) const UNKNOWN: &str = "unknown";

/// A dialect's result code for the answer it rendered.
#[derive(Debug, Clone)]
pub(crate) struct ResultCode(pub Cow<'static, str>);

/// Which dialect answered, and the action the request was for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Called {
    pub dialect: &'static str,
    pub action: &'static str,
}

/// Who asked, as far as the pipeline got: the account once the signature checked out, the
/// instance ids once the parameters were read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub app_id: Option<i64>,
    pub instances: Vec<String>,
}

/// At most this many instance ids in an access log line.
const LOGGED_INSTANCES: usize = 20;

/// The instance ids for the log: `?` for one that does not look like an id (so nothing a
/// client sends can forge a line or fill the log), `...` after the first
/// [`LOGGED_INSTANCES`].
fn loggable_instances(ids: &[String]) -> String {
    let mut out: Vec<&str> = ids
        .iter()
        .take(LOGGED_INSTANCES)
        .map(|id| {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                id.as_str()
            } else {
                "?"
            }
        })
        .collect();
    if ids.len() > LOGGED_INSTANCES {
        out.push("...");
    }
    out.join(",")
}

/// `response` with its result code attached.
pub(crate) fn with_code(mut response: Response, code: impl Into<Cow<'static, str>>) -> Response {
    response.extensions_mut().insert(ResultCode(code.into()));
    response
}

/// The layer: times the request, counts it under what its answer carries, and logs it.
pub(crate) async fn record(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(req).await;
    let ext = response.extensions();
    if let (Some(called), Some(code)) = (ext.get::<Called>(), ext.get::<ResultCode>()) {
        let took = started.elapsed();
        state
            .svc
            .metrics()
            .api_request(called.dialect, called.action, &code.0, took);
        let caller = ext.get::<Caller>().cloned().unwrap_or_default();
        tracing::info!(
            target: "crsd::access",
            dialect = called.dialect,
            action = called.action,
            app_id = caller.app_id,
            instances = %loggable_instances(&caller.instances),
            code = %code.0,
            latency_ms = took.as_secs_f64() * 1000.0,
            "request"
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_looks_like_an_instance_id_is_logged() {
        let ids: Vec<String> = ["crs-abc123", "bad\nline", "", "a_b-C9"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(loggable_instances(&ids), "crs-abc123,?,?,a_b-C9");
        let many: Vec<String> = (0..25).map(|i| format!("crs-{i}")).collect();
        let logged = loggable_instances(&many);
        assert_eq!(logged.split(',').count(), LOGGED_INSTANCES + 1);
        assert!(logged.ends_with(",..."));
        assert_eq!(loggable_instances(&["x".repeat(65)]), "?");
    }
}
