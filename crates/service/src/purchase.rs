//! Buying things: price inquiries, CreateRedis, RenewRedis, UpgradeRedis (a memory resize or
//! a replica change), and the deals they record. Money moves in the same transaction as the
//! deal and the task, so a refusal (too little balance, a bad parameter) changes nothing.
//! Every price is the catalog's price of an instance's [`Spec`].

use crate::Service;
use chrono::{DateTime, Duration, Months, Utc};
use crsd_core::catalog::{ProductType, Zone};
use crsd_core::model::{
    deal_status, BillingMode, Deal, GoodsDetail, Instance, InstanceStatus, Node, NodeRole,
    TaskKind, WARM_FOLDER,
};
use crsd_core::rules::PasswordPolicy;
use crsd_core::spec::{self, Spec, SpecChange, SpecRequest, DEFAULT_REPLICAS};
use crsd_core::{ids, rules, secret, timefmt, Error, Field, Result};
use crsd_engine::CLUSTER_BUS_OFFSET;
use crsd_store::{NewTask, WriteTx};
use serde_json::json;
use std::collections::HashSet;

/// A CreateRedis order, already parsed by a dialect.
#[derive(Debug, Clone)]
pub struct CreateOrder {
    pub zone_id: i64,
    pub type_id: i64,
    pub mem_mb: i64,
    /// Replicas of each shard (API 3.0 `RedisReplicasNum`; one in the other dialects),
    /// within the product's range; charged by the catalog's rule.
    pub replicas: i64,
    /// Shards of a cluster instance (API 3.0 `RedisShardNum`); `None`: the product's
    /// default (one for a standard instance). `mem_mb` is then each shard's memory.
    pub shards: Option<i64>,
    /// `mem_mb` is the total of all shards (v2 `memSize`), split evenly by the catalog's
    /// rule (`ProductType::spec_of_total`); `shards` is then not used.
    pub mem_is_total: bool,
    pub goods_num: i64,
    pub period: i64,
    pub password: String,
    pub project_id: i64,
    pub vpc_id: i64,
    pub un_vpc_id: String,
    pub subnet_id: i64,
    pub un_subnet_id: String,
    /// Instance name; the id when empty.
    pub name: String,
    /// The calling dialect's password rule.
    pub password_policy: PasswordPolicy,
    /// A port the client asked for (one instance only); allocated from the range when None.
    /// With an address pool every instance has an address of its own and this port (or
    /// `default_port`), whatever the range.
    pub port: Option<u16>,
    /// The calling dialect's documented default port (API 3.0 `VPort` 6379, Capital Online
    /// `ServicePort` 9736): the port of an instance on an address of its own.
    pub default_port: u16,
    /// Auto-renew flag of the new instances (0 manual, 1 auto, 2 never).
    pub auto_renew: i64,
    /// Prepaid for `period` months, or postpaid (charged by the hour; `period` unused).
    pub billing: BillingMode,
    /// A password-less instance (API 3.0 `NoAuth`; `password` unused), if the operator
    /// allows it.
    pub no_auth: bool,
}

impl Default for CreateOrder {
    fn default() -> CreateOrder {
        CreateOrder {
            zone_id: 0,
            type_id: 0,
            mem_mb: 0,
            replicas: DEFAULT_REPLICAS,
            shards: None,
            mem_is_total: false,
            goods_num: 0,
            period: 0,
            password: String::new(),
            project_id: 0,
            vpc_id: 0,
            un_vpc_id: String::new(),
            subnet_id: 0,
            un_subnet_id: String::new(),
            name: String::new(),
            password_policy: PasswordPolicy::default(),
            port: None,
            default_port: DEFAULT_POOL_PORT,
            auto_renew: 0,
            billing: BillingMode::default(),
            no_auth: false,
        }
    }
}

/// Deals are payable for 15 days, as the seed's examples show.
const DEAL_OVERDUE_DAYS: i64 = 15;
/// The port of an instance on an address of its own when its dialect has no default (v2).
pub const DEFAULT_POOL_PORT: u16 = 6379;

pub(crate) fn add_months(t: DateTime<Utc>, months: i64) -> DateTime<Utc> {
    t.checked_add_months(Months::new(months.clamp(0, 1200) as u32))
        .unwrap_or(t)
}

