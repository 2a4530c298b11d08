//! The one domain error enum.
//!
//! Variants are named after what went wrong, never after a dialect's code. Each dialect has
//! exactly one table from variant to its own code (see `crsd-api`). The `Display` text is the
//! external message, safe to show to a client; internal detail (causes) travels in
//! [`Error::Internal`] and is logged where it is handled, never sent.

use crate::Field;
use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    // ---- request shape and authentication (common to every action) ----
    #[error("missing parameter: {0}")]
    MissingParameter(String),
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter { name: String, reason: String },
    #[error("signature verification failed")]
    SignatureMismatch,
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(String),
    #[error("the SecretId does not exist")]
    SecretIdNotFound,
    #[error("request outside the time window: {0}")]
    StaleRequest(String),
    #[error("replayed request: {0}")]
    NonceReused(String),
    #[error("request rate limit exceeded for action {0}")]
    RateLimited(String),
    #[error("unknown action: {0}")]
    UnknownAction(String),
    #[error("action {0} is not supported by this version")]
    Unsupported(String),
    #[error("region {0} is not served here")]
    UnsupportedRegion(String),

    // ---- catalog and purchase ----
    #[error("zone {0} offers no redis service")]
    NoRedisService(i64),
    #[error("zone {zone} does not offer instance type {type_id}")]
    NoTypeIdRedisService { zone: i64, type_id: i64 },
    #[error("invalid instance type {0} (1: cluster, 2: master-replica)")]
    InvalidInstanceType(i64),
    #[error("memSize must be a multiple of 1024 MB, got {0}")]
    InvalidMemSize(i64),
    #[error("memSize {mem} is outside the sellable range [{min}, {max}] MB")]
    MemSizeNotInRange { mem: i64, min: i64, max: i64 },
    #[error("period {0} exceeds the maximum")]
    PeriodExceedMaxLimit(i64),
    #[error("period {0} is below the minimum")]
    PeriodLessThanMinLimit(i64),
    #[error("goodsNum {num} is outside [{min}, {max}]")]
    GoodsNumNotInRange { num: i64, min: i64, max: i64 },
    #[error("subnet {0} does not exist")]
    InvalidSubnetId(String),
    #[error("the account balance is not enough: {needed} cents needed, {available} available")]
    BalanceNotEnough { needed: i64, available: i64 },
    #[error("no free port left in the configured range")]
    NoFreePort,
    #[error("no free address left in the configured address pool")]
    NoFreeAddress,

    // ---- instances ----
    #[error("instance {0} not found")]
    InstanceNotFound(String),
    #[error("instance {0} has been deleted")]
    InstanceDeleted(String),
    #[error("instance {0} is isolated")]
    InstanceIsolated(String),
    #[error("instance {0} is locked by a running task")]
    InstanceLocked(String),
    #[error("instance {id} status does not allow this operation ({status})")]
    InstanceStatusAbnormal { id: String, status: String },
    #[error("memSize {requested} is not larger than the current {current} MB; shrinking is not supported")]
    ReduceCapacityNotAllowed { requested: i64, current: i64 },
    #[error("isAutoRenew must be 0, 1 or 2, got {0}")]
    AutoRenewFlag(String),
    #[error("instance name is longer than 36 characters")]
    InstanceNameTooLong,
    #[error("instance name may hold only letters, digits, Chinese characters, '_' and '-'")]
    InstanceNameRule,

    // ---- passwords ----
    #[error("password is empty")]
    PasswordEmpty,
    #[error("password must be 8-16 characters with at least two of: letters, digits, !@#%^*()")]
    PasswordRule,
    #[error("password must be 8-64 characters, not start with '/', and hold at least two of: lowercase letters, uppercase letters, digits, ()`~!@#$%^&*-+=_|{{}}[]:;<>,.?/")]
    Api3PasswordRule,
    #[error("the old password is wrong")]
    OldPasswordWrong,
    #[error("the instance password is wrong")]
    PasswordWrong,

    // ---- deals and tasks ----
    #[error("deal {0} not found")]
    DealNotFound(String),
    #[error("task {0} not found")]
    TaskNotFound(i64),

    // ---- backups ----
    #[error("backup {0} not found for this instance")]
    BackupNotFound(String),
    #[error("backup {0} status does not allow this operation")]
    BackupStatusAbnormal(String),
    #[error("backup {0} is locked by another task")]
    BackupLocked(String),
    #[error("only cluster instances can export backups")]
    ExportNeedsCluster,
    #[error("at most {limit} manual backups of an instance a day")]
    BackupQuotaExceeded { limit: i64 },
    #[error("the backup file does not match its record: {0}")]
    BackupCorrupt(String),

    // ---- everything else ----
    #[error("internal error")]
    Internal(String),

    // ---- the listener's limits (refused before the request is read in full) ----
    /// The request's `what` (body, query string) is larger than crsd accepts.
    #[error("request too large: the {what} exceeds {limit} bytes")]
    RequestTooLarge { what: String, limit: u64 },
    /// crsd holds as many request bodies as it allows at once; try again shortly.
    #[error("the service is busy; try again shortly")]
    ServerBusy,
    /// The host keeps a reserve of free disk space (for the metadata database and the
    /// instances' append-only files); an operation that would eat into it is refused.
    #[error("not enough free disk space on the server for this operation now; try again later")]
    DiskSpaceLow,

    // ---- an instance's spec: memory, shards, replicas (see `spec`) ----
    /// A replica count the product does not sell.
    #[error("replica count {num} is outside [{min}, {max}]")]
    ReplicasNotInRange { num: i64, min: i64, max: i64 },
    /// A shard count the product does not sell (a standard instance is one shard; the
    /// cluster edition sells the counts its catalog lists).
    #[error("shard count {0} is not offered for this instance type")]
    ShardsNotOffered(i64),
    /// A spec change changes one of memory, shards and replicas; the others carry their
    /// current values.
    #[error("change one of the memory size, the shard count and the replica count at a time (the others carry their current values)")]
    SpecChangeNotOne,

    // ---- the service's words for request fields (each dialect names its parameter) ----
    /// A field the request must give is missing; rendered as the dialect's MissingParameter.
    #[error("missing parameter: {0}")]
    MissingField(Field),
    /// A field's value is refused; rendered as the dialect's InvalidParameter.
    #[error("invalid parameter {field}: {reason}")]
    InvalidField { field: Field, reason: String },
}

