//! Row <-> domain mapping. Times are stored as unix milliseconds.

use crate::{AccountRecord, Result, StoreError};
use chrono::{DateTime, TimeZone, Utc};
use crsd_core::model::{
    Account, Backup, BackupKind, BackupState, BillingMode, CommandSnapshot, Deal, GoodsDetail,
    Instance, InstanceStatus, Node, NodeRole, NodeSample, Task, TaskKind, TaskStatus, WarmNode,
    WarmState,
};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub fn account(r: &SqliteRow) -> Result<Account> {
    Ok(Account {
        app_id: r.try_get("app_id")?,
        uin: r.try_get("uin")?,
        name: r.try_get("name")?,
        secret_id: r.try_get("secret_id")?,
        secret_key: r.try_get("secret_key")?,
        balance: r.try_get("balance")?,
    })
}

pub fn account_record(r: &SqliteRow) -> Result<AccountRecord> {
    Ok(AccountRecord {
        account: account(r)?,
        disabled: r.try_get("disabled")?,
        created_at: from_millis(r.try_get("created_at")?),
    })
}

pub fn instance(r: &SqliteRow) -> Result<Instance> {
    let status: i64 = r.try_get("status")?;
    Ok(Instance {
        id: r.try_get("id")?,
        app_id: r.try_get("app_id")?,
        name: r.try_get("name")?,
        project_id: r.try_get("project_id")?,
        zone_id: r.try_get("zone_id")?,
        region_id: r.try_get("region_id")?,
        type_id: r.try_get("type_id")?,
        mem_mb: r.try_get("mem_mb")?,
        status: InstanceStatus::from_code(status)
            .ok_or_else(|| StoreError::Corrupt(format!("instance status {status}")))?,
        vip: r.try_get("vip")?,
        port: r.try_get::<i64, _>("port")? as u16,
        nodes: Vec::new(),
        node_seq: r.try_get("next_node_seq")?,
        vpc_id: r.try_get("vpc_id")?,
        un_vpc_id: r.try_get("un_vpc_id")?,
        subnet_id: r.try_get("subnet_id")?,
        un_subnet_id: r.try_get("un_subnet_id")?,
        created_at: from_millis(r.try_get("created_at")?),
        deadline: from_millis(r.try_get("deadline")?),
        auto_renew: r.try_get("auto_renew")?,
        billing: {
            let code: i64 = r.try_get("billing_mode")?;
            BillingMode::from_code(code)
                .ok_or_else(|| StoreError::Corrupt(format!("instance billing mode {code}")))?
        },
        password_hash: r.try_get("password_hash")?,
        password_acl: r.try_get("password_acl")?,
        admin_secret: r.try_get("admin_secret")?,
        repl_secret: r.try_get("repl_secret")?,
        lock_task: r.try_get("lock_task")?,
        params: serde_json::from_str(&r.try_get::<String, _>("params")?)
            .map_err(|e| StoreError::Corrupt(format!("instance params: {e}")))?,
        oom_kills: r.try_get("oom_kills")?,
    })
}

pub fn node(r: &SqliteRow) -> Result<Node> {
    let role: String = r.try_get("role")?;
    Ok(Node {
        id: r.try_get("id")?,
        seq: r.try_get("seq")?,
        shard: r.try_get("shard")?,
        role: NodeRole::from_name(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("node role {role}")))?,
        host: r.try_get("host")?,
        port: r.try_get::<i64, _>("port")? as u16,
        folder: r.try_get("folder")?,
        warm_secret: r.try_get("warm_secret")?,
    })
}

pub fn warm_node(r: &SqliteRow) -> Result<WarmNode> {
    let state: String = r.try_get("state")?;
    Ok(WarmNode {
        id: r.try_get("id")?,
        cluster: r.try_get("cluster")?,
        port: r.try_get::<i64, _>("port")? as u16,
        admin_secret: r.try_get("admin_secret")?,
        repl_secret: r.try_get("repl_secret")?,
        created_at: from_millis(r.try_get("created_at")?),
        state: WarmState::from_name(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("warm node state {state}")))?,
    })
}

pub fn deal(r: &SqliteRow) -> Result<Deal> {
    let detail: String = r.try_get("detail")?;
    let detail: GoodsDetail = serde_json::from_str(&detail)
        .map_err(|e| StoreError::Corrupt(format!("deal goods detail: {e}")))?;
    Ok(Deal {
        id: r.try_get("id")?,
        app_id: r.try_get("app_id")?,
        name: r.try_get("name")?,
        zone_id: r.try_get("zone_id")?,
        goods_num: r.try_get("goods_num")?,
        creator: r.try_get("creator")?,
        status: r.try_get("status")?,
        price: r.try_get("price")?,
        detail,
        created_at: from_millis(r.try_get("created_at")?),
        overdue_at: from_millis(r.try_get("overdue_at")?),
        end_at: r.try_get::<Option<i64>, _>("end_at")?.map(from_millis),
    })
}