impl Service {
    /// DescribeRedisProduct: zones (all, or those named) with the types they sell; `type_id` 0 = all.
    pub fn products(
        &self,
        zone_ids: &[i64],
        type_id: i64,
    ) -> Result<Vec<(Zone, Vec<ProductType>)>> {
        if !(0..=2).contains(&type_id) {
            return Err(Error::invalid("typeId", "must be 0, 1 or 2"));
        }
        Ok(self
            .catalog()
            .zones
            .iter()
            .filter(|z| zone_ids.is_empty() || zone_ids.contains(&z.id))
            .map(|z| {
                let types = z
                    .types
                    .iter()
                    .filter(|t| type_id == 0 || t.type_id == type_id)
                    .filter(|t| crsd_core::catalog::RUNNABLE_TYPES.contains(&t.type_id))
                    .cloned()
                    .collect();
                (z.clone(), types)
            })
            .collect())
    }

    /// InquiryRedisPrice: `goods_num` prepaid instances with one replica.
    pub fn inquiry_price(
        &self,
        zone_id: i64,
        type_id: i64,
        mem_mb: i64,
        goods_num: i64,
        period: i64,
    ) -> Result<i64> {
        let spec = self.order_spec_of_total(zone_id, type_id, mem_mb, DEFAULT_REPLICAS)?;
        self.creation_price(
            zone_id,
            type_id,
            spec,
            goods_num,
            BillingMode::Prepaid,
            period,
        )
    }

    /// The spec a purchase of type `type_id` in `zone_id` asks for (shards: the product's
    /// default when not named), unchecked: [`Service::creation_price`] judges it.
    pub fn order_spec(
        &self,
        zone_id: i64,
        type_id: i64,
        mem_mb: i64,
        shards: Option<i64>,
        replicas: i64,
    ) -> Result<Spec> {
        let (_, product) = self.catalog().product(zone_id, type_id)?;
        Ok(product.spec(mem_mb, shards, replicas))
    }

    /// The spec of a purchase that names its total memory alone (v2), unchecked.
    pub fn order_spec_of_total(
        &self,
        zone_id: i64,
        type_id: i64,
        total_mb: i64,
        replicas: i64,
    ) -> Result<Spec> {
        let (_, product) = self.catalog().product(zone_id, type_id)?;
        Ok(product.spec_of_total(total_mb, replicas))
    }

    /// What a purchase of `goods_num` instances of `spec` charges at creation: `period`
    /// months when prepaid, the first hour when postpaid (`period` is then not used).
    /// CreateRedis/CreateInstances and their inquiries.
    pub fn creation_price(
        &self,
        zone_id: i64,
        type_id: i64,
        spec: Spec,
        goods_num: i64,
        billing: BillingMode,
        period: i64,
    ) -> Result<i64> {
        let (_, product) = self.catalog().product(zone_id, type_id)?;
        product.check_spec(&spec)?;
        product.check_goods_num(goods_num)?;
        match billing {
            BillingMode::Prepaid => {
                self.catalog().check_period(period)?;
                Ok(self.catalog().buy_price(&spec, period, goods_num))
            }
            BillingMode::Postpaid => Ok(self.catalog().hour_price(&spec) * goods_num),
        }
    }

