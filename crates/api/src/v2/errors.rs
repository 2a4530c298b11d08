//! The one table from domain error to v2 codes: the common `code` (4000 parameters, 4100
//! signature, 4104 SecretId, 4400 quota, 4500 replay, 5000 no such resource, 5100 operation
//! failed, 5200 purchase failed, 5300 balance, 6000 internal, 6100 not supported), the module
//! code and English name each action's table documents (`codeDesc`), and the message in the
//! documented `(module code)text` form.

use super::actions::Action;
use crsd_core::{Error, Field};
use serde_json::{json, Value};

/// v2's name for a field the service names.
fn param(field: Field) -> &'static str {
    match field {
        Field::InstanceId => "redisId",
        Field::InstanceIds => "redisIds.n",
        Field::DealIds => "dealIds.n",
        Field::BackupId => "backupId",
        Field::ProjectId => "projectId",
        Field::VpcId => "unVpcId",
        Field::SubnetId => "unSubnetId",
        Field::Port => "port",
        Field::Remark => "remark",
        Field::Limit => "limit",
        Field::Offset => "offset",
        Field::BeginTime => "beginTime",
        Field::EndTime => "endTime",
        Field::ReplicaGroup => "groupId",
        Field::Period => "period",
    }
}

/// The error body; `action` is the action the request named, once it is known (a few codes
/// depend on it).
pub fn render(action: Option<Action>, e: &Error) -> Value {
    let (code, module, desc, text) = table(action, &e.clone().named(param));
    let message = match module {
        Some(m) => format!("({m}){text}"),
        None => text,
    };
    json!({ "code": code, "message": message, "codeDesc": desc })
}