pub fn task(r: &SqliteRow) -> Result<Task> {
    let kind: String = r.try_get("kind")?;
    let status: i64 = r.try_get("status")?;
    let payload: String = r.try_get("payload")?;
    Ok(Task {
        id: r.try_get("id")?,
        app_id: r.try_get("app_id")?,
        kind: TaskKind::from_name(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("task kind {kind}")))?,
        instance_id: r.try_get("instance_id")?,
        deal_id: r.try_get("deal_id")?,
        status: TaskStatus::from_code(status)
            .ok_or_else(|| StoreError::Corrupt(format!("task status {status}")))?,
        step: r.try_get("step")?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::Corrupt(format!("task payload: {e}")))?,
        error: r.try_get("error")?,
        created_at: from_millis(r.try_get("created_at")?),
        updated_at: from_millis(r.try_get("updated_at")?),
        undo: match r.try_get::<Option<i64>, _>("undo_status")? {
            None => None,
            Some(code) => Some(
                TaskStatus::from_code(code)
                    .ok_or_else(|| StoreError::Corrupt(format!("task undo status {code}")))?,
            ),
        },
        undo_attempts: r.try_get("undo_attempts")?,
        retry_at: r.try_get::<Option<i64>, _>("retry_at")?.map(from_millis),
        detail: r.try_get("detail")?,
    })
}

pub fn backup(r: &SqliteRow) -> Result<Backup> {
    let kind: String = r.try_get("kind")?;
    let state: i64 = r.try_get("state")?;
    Ok(Backup {
        id: r.try_get("id")?,
        app_id: r.try_get("app_id")?,
        instance_id: r.try_get("instance_id")?,
        kind: BackupKind::from_name(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("backup kind {kind}")))?,
        remark: r.try_get("remark")?,
        state: BackupState::from_code(state)
            .ok_or_else(|| StoreError::Corrupt(format!("backup state {state}")))?,
        lock_task: r.try_get("lock_task")?,
        size: r.try_get::<i64, _>("size")? as u64,
        sha256: r.try_get("sha256")?,
        started_at: from_millis(r.try_get("started_at")?),
        finished_at: from_millis(r.try_get("finished_at")?),
        shards: serde_json::from_str(&r.try_get::<String, _>("shards")?)
            .map_err(|e| StoreError::Corrupt(format!("backup shards: {e}")))?,
    })
}

pub fn node_sample(r: &SqliteRow) -> Result<NodeSample> {
    let role: String = r.try_get("role")?;
    let at: i64 = r.try_get("at")?;
    Ok(NodeSample {
        node_id: r.try_get("node_id")?,
        instance_id: r.try_get("instance_id")?,
        at: Utc
            .timestamp_opt(at, 0)
            .single()
            .ok_or_else(|| StoreError::Corrupt(format!("sample time {at}")))?,
        role: NodeRole::from_name(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("node role {role}")))?,
        span_ms: r.try_get("span_ms")?,
        used_memory: r.try_get("used_memory")?,
        ops_per_sec: r.try_get("ops_per_sec")?,
        connections: r.try_get("connections")?,
        keyspace_hits: r.try_get("keyspace_hits")?,
        keyspace_misses: r.try_get("keyspace_misses")?,
        net_in_bps: r.try_get("net_in_bps")?,
        net_out_bps: r.try_get("net_out_bps")?,
        keys: r.try_get("keys")?,
        expired_keys: r.try_get("expired_keys")?,
        evicted_keys: r.try_get("evicted_keys")?,
        repl_lag_bytes: r.try_get("repl_lag_bytes")?,
        cpu_secs: r.try_get("cpu_secs")?,
    })
}

pub fn command_snapshot(r: &SqliteRow) -> Result<CommandSnapshot> {
    let at: i64 = r.try_get("at")?;
    let commands: String = r.try_get("commands")?;
    Ok(CommandSnapshot {
        node_id: r.try_get("node_id")?,
        instance_id: r.try_get("instance_id")?,
        at: Utc
            .timestamp_opt(at, 0)
            .single()
            .ok_or_else(|| StoreError::Corrupt(format!("snapshot time {at}")))?,
        run_id: r.try_get("run_id")?,
        commands: serde_json::from_str(&commands)
            .map_err(|e| StoreError::Corrupt(format!("command snapshot: {e}")))?,
    })
}