    /// CreateRedis: charges the account (the period, or a postpaid instance's first hour),
    /// records a deal (发货中) and one newInstance task per instance. Returns the deal id.
    pub async fn create(&self, app_id: i64, order: CreateOrder) -> Result<i64> {
        let spec = if order.mem_is_total {
            self.order_spec_of_total(order.zone_id, order.type_id, order.mem_mb, order.replicas)?
        } else {
            self.order_spec(
                order.zone_id,
                order.type_id,
                order.mem_mb,
                order.shards,
                order.replicas,
            )?
        };
        let price = self.creation_price(
            order.zone_id,
            order.type_id,
            spec,
            order.goods_num,
            order.billing,
            order.period,
        )?;
        let (zone, product) = self.catalog().product(order.zone_id, order.type_id)?;
        let cluster = product.is_cluster();
        if cluster && !self.cfg.address_pool.is_empty() {
            return Err(Error::Unsupported(
                "cluster instances on addresses of their own (instances.address_pool)".into(),
            ));
        }
        if order.vpc_id != 0 && order.subnet_id == 0 && order.un_subnet_id.is_empty() {
            return Err(Error::InvalidSubnetId(String::new()));
        }
        if order.no_auth {
            self.check_no_auth_allowed()?;
        } else {
            order.password_policy.check(&order.password)?;
        }
        if !order.name.is_empty() {
            rules::check_instance_name(&order.name)?;
        }
        rules::check_field_text(Field::VpcId, &order.un_vpc_id, rules::MAX_ID_CHARS)?;
        rules::check_field_text(Field::SubnetId, &order.un_subnet_id, rules::MAX_ID_CHARS)?;
        if !(0..=2).contains(&order.auto_renew) {
            return Err(Error::AutoRenewFlag(order.auto_renew.to_string()));
        }
        let now = self.now();
        let (months, deadline) = match order.billing {
            BillingMode::Prepaid => (order.period, add_months(now, order.period)),
            BillingMode::Postpaid => (0, now + Duration::hours(1)),
        };
        // Empty hashes: no password (`nopass`).
        let (password_hash, password_acl) = if order.no_auth {
            (String::new(), String::new())
        } else {
            (
                secret::hash_password(&order.password),
                crsd_engine::acl_sha256_hex(&order.password),
            )
        };

        // How many replicas follow each master (checked against the product above).
        let replicas = order.replicas;
        let mut tx = self.store.write().await?;
        let account = tx.account(app_id).await?.ok_or(Error::SecretIdNotFound)?;
        charge(&mut tx, app_id, account.balance, price).await?;
        let pooled = !self.cfg.address_pool.is_empty();
        let mut used: HashSet<u16> = if pooled {
            HashSet::new()
        } else {
            taken_ports(&mut tx).await?
        };
        // A port a client chose may be a spare frontend's: the instance takes that spare.
        let mut requested_spare = None;
        if let (Some(p), true, false) = (order.port, self.ha().is_some(), pooled) {
            if tx.spare_ports().await?.contains(&p) {
                used.remove(&p);
                requested_spare = Some(p);
            }
        }
        let requested = match (pooled, requested_spare) {
            (true, _) => None,
            (false, Some(p)) => {
                self.check_requested_port_range(p, order.goods_num)?;
                tx.take_spare_port(Some(p)).await?;
                Some(p)
            }
            (false, None) => order
                .port
                .map(|p| self.check_requested_port(&used, p, order.goods_num))
                .transpose()?,
        };
        let used_hosts: HashSet<String> = if pooled {
            tx.used_hosts().await?.into_iter().collect()
        } else {
            HashSet::new()
        };
        let pool_port = order.port.unwrap_or(order.default_port);
        let mut hosts = self.free_hosts(used_hosts, pool_port);
        let taken = used.clone();
        let mut free = self.free_ports(used).filter(move |p| Some(*p) != requested);
        // The cluster buses of the nodes chosen so far: no later port of this purchase.
        let mut buses: HashSet<u16> = HashSet::new();
        let mut instances = Vec::new();
        for n in 0..order.goods_num {
            let id = ids::new_instance_id();
            let (vip, port, nodes) = if pooled {
                // An address for the instance and one for each node, all at the port the
                // client asked for: the master holds the instance's address too.
                let vip = hosts.next().ok_or(Error::NoFreeAddress)?;
                let mut nodes = Vec::new();
                for seq in 0..=replicas {
                    let role = if seq == 0 {
                        NodeRole::Master
                    } else {
                        NodeRole::Replica
                    };
                    let host = hosts.next().ok_or(Error::NoFreeAddress)?;
                    nodes.push(Node::new(&id, seq, role, pool_port).at(host));
                }
                (vip, pool_port, nodes)
            } else {
                // The stable address (the port a client chose, else a spare frontend's: it
                // serves without a proxy reload, else the next free one), then one port per
                // node.
                let port = match requested.filter(|_| n == 0) {
                    Some(p) => Some(p),
                    None if self.ha().is_some() => match tx.take_spare_port(None).await? {
                        Some(p) => Some(p),
                        None => free.find(|p| !buses.contains(p)),
                    },
                    None => free.find(|p| !buses.contains(p)),
                }
                .ok_or(Error::NoFreePort)?;
                // Running nodes from the warm pool when it holds all the instance needs.
                let needed = (spec.shards * (replicas + 1)) as usize;
                let mut warm = if self.warm_wanted(cluster) > 0 {
                    tx.take_warm_nodes(cluster, needed).await?
                } else {
                    Vec::new()
                }
                .into_iter();
                // Shard by shard, its master first: node 0 is shard 0's master.
                let mut nodes = Vec::new();
                for shard in 0..spec.shards {
                    for r in 0..=replicas {
                        let role = if r == 0 {
                            NodeRole::Master
                        } else {
                            NodeRole::Replica
                        };
                        if let Some(w) = warm.next() {
                            let mut node = Node::new(&id, nodes.len() as i64, role, w.port);
                            node.id = w.id;
                            node.shard = shard;
                            node.folder = WARM_FOLDER.to_string();
                            node.warm_secret = w.admin_secret;
                            nodes.push(node);
                            continue;
                        }
                        // A cluster node's bus listens 10000 above its port: free too.
                        let port = if cluster {
                            let port = free.find(|p| {
                                !buses.contains(p)
                                    && p.checked_add(CLUSTER_BUS_OFFSET).is_some_and(|bus| {
                                        !taken.contains(&bus)
                                            && !buses.contains(&bus)
                                            && self.runtime.port_free(bus)
                                    })
                            });
                            if let Some(bus) = port.and_then(|p| p.checked_add(CLUSTER_BUS_OFFSET))
                            {
                                buses.insert(bus);
                            }
                            port
                        } else {
                            free.find(|p| !buses.contains(p))
                        }
                        .ok_or(Error::NoFreePort)?;
                        let mut node = Node::new(&id, nodes.len() as i64, role, port);
                        node.shard = shard;
                        nodes.push(node);
                    }
                }
                (self.cfg.instance_host.clone(), port, nodes)
            };
            instances.push(Instance {
                name: if order.name.is_empty() {
                    id.clone()
                } else {
                    order.name.clone()
                },
                id,
                app_id,
                project_id: order.project_id,
                zone_id: order.zone_id,
                region_id: zone.region_id,
                type_id: order.type_id,
                mem_mb: spec.mem_mb,
                status: InstanceStatus::Initializing,
                vip,
                port,
                node_seq: nodes.len() as i64,
                nodes,
                vpc_id: order.vpc_id,
                un_vpc_id: order.un_vpc_id.clone(),
                subnet_id: order.subnet_id,
                un_subnet_id: order.un_subnet_id.clone(),
                created_at: now,
                deadline,
                auto_renew: order.auto_renew,
                billing: order.billing,
                password_hash: password_hash.clone(),
                password_acl: password_acl.clone(),
                admin_secret: ids::new_secret(),
                repl_secret: ids::new_secret(),
                lock_task: None,
                params: Default::default(),
                oom_kills: 0,
            });
        }
        let deal = Deal {
            id: 0,
            app_id,
            name: String::new(),
            zone_id: order.zone_id,
            goods_num: order.goods_num,
            creator: account.uin.clone(),
            status: deal_status::DELIVERING,
            price,
            detail: GoodsDetail::Create {
                mem_mb: spec.total_mem_mb(),
                months,
                instance_ids: instances.iter().map(|i| i.id.clone()).collect(),
            },
            created_at: now,
            overdue_at: now + Duration::days(DEAL_OVERDUE_DAYS),
            end_at: None,
        };
        let deal_id = self.insert_deal(&mut tx, deal).await?;
        for mut inst in instances {
            tx.insert_instance(&inst).await?;
            let task_id = tx
                .insert_task(
                    &NewTask {
                        app_id,
                        kind: TaskKind::NewInstance,
                        instance_id: Some(inst.id.clone()),
                        deal_id: Some(deal_id),
                        payload: json!({
                            "price": price / order.goods_num,
                            "replicas": order.replicas,
                            "shards": spec.shards,
                        }),
                    },
                    now,
                )
                .await?;
            inst.lock_task = Some(task_id);
            tx.update_instance(&inst).await?;
        }
        tx.commit().await?;
        self.wake.notify_one();
        Ok(deal_id)
    }