impl Error {
    /// A parameter the dialect names (the service names fields: [`Error::invalid_field`]).
    pub fn invalid(name: &str, reason: impl Into<String>) -> Error {
        Error::InvalidParameter {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    pub fn invalid_field(field: Field, reason: impl Into<String>) -> Error {
        Error::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    /// A rule's refusal of a value (`InvalidParameter`, whatever it called it) as a refusal of
    /// `field`; other errors unchanged.
    pub fn for_field(self, field: Field) -> Error {
        match self {
            Error::InvalidParameter { reason, .. } => Error::InvalidField { field, reason },
            other => other,
        }
    }

    /// The error with its fields named as a dialect names its parameters: `MissingField` and
    /// `InvalidField` become `MissingParameter` and `InvalidParameter`, so a dialect's table
    /// renders them with the codes it documents for those.
    pub fn named(self, name: impl Fn(Field) -> &'static str) -> Error {
        match self {
            Error::MissingField(field) => Error::MissingParameter(name(field).to_string()),
            Error::InvalidField { field, reason } => Error::InvalidParameter {
                name: name(field).to_string(),
                reason,
            },
            other => other,
        }
    }

    /// An internal failure: `detail` is logged by whoever renders it, never sent to clients.
    pub fn internal(detail: impl std::fmt::Display) -> Error {
        Error::Internal(detail.to_string())
    }

    /// The text a tenant may see (a failed task's message): the `Display` text, except for
    /// variants that carry internal detail (server paths, tool output, database errors).
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error".to_string(),
            Error::BackupCorrupt(_) => "the backup file does not match its record".to_string(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_messages_carry_no_detail() {
        let detail = "/srv/crsd/data/crsd.db: database or disk is full";
        assert_eq!(Error::internal(detail).public_message(), "internal error");
        let corrupt = Error::BackupCorrupt(format!("reading {detail}"));
        assert!(!corrupt.public_message().contains('/'));
        assert_eq!(
            Error::InstanceLocked("crs-1".into()).public_message(),
            Error::InstanceLocked("crs-1".into()).to_string()
        );
    }
}
