//! The one table from domain error to the Capital Online dialect's HTTP status and `Code`.
//!
//! The documented codes: 400 ArgMissing / InvalidParameter / BadArgs / UnsupportedOperation,
//! 404 ResourceNotFound, 409 ResourceInUse, 500 InternalError / CreateOrderExcept. The API
//! documents no code for authentication failures; crsd answers those 401 with the names
//! clients of this signature family know (InvalidAccessKeyId, SignatureDoesNotMatch,
//! SignatureNonceUsed, InvalidTimeStamp.Expired), too many requests 429 Throttling, a request
//! over the listener's size limits 413 InvalidParameter and a full body budget 503
//! ServiceUnavailable.

use axum::http::StatusCode;
use crsd_core::{Error, Field};

/// This dialect's name for a field the service names.
fn param(field: Field) -> &'static str {
    match field {
        Field::InstanceId | Field::InstanceIds => "InstanceUuid",
        Field::DealIds => "DealIds",
        Field::BackupId => "BackupId",
        Field::ProjectId => "ProjectId",
        Field::VpcId => "VdcId",
        Field::SubnetId => "BasePipeId",
        Field::Port => "ServicePort",
        Field::Remark => "Desc",
        Field::Limit => "Limit",
        Field::Offset => "Offset",
        Field::BeginTime => "StartTime",
        Field::EndTime => "EndTime",
        Field::ReplicaGroup => "GroupId",
        Field::Period => "Period",
    }
}

/// `(HTTP status, Code, Message)` for an error.
pub fn code(e: &Error) -> (StatusCode, &'static str, String) {
    use Error::*;
    let e = &e.clone().named(param);
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    const AUTH: StatusCode = StatusCode::UNAUTHORIZED;
    let (status, code) = match e {
        MissingParameter(_) | MissingField(_) => (BAD, "ArgMissing"),
        InvalidParameter { .. } | InvalidField { .. } => (BAD, "InvalidParameter"),
        SecretIdNotFound => (AUTH, "InvalidAccessKeyId"),
        SignatureMismatch | MalformedAuthorization(_) => (AUTH, "SignatureDoesNotMatch"),
        StaleRequest(_) => (AUTH, "InvalidTimeStamp.Expired"),
        NonceReused(_) => (AUTH, "SignatureNonceUsed"),
        RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "Throttling"),
        UnknownAction(_) => (BAD, "InvalidParameter"),
        Unsupported(_) | ExportNeedsCluster => (BAD, "UnsupportedOperation"),
        UnsupportedRegion(_) => (BAD, "InvalidParameter"),
        NoRedisService(_)
        | NoTypeIdRedisService { .. }
        | InvalidInstanceType(_)
        | InvalidMemSize(_)
        | MemSizeNotInRange { .. }
        | PeriodExceedMaxLimit(_)
        | PeriodLessThanMinLimit(_)
        | GoodsNumNotInRange { .. }
        | InvalidSubnetId(_)
        | AutoRenewFlag(_)
        | InstanceNameTooLong
        | InstanceNameRule
        | PasswordEmpty
        | PasswordRule
        | Api3PasswordRule
        | OldPasswordWrong
        | PasswordWrong => (BAD, "InvalidParameter"),
        // The order could not be placed: the account cannot pay, or the host has no port.
        BalanceNotEnough { .. } | NoFreePort | NoFreeAddress => {
            (StatusCode::INTERNAL_SERVER_ERROR, "CreateOrderExcept")
        }
        InstanceNotFound(_) | InstanceDeleted(_) | DealNotFound(_) | TaskNotFound(_) => {
            (StatusCode::NOT_FOUND, "ResourceNotFound")
        }
        BackupNotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
        InstanceLocked(_) | BackupLocked(_) => (StatusCode::CONFLICT, "ResourceInUse"),
        InstanceIsolated(_)
        | InstanceStatusAbnormal { .. }
        | ReduceCapacityNotAllowed { .. }
        | BackupStatusAbnormal(_)
        | BackupCorrupt(_)
        | BackupQuotaExceeded { .. } => (BAD, "UnsupportedOperation"),
        Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        RequestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "InvalidParameter"),
        ServerBusy => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        // Not possible now (like the daily backup quota): the host's disk reserve.
        DiskSpaceLow => (BAD, "UnsupportedOperation"),
        ReplicasNotInRange { .. } | ShardsNotOffered(_) | SpecChangeNotOne => {
            (BAD, "InvalidParameter")
        }
    };
    let message = match e {
        Internal(_) => "internal error".to_string(),
        _ => e.to_string(),
    };
    (status, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_fields_are_named_as_this_dialect_names_them() {
        let (status, c, message) = code(&Error::invalid_field(Field::Port, "in use"));
        assert_eq!((status, c), (StatusCode::BAD_REQUEST, "InvalidParameter"));
        assert_eq!(message, "invalid parameter ServicePort: in use");
        let (_, c, message) = code(&Error::MissingField(Field::InstanceId));
        assert_eq!(
            (c, message.as_str()),
            ("ArgMissing", "missing parameter: InstanceUuid")
        );
    }
}