    /// What RenewRedis / RenewInstance would charge for `period` months of the instance.
    pub async fn renew_price(&self, app_id: i64, id: &str, period: i64) -> Result<i64> {
        let inst = self.owned_instance(app_id, id).await?;
        self.catalog().check_period(period)?;
        Ok(self.catalog().buy_price(&Spec::of(&inst), period, 1))
    }

    /// RenewRedis: extends the deadline by `period` months; an isolated instance is started again.
    /// A postpaid instance is renewed only when `to_prepaid` (RenewInstance's
    /// `ModifyPayMode=prepaid`): it becomes prepaid from the end of the hour already charged.
    pub async fn renew(&self, app_id: i64, id: &str, period: i64, to_prepaid: bool) -> Result<i64> {
        let inst = self.owned_instance(app_id, id).await?;
        if inst.lock_task.is_some() {
            return Err(Error::InstanceLocked(id.to_string()));
        }
        if inst.billing == BillingMode::Postpaid && !to_prepaid {
            return Err(Error::invalid_field(
                Field::InstanceId,
                format!("{id} is postpaid: it has no period to renew (ModifyPayMode=prepaid makes it prepaid)"),
            ));
        }
        self.catalog().check_period(period)?;
        let price = self.catalog().buy_price(&Spec::of(&inst), period, 1);
        let now = self.now();
        let mut tx = self.store.write().await?;
        let account = tx.account(app_id).await?.ok_or(Error::SecretIdNotFound)?;
        let mut inst = tx
            .instance(id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(id.to_string()))?;
        if inst.lock_task.is_some() {
            return Err(Error::InstanceLocked(id.to_string()));
        }
        charge(&mut tx, app_id, account.balance, price).await?;
        let deal_id = self
            .record_renewal(&mut tx, &mut inst, &account.uin, period, price, now)
            .await?;
        inst.billing = BillingMode::Prepaid;
        if inst.status == InstanceStatus::Isolated && inst.deadline > now {
            let task_id = tx
                .insert_task(
                    &NewTask {
                        app_id,
                        kind: TaskKind::StartInstance,
                        instance_id: Some(inst.id.clone()),
                        deal_id: Some(deal_id),
                        payload: json!({}),
                    },
                    now,
                )
                .await?;
            inst.lock_task = Some(task_id);
            inst.status = InstanceStatus::Busy;
        }
        tx.update_instance(&inst).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(deal_id)
    }

