//! The one table from domain error to API 3.0 error codes (`Response.Error.Code`), using the
//! codes the redis 2018-04-12 model documents (seed 004 lists RestoreInstance's) and the
//! common ones (AuthFailure.*, MissingParameter, RequestLimitExceeded, InternalError, ...).

use crsd_core::{Error, Field};

/// API 3.0's name for a field the service names.
fn param(field: Field) -> &'static str {
    match field {
        Field::InstanceId => "InstanceId",
        Field::InstanceIds => "InstanceIds",
        Field::DealIds => "DealIds",
        Field::BackupId => "BackupId",
        Field::ProjectId => "ProjectId",
        Field::VpcId => "VpcId",
        Field::SubnetId => "SubnetId",
        Field::Port => "VPort",
        Field::Remark => "Remark",
        Field::Limit => "Limit",
        Field::Offset => "Offset",
        Field::BeginTime => "BeginTime",
        Field::EndTime => "EndTime",
        Field::ReplicaGroup => "GroupId",
        Field::Period => "Period",
    }
}

/// `(Code, Message)` for an error.
pub fn code(e: &Error) -> (&'static str, String) {
    use Error::*;
    let e = &e.clone().named(param);
    let msg = e.to_string();
    let code = match e {
        MissingParameter(_) | MissingField(_) => "MissingParameter",
        InvalidParameter { .. } | InvalidField { .. } => "InvalidParameterValue",
        SignatureMismatch => "AuthFailure.SignatureFailure",
        MalformedAuthorization(_) => "AuthFailure.InvalidAuthorization",
        SecretIdNotFound => "AuthFailure.SecretIdNotFound",
        StaleRequest(_) => "AuthFailure.SignatureExpire",
        NonceReused(_) => "AuthFailure.InvalidAuthorization",
        RateLimited(_) => "RequestLimitExceeded",
        UnknownAction(_) => "InvalidAction",
        Unsupported(_) => "UnsupportedOperation",
        UnsupportedRegion(_) => "UnsupportedRegion",
        NoRedisService(_) | NoTypeIdRedisService { .. } | InvalidInstanceType(_) => {
            "InvalidParameterValue.SpecNotExist"
        }
        InvalidMemSize(_) | MemSizeNotInRange { .. } => "InvalidParameterValue.SpecNotExist",
        PeriodExceedMaxLimit(_) | PeriodLessThanMinLimit(_) => "InvalidParameterValue.Period",
        GoodsNumNotInRange { .. } => "InvalidParameterValue",
        InvalidSubnetId(_) => "InvalidParameterValue.SubnetNotExist",
        BalanceNotEnough { .. } => "UnauthorizedOperation.NotEnoughAmount",
        NoFreePort | NoFreeAddress => "ResourceInsufficient",
        InstanceNotFound(_) | InstanceDeleted(_) => "ResourceNotFound.InstanceNotExists",
        InstanceIsolated(_) | InstanceStatusAbnormal { .. } => {
            "ResourceUnavailable.InstanceStatusAbnormal"
        }
        InstanceLocked(_) => "ResourceUnavailable.InstanceLockedError",
        ReduceCapacityNotAllowed { .. } => "InvalidParameterValue.ReduceCapacityNotAllowed",
        AutoRenewFlag(_) => "InvalidParameterValue",
        InstanceNameTooLong | InstanceNameRule => "InvalidParameterValue.InstanceNameRuleError",
        PasswordEmpty => "InvalidParameterValue.PasswordEmpty",
        PasswordRule | Api3PasswordRule => "InvalidParameterValue.PasswordRuleError",
        OldPasswordWrong | PasswordWrong => "InvalidParameterValue.PasswordError",
        DealNotFound(_) => "ResourceNotFound",
        TaskNotFound(_) => "ResourceNotFound",
        BackupNotFound(_) => "InvalidParameterValue.BackupNotExists",
        BackupStatusAbnormal(_) | BackupCorrupt(_) => "ResourceUnavailable.BackupStatusAbnormal",
        BackupLocked(_) => "ResourceUnavailable.BackupLockedError",
        ExportNeedsCluster => "UnsupportedOperation.OnlyClusterInstanceCanExportBackup",
        BackupQuotaExceeded { .. } => "RequestLimitExceeded",
        Internal(_) => "InternalError",
        RequestTooLarge { .. } => "RequestSizeLimitExceeded",
        ServerBusy => "ServiceUnavailable",
        DiskSpaceLow => "ResourceInsufficient",
        ReplicasNotInRange { .. } | ShardsNotOffered(_) | SpecChangeNotOne => {
            "InvalidParameterValue"
        }
    };
    // The spec's fields by the names of this dialect (CreateInstances, UpgradeInstance).
    let msg = match e {
        Internal(_) => "internal error".to_string(),
        ReplicasNotInRange { num, min, max } => {
            format!("RedisReplicasNum {num} is outside [{min}, {max}]")
        }
        ShardsNotOffered(n) => {
            format!("RedisShardNum {n} is not offered for this TypeId (DescribeProductInfo lists the ShardNum values)")
        }
        SpecChangeNotOne => "change one of MemSize, RedisShardNum and RedisReplicasNum at a time; \
            the other two carry the instance's current values"
            .to_string(),
        _ => msg,
    };
    (code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_refusals_name_this_dialects_fields() {
        let (c, m) = code(&Error::ReplicasNotInRange {
            num: 6,
            min: 1,
            max: 5,
        });
        assert_eq!(
            (c, m.as_str()),
            (
                "InvalidParameterValue",
                "RedisReplicasNum 6 is outside [1, 5]"
            )
        );
        let (c, m) = code(&Error::ShardsNotOffered(3));
        assert_eq!(c, "InvalidParameterValue");
        assert!(m.starts_with("RedisShardNum 3 "), "{m}");
        let (c, m) = code(&Error::SpecChangeNotOne);
        assert_eq!(c, "InvalidParameterValue");
        for field in ["MemSize", "RedisShardNum", "RedisReplicasNum"] {
            assert!(m.contains(field), "{m}");
        }
    }
}
