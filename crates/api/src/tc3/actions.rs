//! The API 3.0 actions: the models' names parsed once into [`Action`], the API each belongs
//! to ([`Api`]: redis, or Cloud Monitor for the charts' data), and which of them only read
//! (the replay rule). Their handlers are in `handlers`.

/// Whether an action only reads, so that a request with a used signature may be answered (see
/// `guard`). The redis model names such actions Describe* or InquiryPrice*; DescribeBackupUrl
/// is not one: it mints download links. Cloud Monitor's GetMonitorData only reads.
pub fn reads_only(action: &str) -> bool {
    ((action.starts_with("Describe") || action.starts_with("InquiryPrice"))
        && action != "DescribeBackupUrl")
        || action == "GetMonitorData"
}

/// The APIs answered on `/`, told apart by the service a TC3 credential scope names; each has
/// one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `redis`, 2018-04-12: every action but Cloud Monitor's.
    Redis,
    /// `monitor`, 2018-07-24: GetMonitorData, the charts' data.
    Monitor,
}

impl Api {
    /// The API a credential scope's service names; `None` for any other service.
    pub fn of_service(service: &str) -> Option<Api> {
        match service {
            crate::sign_tc3::SERVICE => Some(Api::Redis),
            crate::sign_tc3::MONITOR_SERVICE => Some(Api::Monitor),
            _ => None,
        }
    }

    /// The one version of the API this dialect speaks.
    pub fn version(self) -> &'static str {
        match self {
            Api::Redis => super::VERSION,
            Api::Monitor => "2018-07-24",
        }
    }
}

/// The actions of the redis 2018-04-12 model (RedisClient), parsed once from the action's
/// name: those this version carries out, each with its handler, and the model's others, which
/// answer UnsupportedOperation naming themselves. A name outside the model is InvalidAction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
pub enum Action {
    DescribeInstances,
    DescribeInstanceBackups,
    ManualBackupInstance,
    DescribeBackupUrl,
    RestoreInstance,
    DescribeTaskInfo,
    DescribeTaskList,
    ClearInstance,
    ModifyInstance,
    /// The model has both spellings.
    #[strum(
        to_string = "ModifyInstancePassword",
        serialize = "ModfiyInstancePassword"
    )]
    ModifyInstancePassword,
    ResetPassword,
    DescribeProductInfo,
    InquiryPriceCreateInstance,
    CreateInstances,
    InquiryPriceRenewInstance,
    InquiryPriceUpgradeInstance,
    DescribeInstanceDealDetail,
    DescribeAutoBackupConfig,
    ModifyAutoBackupConfig,
    DescribeSlowLog,
    DescribeInstanceNodeInfo,
    DescribeInstanceZoneInfo,
    DescribeInstanceShards,
    DescribeInstanceParams,
    ModifyInstanceParams,
    DestroyPrepaidInstance,
    DestroyPostpaidInstance,
    StartupInstance,
    CleanUpInstance,
    RenewInstance,
    UpgradeInstance,
    ChangeReplicaToMaster,
    KillMasterGroup,
    DescribeInstanceMonitorTopNCmd,
    DescribeInstanceMonitorTopNCmdTook,
    DescribeInstanceMonitorTookDist,
    DescribeInstanceMonitorSIP,
    DescribeInstanceMonitorBigKey,
    DescribeInstanceMonitorBigKeySizeDist,
    DescribeInstanceMonitorBigKeyTypeDist,
    DescribeInstanceMonitorHotKey,
    /// Cloud Monitor's (`Api::Monitor`): an instance's figures over time.
    GetMonitorData,
    /// An action of the model this version does not carry out.
    #[strum(disabled)]
    Unsupported(&'static str),
}

impl Action {
    /// The action's name in the model (the first spelling of those with two).
    pub fn name(self) -> &'static str {
        match self {
            Action::Unsupported(name) => name,
            carried_out => carried_out.into(),
        }
    }

    /// The API the action belongs to.
    pub fn api(self) -> Api {
        match self {
            Action::GetMonitorData => Api::Monitor,
            _ => Api::Redis,
        }
    }

    /// The action a name of the model stands for; `None` outside the model.
    pub fn parse(name: &str) -> Option<Action> {
        name.parse().ok().or_else(|| {
            NOT_CARRIED_OUT
                .iter()
                .find(|a| **a == name)
                .map(|a| Action::Unsupported(a))
        })
    }
}