    /// Records a delivered renewal deal and moves the deadline (caller has charged the account).
    pub(crate) async fn record_renewal(
        &self,
        tx: &mut WriteTx,
        inst: &mut Instance,
        creator: &str,
        period: i64,
        price: i64,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let deal = Deal {
            id: 0,
            app_id: inst.app_id,
            name: String::new(),
            zone_id: inst.zone_id,
            goods_num: 1,
            creator: creator.to_string(),
            status: deal_status::DELIVERED,
            price,
            detail: GoodsDetail::Renew {
                cur_deadline: inst.deadline,
                mem_mb: inst.mem_mb,
                months: period,
                instance_ids: vec![inst.id.clone()],
            },
            created_at: now,
            overdue_at: now + Duration::days(DEAL_OVERDUE_DAYS),
            end_at: Some(now),
        };
        let deal_id = self.insert_deal(tx, deal).await?;
        // An expired instance is renewed from now, a running one from its deadline.
        let base = inst.deadline.max(now);
        inst.deadline = add_months(base, period);
        Ok(deal_id)
    }

    /// The one change `req` makes to `inst` (see [`spec::decide_change`]) and its price, the
    /// difference of the month prices prorated over what is left of the period; refused
    /// unless the instance runs idle.
    fn check_change(&self, inst: &Instance, req: SpecRequest) -> Result<(SpecChange, i64)> {
        if inst.status != InstanceStatus::Running || inst.lock_task.is_some() {
            return Err(Error::InstanceStatusAbnormal {
                id: inst.id.clone(),
                status: inst.status.description().into(),
            });
        }
        let (_, product) = self.catalog().product(inst.zone_id, inst.type_id)?;
        let current = Spec::of(inst);
        let change = spec::decide_change(product, current, req)?;
        let remaining = (inst.deadline - self.now()).num_seconds();
        let price = self
            .catalog()
            .upgrade_price(&current, &change.apply(current), remaining);
        Ok((change, price))
    }

