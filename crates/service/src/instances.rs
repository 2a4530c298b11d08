//! Use cases on existing instances: listing, names, projects, auto-renew, passwords, flush.

use crate::Service;
use crsd_core::model::{BillingMode, Instance, InstanceStatus, TaskKind};
use crsd_core::rules::{self, PasswordPolicy};
use crsd_core::{secret, Error, Field, Result};
use crsd_store::{InstanceFilter, InstanceOrder, NewTask};
use serde_json::json;

/// DescribeRedis, parsed.
#[derive(Debug, Clone, Default)]
pub struct DescribeQuery {
    pub limit: i64,
    pub offset: i64,
    pub redis_id: Option<String>,
    pub redis_name: Option<String>,
    /// Substring of the instance's address.
    pub address: Option<String>,
    /// "redisId", "projectId" or "createtime".
    pub order_by: Option<String>,
    /// 1 descending (default), 0 ascending.
    pub order_type: Option<i64>,
    pub vpc_ids: Vec<i64>,
    pub un_vpc_ids: Vec<String>,
    pub subnet_ids: Vec<i64>,
    pub un_subnet_ids: Vec<String>,
    pub project_ids: Vec<i64>,
    /// The zones to list (empty: all), e.g. those of the region a request names.
    pub zone_ids: Vec<i64>,
}

/// An instance as listings show it.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub instance: Instance,
    /// MB in use, from the instance's own INFO (as last polled).
    pub size_used_mb: i64,
    pub type_name: String,
    /// The kind of task that holds a busy instance (its lock): what it is busy with, for
    /// dialects that name it (Capital Online's DELETING, RESTORING, ...).
    pub busy_with: Option<TaskKind>,
}

impl Service {
    /// DescribeRedis.
    pub async fn describe(
        &self,
        app_id: i64,
        q: DescribeQuery,
    ) -> Result<(i64, Vec<InstanceView>)> {
        crate::page::check(q.limit, q.offset)?;
        let filter = instance_filter(app_id, q)?;
        self.views(&filter).await
    }

    /// Every instance matching `q`'s filters, in its order, as one list: for dialects whose
    /// list actions have no paging (Capital Online's). `q.limit` and `q.offset` are ignored.
    pub async fn describe_all(&self, app_id: i64, q: DescribeQuery) -> Result<Vec<InstanceView>> {
        let mut filter = instance_filter(app_id, q)?;
        filter.limit = i64::MAX;
        filter.offset = 0;
        Ok(self.views(&filter).await?.1)
    }

    async fn views(&self, filter: &InstanceFilter) -> Result<(i64, Vec<InstanceView>)> {
        let (total, list) = self.store.list_instances(filter).await?;
        // The tasks that hold listed instances, in one read (none when nothing is busy). A
        // lock is usually held by an unfinished task, but also stays with one whose undo
        // failed, so they are read by id.
        let locks: Vec<i64> = list.iter().filter_map(|i| i.lock_task).collect();
        let lock_kinds: std::collections::HashMap<i64, TaskKind> = self
            .store
            .tasks(&locks)
            .await?
            .into_iter()
            .map(|t| (t.id, t.kind))
            .collect();
        let usage = self.usage.read().unwrap_or_else(|e| e.into_inner());
        let views = list
            .into_iter()
            .map(|instance| {
                let used = usage.get(&instance.id).copied().unwrap_or(0);
                let type_name = self.type_name(instance.zone_id, instance.type_id);
                InstanceView {
                    size_used_mb: (used / (1024 * 1024)) as i64,
                    type_name,
                    busy_with: instance.lock_task.and_then(|t| lock_kinds.get(&t).copied()),
                    instance,
                }
            })
            .collect();
        Ok((total, views))
    }

    fn type_name(&self, zone_id: i64, type_id: i64) -> String {
        self.catalog()
            .zone(zone_id)
            .and_then(|z| z.types.iter().find(|t| t.type_id == type_id))
            .map(|t| t.type_name.clone())
            .unwrap_or_else(|| {
                if type_id == crsd_core::catalog::CLUSTER_TYPE_ID {
                    "集群版"
                } else {
                    "主从版"
                }
                .to_string()
            })
    }

    /// SetRedisAutoRenew: all named instances or none.
    pub async fn set_auto_renew(&self, app_id: i64, ids: &[String], flag: i64) -> Result<()> {
        let pairs: Vec<(String, i64)> = ids.iter().map(|id| (id.clone(), flag)).collect();
        self.set_auto_renews(app_id, &pairs).await
    }

