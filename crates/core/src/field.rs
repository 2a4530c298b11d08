//! The domain things a request names (an instance id, a deal id, a page's limit...), which the
//! service refers to in its errors.
//!
//! Why: each dialect calls the same thing by its own parameter name (v2 `redisId`, API 3.0
//! `InstanceId`, Capital Online `InstanceUuid`). The service names the thing
//! ([`crate::Error::MissingField`], [`crate::Error::InvalidField`]) and each dialect's error
//! table names its parameter, so no dialect's words live in the service.

/// A domain thing a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// One instance's id.
    InstanceId,
    /// A list of instance ids.
    InstanceIds,
    /// A list of deal ids.
    DealIds,
    /// One backup's id.
    BackupId,
    /// The project an instance belongs to.
    ProjectId,
    /// The client's VPC id, as text.
    VpcId,
    /// The client's subnet id, as text.
    SubnetId,
    /// The port an instance listens on.
    Port,
    /// A backup's remark.
    Remark,
    /// The most rows of a page.
    Limit,
    /// The first row of a page.
    Offset,
    /// The start of a time range.
    BeginTime,
    /// The end of a time range.
    EndTime,
    /// One replica group (a node's group of a standard instance).
    ReplicaGroup,
    /// The seconds one point of a time series covers.
    Period,
}

impl std::fmt::Display for Field {
    /// The domain word, for logs and tests; clients read their dialect's parameter name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::InstanceId => "instance id",
            Field::InstanceIds => "instance ids",
            Field::DealIds => "deal ids",
            Field::BackupId => "backup id",
            Field::ProjectId => "project id",
            Field::VpcId => "VPC id",
            Field::SubnetId => "subnet id",
            Field::Port => "port",
            Field::Remark => "remark",
            Field::Limit => "page limit",
            Field::Offset => "page offset",
            Field::BeginTime => "begin time",
            Field::EndTime => "end time",
            Field::ReplicaGroup => "replica group",
            Field::Period => "period",
        })
    }
}
