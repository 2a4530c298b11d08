//! API 3.0 handlers of tasks (DescribeTaskInfo, DescribeTaskList) and the model's task type
//! codes.

use super::{fields, time_in, Fields};
use crate::tc3::params::Params3;
use crate::AppState;
use crsd_core::model::{TaskKind, TaskStatus};
use crsd_core::{Error, Result};
use crsd_service::TaskQuery;
use serde_json::{json, Value};

/// DescribeTaskInfo.
pub(super) async fn describe_task_info(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let time = time_in(svc.time_zone());
    let task = svc.task_info(app, p.required_int("TaskId")?).await?;
    let status = match task.status {
        TaskStatus::Pending => "preparing",
        TaskStatus::Running => "running",
        TaskStatus::Succeeded => "succeed",
        TaskStatus::Failed => "failed",
        TaskStatus::Error => "error",
    };
    Ok(fields([
        ("Status", json!(status)),
        ("StartTime", json!(time(task.created_at))),
        ("TaskType", json!(task.kind.name())),
        ("InstanceId", json!(task.instance_id.unwrap_or_default())),
        ("TaskMessage", json!(task.error.unwrap_or_default())),
    ]))
}

/// DescribeTaskList.
pub(super) async fn describe_task_list(state: &AppState, app: i64, p: &Params3) -> Result<Fields> {
    let svc = &state.svc;
    let time = time_in(svc.time_zone());
    let mut statuses = Vec::new();
    for r in p.int_list("Result")? {
        let matching: Vec<i64> = [-1, 0, 1, 2, 3]
            .into_iter()
            .filter_map(TaskStatus::from_code)
            .filter(|s| result_code(*s) == r)
            .map(TaskStatus::code)
            .collect();
        if matching.is_empty() {
            return Err(Error::invalid("Result", format!("{r} is not 0, 1, 2 or 4")));
        }
        statuses.extend(matching);
    }
    let kinds = p
        .str_list("TaskTypes")?
        .iter()
        .map(|code| {
            kind_of_code(code)
                .ok_or_else(|| Error::invalid("TaskTypes", format!("unknown type {code}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let q = TaskQuery {
        limit: p.int_or("Limit", 20)?,
        offset: p.int_or("Offset", 0)?,
        redis_id: p.str("InstanceId")?,
        redis_name: p.str("InstanceName")?,
        begin_time: p.str("BeginTime")?,
        end_time: p.str("EndTime")?,
        statuses,
        kinds,
    };
    let (total, list) = svc.task_list(app, q).await?;
    let tasks: Vec<Value> = list
        .iter()
        .map(|v| {
            let t = &v.task;
            let result = result_code(t.status);
            json!({
                "TaskId": t.id,
                "StartTime": time(t.created_at),
                "TaskType": code_of_kind(t.kind),
                "InstanceName": v.instance_name,
                "InstanceId": t.instance_id.clone().unwrap_or_default(),
                "ProjectId": v.project_id,
                "Progress": if t.status.is_finished() { 1.0 } else { 0.0 },
                "EndTime": if t.status.is_finished() { time(t.updated_at) } else { String::new() },
                "Result": result,
            })
        })
        .collect();
    Ok(fields([
        ("TotalCount", json!(total)),
        ("Tasks", json!(tasks)),
    ]))
}

/// The model's task type codes (DescribeTaskList `TaskTypes`).
pub(super) const TASK_CODES: &[(TaskKind, &str)] = &[
    (TaskKind::NewInstance, "001"),
    (TaskKind::ResizeInstance, "002"),
    (TaskKind::CloseInstance, "003"),
    (TaskKind::CleanInstance, "004"),
    (TaskKind::StartInstance, "005"),
    (TaskKind::DeleteInstance, "006"),
    (TaskKind::SetPassword, "007"),
    (TaskKind::ExportBackup, "009"),
    (TaskKind::RestoreBackup, "010"),
    (TaskKind::BackupInstance, "012"),
    (TaskKind::ModifyParams, "034"),
    // FLOW_ADDNODES: "加（减）节点".
    // FLOW_EXPORSHR: "扩缩容" (shards added or removed).
    (TaskKind::ChangeShards, "028"),
    (TaskKind::ChangeReplicas, "029"),
];

/// DescribeTaskList's `Result`: 0 waiting, 1 running, 2 succeeded, 4 failed (a task that
/// failed and one that ended in error alike). Its filter is built from this same table.
pub(super) fn result_code(status: TaskStatus) -> i64 {
    match status {
        TaskStatus::Pending => 0,
        TaskStatus::Running => 1,
        TaskStatus::Succeeded => 2,
        TaskStatus::Failed | TaskStatus::Error => 4,
    }
}

/// The kind's code; a kind the model's list gives no code (a failover Sentinel made, a
/// planned switch, a drill) is typed by its task name (`switchMaster`, ...), which the
/// `TaskTypes` filter takes too.
pub(super) fn code_of_kind(kind: TaskKind) -> &'static str {
    TASK_CODES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, c)| *c)
        .unwrap_or(kind.name())
}

pub(super) fn kind_of_code(code: &str) -> Option<TaskKind> {
    TASK_CODES
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(k, _)| *k)
        .or_else(|| {
            TaskKind::from_name(code).filter(|k| !TASK_CODES.iter().any(|(known, _)| known == k))
        })
}