    /// UpgradeRedisInquiryPrice: the price of a larger memory size.
    pub async fn upgrade_price(&self, app_id: i64, id: &str, mem_mb: i64) -> Result<i64> {
        self.change_price(app_id, id, SpecRequest::memory(mem_mb))
            .await
    }

    /// InquiryPriceUpgradeInstance: the price of the one change `req` makes.
    pub async fn change_price(&self, app_id: i64, id: &str, req: SpecRequest) -> Result<i64> {
        let inst = self.owned_instance(app_id, id).await?;
        Ok(self.check_change(&inst, req)?.1)
    }

    /// UpgradeRedis: a larger memory size (see [`Service::change_spec`]).
    pub async fn upgrade(&self, app_id: i64, id: &str, mem_mb: i64) -> Result<i64> {
        self.change_spec(app_id, id, SpecRequest::memory(mem_mb))
            .await
    }

    /// UpgradeInstance: charges the one change `req` makes and records its deal and the task
    /// that carries it out: a resizeInstance task that raises maxmemory live, or a
    /// changeReplicas task (payload `replicas`, `price`) that adds or removes replicas, or a
    /// changeShards task (payload `shards`, `from`, `price`) that reshards a cluster live.
    /// A failed task is refunded.
    pub async fn change_spec(&self, app_id: i64, id: &str, req: SpecRequest) -> Result<i64> {
        self.owned_instance(app_id, id).await?;
        let now = self.now();
        let mut tx = self.store.write().await?;
        let account = tx.account(app_id).await?.ok_or(Error::SecretIdNotFound)?;
        let mut inst = tx
            .instance(id)
            .await?
            .ok_or_else(|| Error::InstanceNotFound(id.to_string()))?;
        let (change, price) = self.check_change(&inst, req)?;
        charge(&mut tx, app_id, account.balance, price).await?;
        let instance_ids = vec![inst.id.clone()];
        let (detail, kind, payload) = match change {
            SpecChange::Memory { from, to } => (
                GoodsDetail::Upgrade {
                    old_mem_mb: from,
                    new_mem_mb: to,
                    instance_ids,
                },
                TaskKind::ResizeInstance,
                json!({ "memMb": to, "price": price }),
            ),
            SpecChange::Replicas { from, to } => (
                GoodsDetail::ChangeReplicas {
                    mem_mb: inst.mem_mb,
                    old_replicas: from,
                    new_replicas: to,
                    instance_ids,
                },
                TaskKind::ChangeReplicas,
                json!({ "replicas": to, "from": from, "price": price }),
            ),
            SpecChange::Shards { from, to } => (
                GoodsDetail::ChangeShards {
                    mem_mb: inst.mem_mb,
                    old_shards: from,
                    new_shards: to,
                    instance_ids,
                },
                TaskKind::ChangeShards,
                json!({ "shards": to, "from": from, "price": price }),
            ),
        };
        let deal = Deal {
            id: 0,
            app_id,
            name: String::new(),
            zone_id: inst.zone_id,
            goods_num: 1,
            creator: account.uin.clone(),
            status: deal_status::DELIVERING,
            price,
            detail,
            created_at: now,
            overdue_at: now + Duration::days(DEAL_OVERDUE_DAYS),
            end_at: None,
        };
        let deal_id = self.insert_deal(&mut tx, deal).await?;
        let task_id = tx
            .insert_task(
                &NewTask {
                    app_id,
                    kind,
                    instance_id: Some(inst.id.clone()),
                    deal_id: Some(deal_id),
                    payload,
                },
                now,
            )
            .await?;
        inst.lock_task = Some(task_id);
        inst.status = InstanceStatus::Busy;
        tx.update_instance(&inst).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(deal_id)
    }

