//! The API 3.0 handlers, grouped by capability: one function per action of the model this
//! version carries out, each reading the model's request fields, calling one service function
//! and shaping the model's response fields (tencentcloud-sdk-python-redis 3.1.189,
//! `tencentcloud/redis/v20180412/models.py`). Where seed 002's sample says `RedisBackupSet`,
//! the model's `BackupSet` is used (the SDKs read that name).
//!
//! Why grouped: one match of 650 lines held every action's code; here `dispatch` only routes,
//! and what belongs together (buying, backups, tasks...) is read in one small file.

mod backups;
mod cloud_monitor;
mod instances;
mod lifecycle;
mod monitor;
mod observe;
mod params;
mod purchase;
mod tasks;

use super::actions::Action;
use super::params::Params3;
use crate::AppState;
use chrono::{DateTime, Utc};
use crsd_core::{timefmt, Error, Result};
use serde_json::{Map, Value};

/// What a handler answers: the `Response` fields besides `RequestId`.
pub type Fields = Map<String, Value>;

/// The action's handler.
pub async fn dispatch(state: &AppState, app: i64, action: Action, p: &Params3) -> Result<Fields> {
    match action {
        Action::DescribeInstances => instances::describe_instances(state, app, p).await,
        Action::ClearInstance => instances::clear_instance(state, app, p).await,
        Action::ChangeReplicaToMaster => instances::change_replica_to_master(state, app, p).await,
        Action::KillMasterGroup => instances::kill_master_group(state, app, p).await,
        Action::ModifyInstance => instances::modify_instance(state, app, p).await,
        Action::ModifyInstancePassword => instances::modify_instance_password(state, app, p).await,
        Action::ResetPassword => instances::reset_password(state, app, p).await,
        Action::DestroyPrepaidInstance => lifecycle::destroy_prepaid_instance(state, app, p).await,
        Action::DestroyPostpaidInstance => {
            lifecycle::destroy_postpaid_instance(state, app, p).await
        }
        Action::StartupInstance => lifecycle::startup_instance(state, app, p).await,
        Action::CleanUpInstance => lifecycle::clean_up_instance(state, app, p).await,
        Action::DescribeProductInfo => purchase::describe_product_info(state, app, p).await,
        Action::InquiryPriceCreateInstance => {
            purchase::inquiry_price_create_instance(state, app, p).await
        }
        Action::CreateInstances => purchase::create_instances(state, app, p).await,
        Action::InquiryPriceRenewInstance => {
            purchase::inquiry_price_renew_instance(state, app, p).await
        }
        Action::InquiryPriceUpgradeInstance => {
            purchase::inquiry_price_upgrade_instance(state, app, p).await
        }
        Action::DescribeInstanceDealDetail => {
            purchase::describe_instance_deal_detail(state, app, p).await
        }
        Action::RenewInstance => purchase::renew_instance(state, app, p).await,
        Action::UpgradeInstance => purchase::upgrade_instance(state, app, p).await,
        Action::DescribeInstanceBackups => backups::describe_instance_backups(state, app, p).await,
        Action::ManualBackupInstance => backups::manual_backup_instance(state, app, p).await,
        Action::DescribeBackupUrl => backups::describe_backup_url(state, app, p).await,
        Action::RestoreInstance => backups::restore_instance(state, app, p).await,
        Action::DescribeAutoBackupConfig => {
            backups::describe_auto_backup_config(state, app, p).await
        }
        Action::ModifyAutoBackupConfig => backups::modify_auto_backup_config(state, app, p).await,
        Action::DescribeTaskInfo => tasks::describe_task_info(state, app, p).await,
        Action::DescribeTaskList => tasks::describe_task_list(state, app, p).await,
        Action::DescribeSlowLog => observe::describe_slow_log(state, app, p).await,
        Action::DescribeInstanceNodeInfo => {
            observe::describe_instance_node_info(state, app, p).await
        }
        Action::DescribeInstanceZoneInfo => {
            observe::describe_instance_zone_info(state, app, p).await
        }
        Action::DescribeInstanceShards => observe::describe_instance_shards(state, app, p).await,
        Action::DescribeInstanceParams => params::describe_instance_params(state, app, p).await,
        Action::ModifyInstanceParams => params::modify_instance_params(state, app, p).await,
        Action::DescribeInstanceMonitorTopNCmd => monitor::top_n_cmd(state, app, p).await,
        Action::DescribeInstanceMonitorTopNCmdTook => monitor::top_n_cmd_took(state, app, p).await,
        Action::DescribeInstanceMonitorTookDist => monitor::took_dist(state, app, p).await,
        Action::DescribeInstanceMonitorSIP => monitor::sip(state, app, p).await,
        Action::DescribeInstanceMonitorBigKey => monitor::big_key(state, app, p).await,
        Action::DescribeInstanceMonitorBigKeySizeDist => {
            monitor::big_key_size_dist(state, app, p).await
        }
        Action::DescribeInstanceMonitorBigKeyTypeDist => {
            monitor::big_key_type_dist(state, app, p).await
        }
        Action::DescribeInstanceMonitorHotKey => monitor::hot_key(state, app, p).await,
        Action::GetMonitorData => cloud_monitor::get_monitor_data(state, app, p).await,
        Action::Unsupported(name) => Err(Error::Unsupported(name.to_string())),
    }
}

/// Times as the API prints them, in the operator's time zone.
fn time_in(tz: chrono_tz::Tz) -> impl Fn(DateTime<Utc>) -> String + Copy {
    move |t| timefmt::format(t, tz)
}

/// The API 3.0 TypeId crsd sells its master-replica product as: Debian's redis-server is
/// 7.0, so "Redis 7.0 standard" (17); 18 (7.0 cluster) comes with cluster instances.
pub(super) const API3_STANDARD_7_0: i64 = 17;
pub(super) const API3_CLUSTER_7_0: i64 = 18;

/// `NoAuth`: true asks for a password-less instance (the service refuses it unless the
/// operator allows them).
pub(super) fn no_auth(p: &Params3) -> Result<bool> {
    flag(p, "NoAuth")
}

/// A Boolean parameter (`true`/`false`, or 1/0); false when not sent.
pub(super) fn flag(p: &Params3, name: &str) -> Result<bool> {
    match p.str(name)?.as_deref() {
        None | Some("false") | Some("0") | Some("") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(Error::invalid(
            name,
            format!("{other} is not true or false"),
        )),
    }
}

/// A `Response` object from its fields.
pub(super) fn fields<const N: usize>(list: [(&str, Value); N]) -> Map<String, Value> {
    list.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