    /// Each named instance its own auto-renew flag (API 3.0 ModifyInstance): all or none.
    pub async fn set_auto_renews(&self, app_id: i64, flags: &[(String, i64)]) -> Result<()> {
        if flags.is_empty() {
            return Err(Error::MissingField(Field::InstanceIds));
        }
        if let Some((_, bad)) = flags.iter().find(|(_, f)| !(0..=2).contains(f)) {
            return Err(Error::AutoRenewFlag(bad.to_string()));
        }
        let mut tx = self.store.write().await?;
        let mut changed = Vec::new();
        for (id, flag) in flags {
            let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
            if inst.status == InstanceStatus::Isolated {
                return Err(Error::InstanceIsolated(id.clone()));
            }
            inst.auto_renew = *flag;
            changed.push(inst);
        }
        for inst in changed {
            tx.update_instance(&inst).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// ModifyRedisName.
    pub async fn rename(&self, app_id: i64, id: &str, name: &str) -> Result<()> {
        self.rename_all(app_id, &[(id.to_string(), name.to_string())])
            .await
    }

    /// Each named instance its own name (API 3.0 ModifyInstance): all or none.
    pub async fn rename_all(&self, app_id: i64, names: &[(String, String)]) -> Result<()> {
        let mut tx = self.store.write().await?;
        let mut changed = Vec::new();
        for (id, name) in names {
            let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
            match inst.status {
                InstanceStatus::Isolated => return Err(Error::InstanceIsolated(id.clone())),
                InstanceStatus::Running => {}
                other => {
                    return Err(Error::InstanceStatusAbnormal {
                        id: id.clone(),
                        status: other.description().into(),
                    })
                }
            }
            rules::check_instance_name(name)?;
            inst.name = name.clone();
            changed.push(inst);
        }
        for inst in changed {
            tx.update_instance(&inst).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// ModifyRedisProject: all named instances or none.
    pub async fn modify_project(&self, app_id: i64, ids: &[String], project_id: i64) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::MissingField(Field::InstanceIds));
        }
        if project_id < 0 {
            return Err(Error::invalid_field(
                Field::ProjectId,
                "must not be negative",
            ));
        }
        let mut tx = self.store.write().await?;
        let mut changed = Vec::new();
        for id in ids {
            changed.push(self.owned_in_tx(&mut tx, app_id, id).await?);
        }
        for mut inst in changed {
            inst.project_id = project_id;
            tx.update_instance(&inst).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// ModfiyRedisPassword / ModifyInstancePassword: checks the old password, then a
    /// setPassword task applies the new one. `policy` is the calling dialect's rule.
    pub async fn modify_password(
        &self,
        app_id: i64,
        id: &str,
        old: &str,
        new: &str,
        policy: PasswordPolicy,
    ) -> Result<i64> {
        self.password_task(app_id, id, Some(old), Some(new), policy)
            .await
    }

    /// ResetRedisPassword / ResetPassword: as modify_password without the old password.
    /// `None` makes the instance password-less (ResetPassword `NoAuth`), if the operator
    /// allows that.
    pub async fn reset_password(
        &self,
        app_id: i64,
        id: &str,
        new: Option<&str>,
        policy: PasswordPolicy,
    ) -> Result<i64> {
        self.password_task(app_id, id, None, new, policy).await
    }

    async fn password_task(
        &self,
        app_id: i64,
        id: &str,
        old: Option<&str>,
        new: Option<&str>,
        policy: PasswordPolicy,
    ) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        check_idle(&inst)?;
        match new {
            Some(new) => policy.check(new)?,
            None => self.check_no_auth_allowed()?,
        }
        // A password-less instance has no old password to check.
        if let Some(old) = old.filter(|_| inst.has_password()) {
            if old.is_empty() {
                return Err(Error::PasswordEmpty);
            }
            if !secret::verify_password(&inst.password_hash, old) {
                return Err(Error::OldPasswordWrong);
            }
        }
        // Only hashes travel in the task: the plaintext is never stored. Empty: no password.
        let payload = json!({
            "passwordHash": new.map(secret::hash_password).unwrap_or_default(),
            "passwordAcl": new.map(crsd_engine::acl_sha256_hex).unwrap_or_default(),
        });
        self.start_task(tx, &mut inst, TaskKind::SetPassword, payload)
            .await
    }

    /// DestroyPrepaidInstance / DestroyPostpaidInstance: isolates a running instance of that
    /// billing mode now, as the deadline (or an unpaid hour) would: processes stopped, data
    /// kept, no more hours charged (a closeInstance task). No money is returned.
    pub async fn isolate(&self, app_id: i64, id: &str, billing: BillingMode) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        if inst.billing != billing {
            return Err(Error::invalid_field(
                Field::InstanceId,
                match inst.billing {
                    BillingMode::Prepaid => format!("{id} is prepaid: use DestroyPrepaidInstance"),
                    BillingMode::Postpaid => {
                        format!("{id} is postpaid: use DestroyPostpaidInstance")
                    }
                },
            ));
        }
        check_idle(&inst)?;
        self.start_task(tx, &mut inst, TaskKind::CloseInstance, json!({}))
            .await
    }

    /// StartupInstance: an isolated instance runs again (a startInstance task): a prepaid one
    /// whose paid period has not ended (past the deadline: renew it), a postpaid one when the
    /// balance pays its first hour, charged now (unless the hour it was isolated in is still
    /// running: that one is paid).
    pub async fn startup(&self, app_id: i64, id: &str) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        check_isolated(&inst)?;
        let now = self.now();
        match inst.billing {
            BillingMode::Prepaid if inst.deadline <= now => {
                return Err(Error::InstanceStatusAbnormal {
                    id: inst.id.clone(),
                    status: "expired: renew it to start it again".into(),
                });
            }
            BillingMode::Prepaid => {}
            // The hour already paid (isolated within it, or a failed start) is not charged twice.
            BillingMode::Postpaid if inst.deadline > now => {}
            BillingMode::Postpaid => {
                let price = self.catalog().hour_price(&crsd_core::spec::Spec::of(&inst));
                let account = tx.account(app_id).await?.ok_or(Error::SecretIdNotFound)?;
                crate::purchase::charge(&mut tx, app_id, account.balance, price).await?;
                inst.deadline = now + chrono::Duration::hours(1);
            }
        }
        self.start_task(tx, &mut inst, TaskKind::StartInstance, json!({}))
            .await
    }

