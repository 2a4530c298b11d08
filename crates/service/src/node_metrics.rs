//! Per-node metrics for Prometheus: which nodes the host's redis exporter scrapes, and the
//! service-discovery list that tells Prometheus about them.
//!
//! The exporter (see the engine's `exporter.rs`) scrapes a node only when Prometheus asks it
//! `/scrape?target=redis://<node>`; Prometheus learns the nodes from crsd's metrics listener
//! (`/sd/nodes`, the `http_sd_configs` format): one group per node, the exporter as its
//! target, the node's URI as the `target` parameter, and labels that say whose node it is
//! (instance id and name, account, role, shard). Both lists come from the same query: the
//! nodes of the instances whose processes run (running, or busy with a task). The supervisor
//! brings the exporter to that list on each pass, so a new node is scrapable within a pass
//! and a deleted one is forgotten; the listing is read at each discovery request.

use std::collections::BTreeMap;

use crsd_core::model::{Instance, InstanceStatus, NodeRole};
use crsd_core::Result;
use crsd_engine::{internal_secret, ExporterTarget, EXPORTER_USER};
use serde::Serialize;

use crate::steps::engine_err;
use crate::Service;

/// One group of Prometheus' HTTP service discovery: targets and their labels.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiscoveryGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Service {
    /// The instances whose nodes run and are scraped.
    async fn scraped_instances(&self) -> Result<Vec<Instance>> {
        Ok(self
            .store
            .live_instances()
            .await?
            .into_iter()
            .filter(|i| matches!(i.status, InstanceStatus::Running | InstanceStatus::Busy))
            .collect())
    }

    fn exporter_target(&self, inst: &Instance, node: &crsd_core::model::Node) -> ExporterTarget {
        ExporterTarget::new(
            &self.node_host(node),
            node.port,
            internal_secret(&inst.admin_secret, EXPORTER_USER),
        )
    }

    /// Brings the exporter to the nodes that run now (started if it does not run, restarted
    /// when they changed). True if it started. Without an exporter configured, nothing.
    pub async fn publish_exporter_targets(&self) -> Result<bool> {
        let Some(exporter) = &self.exporter else {
            return Ok(false);
        };
        let mut targets = Vec::new();
        for inst in self.scraped_instances().await? {
            for node in &inst.nodes {
                targets.push(self.exporter_target(&inst, node));
            }
        }
        exporter.apply(&targets).await.map_err(engine_err)
    }

    /// `/sd/nodes`: a group per running node, the exporter its target (empty without an
    /// exporter).
    pub async fn node_discovery(&self) -> Result<Vec<DiscoveryGroup>> {
        let Some(exporter) = &self.exporter else {
            return Ok(Vec::new());
        };
        let mut groups = Vec::new();
        for inst in self.scraped_instances().await? {
            for node in &inst.nodes {
                let target = self.exporter_target(&inst, node);
                let address = target
                    .uri
                    .strip_prefix("redis://")
                    .unwrap_or(&target.uri)
                    .to_string();
                let role = match node.role {
                    NodeRole::Master => "master",
                    NodeRole::Replica => "replica",
                };
                let labels = BTreeMap::from([
                    ("__metrics_path__".to_string(), "/scrape".to_string()),
                    ("__param_target".to_string(), target.uri.clone()),
                    // The node, not the exporter every node shares.
                    ("instance".to_string(), address),
                    ("instance_id".to_string(), inst.id.clone()),
                    ("instance_name".to_string(), inst.name.clone()),
                    ("app_id".to_string(), inst.app_id.to_string()),
                    ("node".to_string(), node.id.clone()),
                    ("node_role".to_string(), role.to_string()),
                    ("shard".to_string(), node.shard.to_string()),
                ]);
                groups.push(DiscoveryGroup {
                    targets: vec![exporter.listen().to_string()],
                    labels,
                });
            }
        }
        Ok(groups)
    }
}