/// The model's actions this version does not carry out.
const NOT_CARRIED_OUT: &[&str] = &[
    "AddReplicationInstance",
    "AllocateWanAddress",
    "ApplyParamsTemplate",
    "AssociateSecurityGroups",
    "ChangeInstanceRole",
    "ChangeMasterInstance",
    "CloneInstances",
    "CloseLog",
    "CloseSSL",
    "CreateExportTask",
    "CreateInstanceAccount",
    "CreateParamTemplate",
    "CreateReplicationGroup",
    "DeleteExportTask",
    "DeleteInstanceAccount",
    "DeleteParamTemplate",
    "DeleteReplicationInstance",
    "DescribeBackupDetail",
    "DescribeBackupDownloadRestriction",
    "DescribeBackupEncryptConfig",
    "DescribeBandwidthRange",
    "DescribeCommonDBInstances",
    "DescribeDBSecurityGroups",
    "DescribeExportTasks",
    "DescribeGlobalReplicationArea",
    "DescribeInstanceAccount",
    "DescribeInstanceDTSInfo",
    "DescribeInstanceEvents",
    "DescribeInstanceLogDelivery",
    "DescribeInstanceParamRecords",
    "DescribeInstancePasswordPolicy",
    "DescribeInstanceSecurityGroup",
    "DescribeInstanceSpecBandwidth",
    "DescribeInstanceSupportFeature",
    "DescribeLogInstanceList",
    "DescribeLogs",
    "DescribeMaintenanceWindow",
    "DescribeParamTemplateInfo",
    "DescribeParamTemplates",
    "DescribeProjectSecurityGroup",
    "DescribeProjectSecurityGroups",
    "DescribeProxySlowLog",
    "DescribeRedisClusterOverview",
    "DescribeRedisClusters",
    "DescribeReplicationGroup",
    "DescribeReplicationGroupInstance",
    "DescribeSSLStatus",
    "DescribeSecondLevelBackupInfo",
    "DescribeTendisSlowLog",
    "DisableReplicaReadonly",
    "DisassociateSecurityGroups",
    "EnableReplicaReadonly",
    "ModifyBackupDownloadRestriction",
    "ModifyBackupEncrypt",
    "ModifyConnectionConfig",
    "ModifyDBInstanceSecurityGroups",
    "ModifyInstanceAccount",
    "ModifyInstanceAvailabilityZones",
    "ModifyInstanceBackupMode",
    "ModifyInstanceChargeType",
    "ModifyInstanceEvent",
    "ModifyInstanceLogDelivery",
    "ModifyInstancePasswordPolicy",
    "ModifyInstanceReadOnly",
    "ModifyLog",
    "ModifyMaintenanceWindow",
    "ModifyNetworkConfig",
    "ModifyParamTemplate",
    "ModifyReplicationGroup",
    "OpenLog",
    "OpenSSL",
    "ReleaseWanAddress",
    "RemoveReplicationGroup",
    "RemoveReplicationInstance",
    "SwitchAccessNewInstance",
    "SwitchInstanceVip",
    "SwitchProxy",
    "UpgradeInstanceProductVersion",
    "UpgradeInstanceVersion",
    "UpgradeProxyVersion",
    "UpgradeSmallVersion",
    "UpgradeVersionToMultiAvailabilityZones",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_the_model_parses_and_no_other() {
        assert_eq!(
            Action::parse("DescribeInstances"),
            Some(Action::DescribeInstances)
        );
        // Both spellings the model has.
        for name in ["ModifyInstancePassword", "ModfiyInstancePassword"] {
            assert_eq!(Action::parse(name), Some(Action::ModifyInstancePassword));
        }
        // Every action has one name of the model (the metrics' label).
        assert_eq!(
            Action::ModifyInstancePassword.name(),
            "ModifyInstancePassword"
        );
        assert_eq!(Action::DescribeInstances.name(), "DescribeInstances");
        for name in NOT_CARRIED_OUT {
            assert_eq!(Action::parse(name).map(Action::name), Some(*name));
        }
        assert_eq!(
            Action::parse("AllocateWanAddress"),
            Some(Action::Unsupported("AllocateWanAddress"))
        );
        for name in ["DescribeFooBar", "describeinstances", "", "Unsupported"] {
            assert_eq!(Action::parse(name), None, "{name:?}");
        }
        assert_eq!(
            Action::parse("GetMonitorData").map(Action::api),
            Some(Api::Monitor)
        );
        assert_eq!(Action::DescribeInstances.api(), Api::Redis);
        assert!(reads_only("GetMonitorData") && reads_only("DescribeInstances"));
        assert!(!reads_only("DescribeBackupUrl") && !reads_only("ManualBackupInstance"));
        // A name carried out is not also listed as not carried out.
        for name in NOT_CARRIED_OUT {
            assert!(name.parse::<Action>().is_err(), "{name}");
        }
    }
}