    /// CleanUpInstance: deletes an isolated instance for good: processes, ports and files (a
    /// deleteInstance task). Its backups stay until their retention ends.
    pub async fn clean_up(&self, app_id: i64, id: &str) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        check_isolated(&inst)?;
        self.start_task(tx, &mut inst, TaskKind::DeleteInstance, json!({}))
            .await
    }

    /// DeleteDBInstance: deletes an instance for good at once, running or isolated: processes
    /// stopped, ports and files freed (a deleteInstance task); afterwards no dialect lists it.
    /// No money is returned. Its backups stay until their retention ends.
    pub async fn delete(&self, app_id: i64, id: &str) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        check_free(&inst, &[InstanceStatus::Running, InstanceStatus::Isolated])?;
        self.start_task(tx, &mut inst, TaskKind::DeleteInstance, json!({}))
            .await
    }

    /// ClearRedis: checks the password, then a cleanInstance task flushes every key.
    pub async fn clear(&self, app_id: i64, id: &str, password: &str) -> Result<i64> {
        let mut tx = self.store.write().await?;
        let mut inst = self.owned_in_tx(&mut tx, app_id, id).await?;
        check_idle(&inst)?;
        check_instance_password(&inst, password)?;
        self.start_task(tx, &mut inst, TaskKind::CleanInstance, json!({}))
            .await
    }

    pub(crate) async fn owned_in_tx(
        &self,
        tx: &mut crsd_store::WriteTx,
        app_id: i64,
        id: &str,
    ) -> Result<Instance> {
        if id.is_empty() {
            return Err(Error::MissingField(Field::InstanceId));
        }
        match tx.instance(id).await? {
            Some(i) if i.app_id == app_id && i.status != InstanceStatus::Deleted => Ok(i),
            _ => Err(Error::InstanceNotFound(id.to_string())),
        }
    }

    /// Records `kind` for `inst`, holds the instance with it, commits and wakes the runner:
    /// the end of every use case that starts one task on one instance. Returns the task id.
    pub(crate) async fn start_task(
        &self,
        mut tx: crsd_store::WriteTx,
        inst: &mut Instance,
        kind: TaskKind,
        payload: serde_json::Value,
    ) -> Result<i64> {
        let task_id = self.lock_with_task(&mut tx, inst, kind, payload).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(task_id)
    }

    /// Records `kind` for `inst` and marks the instance busy and locked by it.
    pub(crate) async fn lock_with_task(
        &self,
        tx: &mut crsd_store::WriteTx,
        inst: &mut Instance,
        kind: TaskKind,
        payload: serde_json::Value,
    ) -> Result<i64> {
        let task_id = tx
            .insert_task(
                &NewTask {
                    app_id: inst.app_id,
                    kind,
                    instance_id: Some(inst.id.clone()),
                    deal_id: None,
                    payload,
                },
                self.now(),
            )
            .await?;
        inst.lock_task = Some(task_id);
        inst.status = InstanceStatus::Busy;
        tx.update_instance(inst).await?;
        Ok(task_id)
    }
}

