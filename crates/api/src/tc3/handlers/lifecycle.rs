//! API 3.0 handlers of an instance's life after purchase: isolation (DestroyPrepaidInstance,
//! DestroyPostpaidInstance), StartupInstance and CleanUpInstance.

use super::{fields, Fields};
use crate::tc3::params::Params3;
use crate::AppState;
use crsd_core::model::BillingMode;
use crsd_core::Result;
use serde_json::json;

/// DestroyPrepaidInstance.
pub(super) async fn destroy_prepaid_instance(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let task = svc.isolate(app, &id, BillingMode::Prepaid).await?;
    // No refund deal is recorded: the name carries the isolation task's id.
    Ok(fields([
        ("DealId", json!(task.to_string())),
        ("DealName", json!(task.to_string())),
    ]))
}

/// DestroyPostpaidInstance.
pub(super) async fn destroy_postpaid_instance(
    state: &AppState,
    app: i64,
    p: &Params3,
) -> Result<Fields> {
    let svc = &state.svc;
    let id = p.required_str("InstanceId")?;
    let task = svc.isolate(app, &id, BillingMode::Postpaid).await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// StartupInstance.
pub(super) async fn startup_instance(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let task = svc.startup(app, &p.required_str("InstanceId")?).await?;
    Ok(fields([("TaskId", json!(task))]))
}

/// CleanUpInstance.
pub(super) async fn clean_up_instance(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let task = svc.clean_up(app, &p.required_str("InstanceId")?).await?;
    Ok(fields([("TaskId", json!(task))]))
}