    /// DescribeRedisDealDetail: the caller's deals among `ids`; an id that is not the caller's
    /// One deal of the account by its id, e.g. the one a purchase just recorded.
    pub async fn deal(&self, app_id: i64, id: i64) -> Result<Deal> {
        self.deals(app_id, &[id.to_string()])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal(format!("deal {id} not found")))
    }

    /// deal (or not a number) is DealNotFound.
    pub async fn deals(&self, app_id: i64, ids: &[String]) -> Result<Vec<Deal>> {
        if ids.is_empty() {
            return Err(Error::MissingField(Field::DealIds));
        }
        let mut out = Vec::with_capacity(ids.len());
        for raw in ids {
            let deal = match raw.trim().parse::<i64>() {
                Ok(id) => self.store.deal(id).await?,
                Err(_) => None,
            };
            match deal {
                Some(d) if d.app_id == app_id => out.push(d),
                _ => return Err(Error::DealNotFound(raw.clone())),
            }
        }
        Ok(out)
    }

    async fn insert_deal(&self, tx: &mut WriteTx, mut deal: Deal) -> Result<i64> {
        let id = tx.insert_deal(&deal).await?;
        // dealName: the local date and the serial, like the cloud's "20160712110021".
        deal.name = format!(
            "{}{:06}",
            timefmt::format(deal.created_at, self.time_zone())
                .get(0..10)
                .unwrap_or_default()
                .replace('-', ""),
            id % 1_000_000
        );
        tx.set_deal_name(id, &deal.name).await?;
        Ok(id)
    }

    /// A port a client chose: inside the operator's range and free, for a single instance.
    fn check_requested_port(&self, used: &HashSet<u16>, port: u16, count: i64) -> Result<u16> {
        self.check_requested_port_range(port, count)?;
        if used.contains(&port) || !self.runtime.port_free(port) {
            return Err(Error::invalid_field(
                Field::Port,
                format!("{port} is already in use"),
            ));
        }
        Ok(port)
    }

    /// A port a client chose: inside the operator's range, for a single instance.
    fn check_requested_port_range(&self, port: u16, count: i64) -> Result<()> {
        let (min, max) = (self.cfg.port_min, self.cfg.port_max);
        if !(min..=max).contains(&port) {
            return Err(Error::invalid_field(
                Field::Port,
                format!("{port} is outside this operator's instance ports {min}-{max}"),
            ));
        }
        if count != 1 {
            return Err(Error::invalid_field(
                Field::Port,
                "a port can be chosen for one instance at a time (instances share one address)",
            ));
        }
        Ok(())
    }

    /// Addresses of the pool that no node or live instance holds (`used`) and where nothing
    /// else listens at `port`, lowest first.
    pub(crate) fn free_hosts(
        &self,
        used: HashSet<String>,
        port: u16,
    ) -> impl Iterator<Item = String> + '_ {
        self.cfg
            .address_pool
            .iter()
            .map(|ip| ip.to_string())
            .filter(move |h| !used.contains(h))
            .filter(move |h| self.runtime.address_free(h, port))
    }

    /// Ports in the configured range that no live instance (`used`) holds, lowest first.
    /// A port some other program holds is skipped, not handed out.
    pub(crate) fn free_ports(&self, used: HashSet<u16>) -> impl Iterator<Item = u16> + '_ {
        (self.cfg.port_min..=self.cfg.port_max)
            .filter(move |p| !used.contains(p))
            .filter(move |p| self.runtime.port_free(*p))
    }

    /// Free ports for cluster nodes: the cluster bus port above each is neither `used` nor
    /// bound either.
    pub(crate) fn free_cluster_ports(&self, used: HashSet<u16>) -> impl Iterator<Item = u16> + '_ {
        let buses = used.clone();
        self.free_ports(used).filter(move |p| {
            p.checked_add(CLUSTER_BUS_OFFSET)
                .is_some_and(|bus| !buses.contains(&bus) && self.runtime.port_free(bus))
        })
    }
}

/// The ports no new node or frontend may take: every node's, every live instance's and
/// spare's, and the cluster bus port of every cluster node (a stopped node's bus is free to
/// the kernel but not to take).
pub(crate) async fn taken_ports(tx: &mut WriteTx) -> Result<HashSet<u16>> {
    let mut used: HashSet<u16> = tx.used_ports().await?.into_iter().collect();
    for p in tx.cluster_node_ports().await? {
        if let Some(bus) = p.checked_add(CLUSTER_BUS_OFFSET) {
            used.insert(bus);
        }
    }
    Ok(used)
}

/// Takes `price` from the account inside the transaction, or refuses with nothing changed.
pub(crate) async fn charge(tx: &mut WriteTx, app_id: i64, balance: i64, price: i64) -> Result<()> {
    if balance < price {
        return Err(Error::BalanceNotEnough {
            needed: price,
            available: balance,
        });
    }
    tx.set_balance(app_id, balance - price).await?;
    Ok(())
}