/// The instance password a destructive call carries (ClearRedis, RestoreInstance): it must
/// be given and right, unless the instance has none.
pub(crate) fn check_instance_password(inst: &Instance, password: &str) -> Result<()> {
    if !inst.has_password() {
        return Ok(());
    }
    if password.is_empty() {
        return Err(Error::PasswordEmpty);
    }
    if !secret::verify_password(&inst.password_hash, password) {
        return Err(Error::PasswordWrong);
    }
    Ok(())
}

impl Service {
    /// Every instance that is not deleted, of every account or only of `app_id`'s, oldest
    /// first, with its nodes (`crsd instance list`).
    pub async fn operator_instances(&self, app_id: Option<i64>) -> Result<Vec<Instance>> {
        let mut list = self.store.live_instances().await?;
        if let Some(app_id) = app_id {
            list.retain(|i| i.app_id == app_id);
        }
        Ok(list)
    }
}

impl Service {
    /// Password-less instances exist only where the operator's config allows them.
    pub(crate) fn check_no_auth_allowed(&self) -> Result<()> {
        if self.cfg.allow_no_auth {
            Ok(())
        } else {
            Err(Error::invalid(
                "NoAuth",
                "password-less instances are not offered by this operator",
            ))
        }
    }
}

/// A task may start on an instance only when no other task holds it (InstanceLocked) and it
/// is in one of `statuses` (InstanceStatusAbnormal otherwise).
fn check_free(inst: &Instance, statuses: &[InstanceStatus]) -> Result<()> {
    if inst.lock_task.is_some() {
        return Err(Error::InstanceLocked(inst.id.clone()));
    }
    if !statuses.contains(&inst.status) {
        return Err(Error::InstanceStatusAbnormal {
            id: inst.id.clone(),
            status: inst.status.description().into(),
        });
    }
    Ok(())
}

/// Startup and clean-up apply to an isolated instance that no task holds.
fn check_isolated(inst: &Instance) -> Result<()> {
    check_free(inst, &[InstanceStatus::Isolated])
}

/// Most tasks (and backups) start on an instance only when it is serving and free.
pub(crate) fn check_idle(inst: &Instance) -> Result<()> {
    check_free(inst, &[InstanceStatus::Running])
}

/// The store filter for DescribeRedis's filters and order (limit and offset as given).
fn instance_filter(app_id: i64, q: DescribeQuery) -> Result<InstanceFilter> {
    let order_by = match q.order_by.as_deref() {
        None | Some("") | Some("createtime") | Some("createTime") => InstanceOrder::CreateTime,
        Some("redisId") => InstanceOrder::Id,
        Some("projectId") => InstanceOrder::Project,
        Some(other) => {
            return Err(Error::invalid(
                "orderBy",
                format!("{other} is not one of redisId, projectId, createtime"),
            ))
        }
    };
    let descending = match q.order_type {
        None | Some(1) => true,
        Some(0) => false,
        Some(other) => {
            return Err(Error::invalid(
                "orderType",
                format!("{other} is not 0 or 1"),
            ))
        }
    };
    let text = |name: &str, v: &Option<String>, max: usize| match v {
        Some(v) => rules::check_text(name, v, max),
        None => Ok(()),
    };
    text("redisId", &q.redis_id, rules::MAX_ID_CHARS)?;
    text("redisName", &q.redis_name, rules::MAX_FILTER_CHARS)?;
    text("address", &q.address, rules::MAX_FILTER_CHARS)?;
    for (name, list) in [
        ("unVpcIds", &q.un_vpc_ids),
        ("unSubnetIds", &q.un_subnet_ids),
    ] {
        for v in list {
            rules::check_text(name, v, rules::MAX_ID_CHARS)?;
        }
    }
    Ok(InstanceFilter {
        app_id,
        ids: q.redis_id.filter(|s| !s.is_empty()).into_iter().collect(),
        name: q.redis_name.filter(|s| !s.is_empty()),
        address: q.address.filter(|s| !s.is_empty()),
        project_ids: q.project_ids,
        zone_ids: q.zone_ids,
        vpc_ids: q.vpc_ids,
        un_vpc_ids: q.un_vpc_ids,
        subnet_ids: q.subnet_ids,
        un_subnet_ids: q.un_subnet_ids,
        order_by,
        descending,
        limit: q.limit,
        offset: q.offset,
    })
}
