//! The one request pipeline every dialect runs.
//!
//! Why one: the order of the checks is a security property (nothing is parsed past its bounds
//! before the signature is checked, a used nonce or TC3 signature is refused before the action
//! is looked at, only known actions get a rate-limit bucket, so unknown names cannot grow the
//! table), and three hand-written copies of it drift apart. Here it is written once:
//!
//! 1. **authenticate** (the dialect): parse the request within `limits`, check the common
//!    parameters and the signature; the caller's account, the action's name and the
//!    [`Ticket`] that makes the request unique;
//! 2. **replay**: the ticket against `guard::ReplayGuard` (a nonce once per credential; a TC3
//!    signature once unless the request only reads, the dialect's rule);
//! 3. **known action**: the name parsed once into the dialect's typed action, else the
//!    dialect's `UnknownAction` answer;
//! 4. the action's **parameters** read (the dialect: a body it had not read yet);
//! 5. **rate limit** per account and action;
//! 6. **dispatch** to the dialect's handler, which calls one service function;
//! 7. **log** what the tenant is not told (internal errors, with their detail);
//! 8. **render** success or the error through the dialect's one error table, the answer
//!    marked with the dialect, the action, the caller and the result code for the layer that
//!    counts and logs it (`metrics::record`).
//!
//! A dialect supplies what differs: its parser and signer (`authenticate`), its action enum,
//! its handlers and its envelope and error table (`success`, `failure`). Requests the gate
//! refuses before they get here are answered by [`refusal`], in the same shape.

use crate::{metrics, AppState, SharedState};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use crsd_core::{Error, Result};
use std::future::Future;

/// A request as every dialect reads it (the gate has already bounded and read the body).
pub(crate) struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The raw query, `""` when there is none.
    pub query: String,
    pub body: Bytes,
}

/// What makes a signed request unique, for the replay guard.
pub(crate) enum Ticket {
    /// A nonce, once per credential while its timestamp is in the window (v2, the API 3.0 old
    /// signature, Capital Online).
    Nonce {
        credential: String,
        nonce: String,
        timestamp: i64,
    },
    /// A TC3 signature (TC3 carries no nonce): once, unless the request only reads.
    Signature {
        signature: String,
        reads_only: bool,
        timestamp: i64,
    },
}

/// A request whose signature checked out: who asks, for which action (as named), with what.
pub(crate) struct Signed<U> {
    pub app_id: i64,
    pub action: String,
    pub ticket: Ticket,
    /// The parameters, or what the dialect still has to read them from.
    pub unread: U,
}

/// What a dialect supplies to the pipeline.
pub(crate) trait Dialect: 'static {
    /// For the log.
    const NAME: &'static str;
    /// Every action the dialect answers, parsed once from its name.
    type Action: Copy + Send + Sync + 'static;
    /// What `authenticate` leaves for `params`.
    type Unread: Send;
    /// The action's parameters as the handlers read them.
    type Params: Send + Sync;
    /// What a handler returns, before the dialect's envelope.
    type Answer: Send;

    /// Parse (within `limits`) and check the signature.
    fn authenticate(
        state: &SharedState,
        req: &Request,
    ) -> impl Future<Output = Result<Signed<Self::Unread>>> + Send;

    /// The action a name stands for, if the dialect knows it.
    fn action(name: &str) -> Option<Self::Action>;

    /// The action's canonical name (the metrics' `action` label).
    fn action_name(action: Self::Action) -> &'static str;

    /// The action's parameters.
    fn params(req: &Request, unread: Self::Unread) -> Result<Self::Params>;

    /// The instance ids the parameters name, as the client sent them (for the access log).
    fn instances(params: &Self::Params) -> Vec<String>;

    /// The action's handler: one service function, its answer shaped.
    fn dispatch(
        state: &AppState,
        app_id: i64,
        action: Self::Action,
        params: &Self::Params,
    ) -> impl Future<Output = Result<Self::Answer>> + Send;

    /// The success envelope, with the dialect's success code (`metrics::with_code`).
    fn success(answer: Self::Answer) -> Response;

    /// The error answer, through the dialect's one error table, with its code
    /// (`metrics::with_code`); `action` is known once the request got that far (some codes
    /// depend on it).
    fn failure(action: Option<Self::Action>, e: &Error) -> Response;
}

/// The axum handler of a dialect's path.
pub(crate) async fn handle<D: Dialect>(
    State(state): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let req = Request {
        method,
        uri,
        headers,
        query: query.unwrap_or_default(),
        body,
    };
    let mut name = String::new();
    let mut action = None;
    let mut caller = metrics::Caller::default();
    let result = run::<D>(&state, &req, &mut name, &mut action, &mut caller).await;
    let response = match result {
        Ok(answer) => D::success(answer),
        Err(e) => {
            log::<D>(&name, &e);
            D::failure(action, &e)
        }
    };
    // The name is known once the signature checked out; one the dialect does not know (a
    // client may send anything) is not a label.
    let known = action.or_else(|| D::action(&name));
    called::<D>(
        response,
        known.map_or(metrics::UNKNOWN, D::action_name),
        caller,
    )
}

/// `response` marked with its dialect, action and caller, for the metrics layer.
fn called<D: Dialect>(
    mut response: Response,
    action: &'static str,
    caller: metrics::Caller,
) -> Response {
    response.extensions_mut().insert(metrics::Called {
        dialect: D::NAME,
        action,
    });
    response.extensions_mut().insert(caller);
    response
}

/// Steps 1 to 6; `name`, `action` and `caller` are filled in as they become known.
async fn run<D: Dialect>(
    state: &SharedState,
    req: &Request,
    name: &mut String,
    action: &mut Option<D::Action>,
    caller: &mut metrics::Caller,
) -> Result<D::Answer> {
    let signed = D::authenticate(state, req).await?;
    *name = signed.action;
    caller.app_id = Some(signed.app_id);
    admit(state, signed.ticket)?;
    let known = D::action(name).ok_or_else(|| Error::UnknownAction(name.clone()))?;
    *action = Some(known);
    let params = D::params(req, signed.unread)?;
    caller.instances = D::instances(&params);
    if !state.limiter.allow(signed.app_id, name) {
        return Err(Error::RateLimited(name.clone()));
    }
    D::dispatch(state, signed.app_id, known, &params).await
}

/// The replay step.
fn admit(state: &AppState, ticket: Ticket) -> Result<()> {
    let now = state.svc.now().timestamp();
    match ticket {
        Ticket::Nonce {
            credential,
            nonce,
            timestamp,
        } => state.replay.admit(&credential, &nonce, timestamp, now),
        Ticket::Signature {
            signature,
            reads_only,
            timestamp,
        } => state
            .replay
            .admit_signature(&signature, reads_only, timestamp, now),
    }
}

/// The log step: what the tenant is not told is told to the operator.
fn log<D: Dialect>(action: &str, e: &Error) {
    match e {
        Error::Internal(detail) => {
            tracing::error!(dialect = D::NAME, action, detail = %detail, "internal error")
        }
        _ => tracing::debug!(dialect = D::NAME, action, error = %e, "refused"),
    }
}

/// The answer to a request the gate refused before it reached the pipeline.
pub(crate) fn refusal<D: Dialect>(e: &Error) -> Response {
    log::<D>("", e);
    called::<D>(
        D::failure(None, e),
        metrics::UNKNOWN,
        metrics::Caller::default(),
    )
}