fn table(action: Option<Action>, e: &Error) -> (i64, Option<i64>, &'static str, String) {
    use Error::*;
    let param = |m, d, t: &str| (4000, Some(m), d, t.to_string());
    let failed = |m, d, t: &str| (5100, Some(m), d, t.to_string());
    match e {
        MissingParameter(name) => (4000, None, "MissingParameter", format!("缺少参数: {name}")),
        // Named by `param` before the table is read.
        MissingField(field) => (4000, None, "MissingParameter", format!("缺少参数: {field}")),
        InvalidField { field, reason } => (
            4000,
            Some(11201),
            "InvalidParameter",
            format!("业务参数错误: {field}: {reason}"),
        ),
        InvalidParameter { name, reason } => (
            4000,
            Some(11201),
            "InvalidParameter",
            format!("业务参数错误: {name}: {reason}"),
        ),
        UnknownAction(a) => (4000, None, "InvalidAction", format!("Action {a:?} 不存在")),
        Unsupported(a) => (6100, None, "UnsupportedOperation", format!("本版本内不支持此接口: {a}")),
        UnsupportedRegion(r) => (4000, None, "InvalidParameter", format!("不支持的地域: {r}")),
        SignatureMismatch => (4100, None, "AuthFailure.SignatureFailure", "身份验证失败，签名不正确".into()),
        MalformedAuthorization(why) => (4100, None, "AuthFailure.InvalidAuthorization", format!("身份验证失败: {why}")),
        SecretIdNotFound => (4104, None, "AuthFailure.SecretIdNotFound", "SecretId 不存在".into()),
        RateLimited(a) => (4400, None, "RequestLimitExceeded", format!("请求的次数超过了配额限制: {a}")),
        StaleRequest(why) | NonceReused(why) => {
            (4500, None, "RequestReplay", format!("重放攻击: {why}"))
        }

        NoRedisService(_) => failed(10000, "NoRedisService", "请求的区域暂时不提供redis服务"),
        NoTypeIdRedisService { .. } => {
            failed(11062, "NoTypeIdRedisService", "请求的区域暂时不提供请求类型的redis服务")
        }
        InvalidInstanceType(_) => param(
            11053,
            "InvalidInstanceType",
            "请求购买的实例类型错误（TypeId 1:集群版；2:主从版,即原主从版）",
        ),
        InvalidMemSize(_) => param(
            10703,
            "InvalidMemSize",
            "请求的容量不在售卖规格中（memSize应为1024的整数倍，单位：MB）",
        ),
        MemSizeNotInRange { min, max, .. } => param(
            11063,
            "MemSizeNotInRange",
            &format!("请求的容量不在售卖容量范围内 [{min}, {max}] MB"),
        ),
        PeriodExceedMaxLimit(_) => param(11065, "PeriodExceedMaxLimit", "购买时长超过最大时长限制"),
        PeriodLessThanMinLimit(_) => param(11066, "PeriodLessThanMinLimit", "购买时长小于最小时长限制"),
        GoodsNumNotInRange { min, max, .. } => param(
            11064,
            "GoodsNumNotInRange",
            &format!("一次购买的实例数超过售卖数量限制 [{min}, {max}]"),
        ),
        InvalidSubnetId(_) => param(11054, "InvalidSubnetId", "vpc网络下的子网id不存在"),
        BalanceNotEnough { needed, available } => (
            5300,
            Some(100207),
            "OperationConstraints.AccountBalanceNotEnough",
            format!("账号余额不足, 请充值 (需要 {needed} 分, 余额 {available} 分)"),
        ),
        NoFreePort => (5200, None, "ResourceInsufficient", "资源不足: 没有可分配的端口".into()),
        NoFreeAddress => (5200, None, "ResourceInsufficient", "资源不足: 没有可分配的地址".into()),

        InstanceNotFound(_) => (5000, Some(10701), "InstanceNotExists", "没有找到serialId对应的实例".into()),
        InstanceDeleted(_) => failed(11055, "InstanceDeleted", "实例到期已被删除"),
        InstanceIsolated(_) => failed(11061, "InstanceIsolated", "实例到期已被隔离"),
        InstanceLocked(_) if action == Some(Action::RenewRedis) => {
            failed(11056, "InstanceBeenLocked", "实例正被其它流程锁定，暂时不能执行该操作")
        }
        InstanceLocked(_) => failed(10707, "InstanceLockedError", "实例已被锁住，暂时不能执行该操作"),
        InstanceStatusAbnormal { .. } => failed(
            10702,
            "InstanceStatusAbnormal",
            "实例状态异常,暂时不能执行该操作（比如：流程中或已隔离或已删除）",
        ),
        ReduceCapacityNotAllowed { .. } => failed(
            11057,
            "ReduceCapacityNotAllowed",
            "请求容量小于实例实际容量，暂不支持缩容",
        ),
        AutoRenewFlag(_) => param(
            11060,
            "IsAutoRenewError",
            "自动续费标识错误(0 - 不设置自动续费，实例到期会通知；1 - 设置自动续费，到期会自动续费；2 - 到期不续费也不通知)",
        ),
        InstanceNameTooLong => param(11211, "InstanceNameExceedMaxLimit", "实例名称长度超过最大限制"),
        InstanceNameRule => param(
            11212,
            "InstanceNameRuleError",
            "实例名称不符合规则:1-36个字母、数字、非符号中文、_、-",
        ),
        PasswordEmpty => param(10501, "PasswordEmpty", "密码为空"),
        PasswordRule | Api3PasswordRule => param(
            11058,
            "PasswordRuleError",
            "密码规则错误，密码必须是8-16位字符，且至少包含字母、数字和字符（!@#%^*()）中的两种",
        ),
        OldPasswordWrong => failed(10502, "OldPasswordError", "重置密码时，旧密码错误"),
        PasswordWrong => failed(10712, "PasswordError", "实例密码错误"),
        DealNotFound(_) => (5000, Some(11059), "DealIdNotFound", "订单号不存在".into()),
        TaskNotFound(id) => param(11201, "InvalidParameter", &format!("业务参数错误: 任务 {id} 不存在")),
        BackupNotFound(_) => (5000, Some(11213), "BackupNotExists", "根据backupId，没有找到实例对应的备份".into()),
        BackupStatusAbnormal(_) if action == Some(Action::ExportRedisBackup) => failed(
            10711,
            "BackupStatusInvalid",
            "备份状态无效（集群版只能导出状态为2的备份）",
        ),
        BackupStatusAbnormal(_) => failed(10711, "BackupStatusAbnormal", "备份状态异常，暂不能执行该操作"),
        BackupLocked(_) => failed(10710, "BackupLockedError", "备份已被其它任务锁住，暂时不能执行该操作"),
        ExportNeedsCluster => failed(
            11214,
            "OnlyClusterInstanceCanExportBackup",
            "只有集群版的实例才支持导出备份",
        ),
        BackupQuotaExceeded { limit } => (
            4400,
            None,
            "RequestLimitExceeded",
            format!("超过配额: 每个实例每天最多手动备份 {limit} 次"),
        ),
        BackupCorrupt(_) => failed(10711, "BackupStatusAbnormal", "备份文件校验失败，暂不能执行该操作"),
        Internal(_) => (6000, None, "InternalError", "服务器内部错误".into()),
        RequestTooLarge { what, limit } => (
            4000,
            None,
            "RequestSizeLimitExceeded",
            format!("请求包超过限制大小: {what} 超过 {limit} 字节"),
        ),
        ServerBusy => (6000, None, "ServiceUnavailable", "服务繁忙，请稍后重试".into()),
        DiskSpaceLow => (
            5100,
            None,
            "ResourceInsufficient",
            "资源操作失败: 服务器磁盘剩余空间不足，请稍后重试或者联系客服人员".into(),
        ),
        // v2 sends no shard or replica count (its instances are bought with one replica and
        // changed by memSize alone); should a spec rule refuse one, it is a parameter error.
        ReplicasNotInRange { num, min, max } => param(
            11201,
            "InvalidParameter",
            &format!("业务参数错误: 副本数 {num} 不在 [{min}, {max}] 范围内"),
        ),
        ShardsNotOffered(n) => param(
            11201,
            "InvalidParameter",
            &format!("业务参数错误: 分片数 {n} 不支持"),
        ),
        SpecChangeNotOne => param(
            11201,
            "InvalidParameter",
            "业务参数错误: 每次只能修改内存、分片数和副本数其中的一个",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_errors_use_the_documented_form() {
        let v = render(Some(Action::ClearRedis), &Error::PasswordWrong);
        assert_eq!(v["code"], 5100);
        assert_eq!(v["codeDesc"], "PasswordError");
        assert_eq!(v["message"], "(10712)实例密码错误");
        let v = render(
            Some(Action::RenewRedis),
            &Error::InstanceLocked("crs-1".into()),
        );
        assert_eq!(v["message"].as_str().unwrap().get(..7), Some("(11056)"));
        let v = render(
            Some(Action::ClearRedis),
            &Error::InstanceLocked("crs-1".into()),
        );
        assert_eq!(v["message"].as_str().unwrap().get(..7), Some("(10707)"));
        let v = render(
            Some(Action::CreateRedis),
            &Error::BalanceNotEnough {
                needed: 1,
                available: 0,
            },
        );
        assert_eq!(
            v["codeDesc"],
            "OperationConstraints.AccountBalanceNotEnough"
        );
    }

    #[test]
    fn the_service_fields_are_named_as_v2_names_them() {
        let v = render(None, &Error::MissingField(Field::InstanceId));
        assert_eq!(
            (v["code"].as_i64(), &v["message"]),
            (Some(4000), &json!("缺少参数: redisId"))
        );
        let v = render(None, &Error::invalid_field(Field::VpcId, "too long"));
        assert_eq!(v["codeDesc"], "InvalidParameter");
        assert_eq!(v["message"], "(11201)业务参数错误: unVpcId: too long");
    }

    #[test]
    fn internal_detail_is_not_sent() {
        let v = render(
            Some(Action::DescribeRedis),
            &Error::Internal("secret path /x".into()),
        );
        assert_eq!(v["code"], 6000);
        assert!(!v.to_string().contains("/x"));
    }
}
