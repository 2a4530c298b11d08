//! API request metrics, recorded in one place: a layer around the router.
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

/// `response` with its result code attached.
pub(crate) fn with_code(mut response: Response, code: impl Into<Cow<'static, str>>) -> Response {
    response.extensions_mut().insert(ResultCode(code.into()));
    response
}

/// The layer: times the request and counts it under what its answer carries.
pub(crate) async fn record(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(req).await;
    let ext = response.extensions();
    if let (Some(called), Some(code)) = (ext.get::<Called>(), ext.get::<ResultCode>()) {
        state
            .svc
            .metrics()
            .api_request(called.dialect, called.action, &code.0, started.elapsed());
    }
    response
}
