//! The product catalog and prices: what the operator sells, in which zones, at what price.
//! It comes from the config file; the defaults reproduce the seed's examples
//! (1024 MB for 2 months = 16000 cents).
//!
//! Every price is the month price of a [`Spec`] (see [`Catalog::month_price`]): the configured
//! price per GB-month is that of a master with one replica, the instance every dialect sells
//! by default; each further replica adds `extra_replica_percent` of it. The default, 50, is a
//! node's share: one more node of the same memory, of the two the configured price pays for
//! (clouds that price a standard instance per node charge each replica as one more node).

use crate::error::{Error, Result};
use crate::spec::Spec;
use serde::{Deserialize, Serialize};

/// typeId of the master-replica edition (主从版): a master and one replica.
pub const MASTER_REPLICA_TYPE_ID: i64 = 2;
/// Types crsd can really run: master-replica (Redis Sentinel fails it over) and cluster (a
/// real Redis Cluster, which fails itself over).
pub const RUNNABLE_TYPES: &[i64] = &[MASTER_REPLICA_TYPE_ID, CLUSTER_TYPE_ID];
/// The Redis version instances run (Debian's redis-server), as the APIs print it.
pub const REDIS_VERSION: &str = "7.0";
/// A month of postpaid use is 30 days of hours.
pub const HOURS_PER_MONTH: i64 = 720;
/// typeId of the cluster edition (集群版).
pub const CLUSTER_TYPE_ID: i64 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Price of 1 GB (1024 MB) for one month, in cents.
    #[serde(default = "default_price")]
    pub price_per_gb_month: i64,
    /// Purchasable periods in months.
    #[serde(default = "default_periods")]
    pub periods: Vec<i64>,
    #[serde(default = "default_zones")]
    pub zones: Vec<Zone>,
    /// What each replica beyond the first adds, in percent of the price of a master with
    /// one replica (`price_per_gb_month` pays for those two nodes).
    #[serde(default = "default_extra_replica_percent")]
    pub extra_replica_percent: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub id: i64,
    pub name: String,
    /// DescribeRedis `regionId` (1 Guangzhou, 4 Shanghai, 5 Hong Kong, ...).
    pub region_id: i64,
    /// The Capital Online dialect's `RegionId` of this zone (a site, e.g. `CN_Guangzhou_A`);
    /// `zone_<id>` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_id: Option<String>,
    /// The Capital Online dialect's `RegionName` (an area, e.g. `中国大陆`); empty when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    /// API 3.0's region of the zone (`ap-guangzhou`): what clients send as `X-TC-Region`
    /// (tccli's `--region`) and what `DescribeInstances` answers as `Region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// That region's `RegionName` (`华南地区(广州)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_name: Option<String>,
    /// Its `RegionShortName` (`gz`), which older clients send as their region too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_short_name: Option<String>,
    /// Its `Area` (`华南地区`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_area: Option<String>,
    /// API 3.0's name of the zone (`ap-guangzhou-2`): DescribeProductInfo's `ZoneId`, beside
    /// `OldZoneId` (the number, `id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_code: Option<String>,
    pub types: Vec<ProductType>,
}

impl Zone {
    /// API 3.0's region: the configured name, else the number (`region_id`).
    pub fn region_code(&self) -> String {
        self.region
            .clone()
            .unwrap_or_else(|| self.region_id.to_string())
    }

    /// API 3.0's zone name: the configured one, else the number.
    pub fn zone_code(&self) -> String {
        self.zone_code
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }

    /// Whether a client's region (its name or short name) is this zone's.
    fn in_region(&self, region: &str) -> bool {
        self.region.as_deref() == Some(region) || self.region_short_name.as_deref() == Some(region)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProductType {
    pub type_id: i64,
    pub type_name: String,
    pub min_mem_mb: i64,
    pub max_mem_mb: i64,
    pub min_buy_num: i64,
    pub max_buy_num: i64,
    /// The replica counts the type sells (API 3.0 `RedisReplicasNum`; v2 and Capital Online
    /// instances have one).
    #[serde(default = "default_min_replicas")]
    pub min_replicas: i64,
    #[serde(default = "default_max_replicas")]
    pub max_replicas: i64,
    /// The shard counts a cluster type sells (API 3.0 `RedisShardNum`); empty: one shard,
    /// a standard type. `min_mem_mb`/`max_mem_mb` bound one shard's memory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_nums: Vec<i64>,
}

fn default_price() -> i64 {
    8000
}

fn default_extra_replica_percent() -> i64 {
    50
}

fn default_min_replicas() -> i64 {
    1
}

/// Redis 4.0 and later standard instances of the cloud sell 1 to 5 replicas.
fn default_max_replicas() -> i64 {
    5
}

fn default_periods() -> Vec<i64> {
    vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 24, 36]
}

fn master_replica() -> ProductType {
    ProductType {
        type_id: 2,
        type_name: "主从版".into(),
        min_mem_mb: 1024,
        max_mem_mb: 61440,
        min_buy_num: 1,
        max_buy_num: 10,
        min_replicas: default_min_replicas(),
        max_replicas: default_max_replicas(),
        shard_nums: Vec::new(),
    }
}

/// The shard count of a cluster purchase that names none.
pub const DEFAULT_CLUSTER_SHARDS: i64 = 3;

/// The shard counts the cloud's cluster edition sells.
pub const DEFAULT_SHARD_NUMS: &[i64] = &[1, 3, 5, 8, 12, 16, 24, 32];

fn cluster() -> ProductType {
    ProductType {
        type_id: CLUSTER_TYPE_ID,
        type_name: "集群版".into(),
        min_mem_mb: 1024,
        max_mem_mb: 61440,
        min_buy_num: 1,
        max_buy_num: 10,
        min_replicas: default_min_replicas(),
        max_replicas: default_max_replicas(),
        shard_nums: DEFAULT_SHARD_NUMS.to_vec(),
    }
}

fn default_zones() -> Vec<Zone> {
    // (id, name, v2 region, Capital Online site and area,
    //  API 3.0 region, its name, short name and area, zone name)
    [
        (
            100002,
            "广州二区",
            1,
            ("CN_Guangzhou_A", "中国大陆"),
            (
                "ap-guangzhou",
                "华南地区(广州)",
                "gz",
                "华南地区",
                "ap-guangzhou-2",
            ),
        ),
        (
            200001,
            "上海一区",
            4,
            ("CN_Shanghai_A", "中国大陆"),
            (
                "ap-shanghai",
                "华东地区(上海)",
                "sh",
                "华东地区",
                "ap-shanghai-1",
            ),
        ),
        (
            300001,
            "香港一区",
            5,
            ("CN_Hongkong_A", "亚太地区"),
            (
                "ap-hongkong",
                "港澳台地区(中国香港)",
                "hk",
                "港澳台地区",
                "ap-hongkong-1",
            ),
        ),
        (
            400001,
            "北美一区",
            6,
            ("US_SiliconValley_A", "北美地区"),
            (
                "na-siliconvalley",
                "美国西部(硅谷)",
                "usw",
                "美国西部",
                "na-siliconvalley-1",
            ),
        ),
    ]
    .into_iter()
    .map(
        |(id, name, region_id, (site, area), (region, region_name, short, region_area, zone))| {
            Zone {
                id,
                name: name.into(),
                region_id,
                site_id: Some(site.into()),
                area: Some(area.into()),
                region: Some(region.into()),
                region_name: Some(region_name.into()),
                region_short_name: Some(short.into()),
                region_area: Some(region_area.into()),
                zone_code: Some(zone.into()),
                types: vec![master_replica(), cluster()],
            }
        },
    )
    .collect()
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog {
            price_per_gb_month: default_price(),
            periods: default_periods(),
            zones: default_zones(),
            extra_replica_percent: default_extra_replica_percent(),
        }
    }
}

impl Catalog {
    pub fn zone(&self, id: i64) -> Option<&Zone> {
        self.zones.iter().find(|z| z.id == id)
    }

    /// The zones of the region a client names (API 3.0's `X-TC-Region`: a region's name or
    /// short name), as the real cloud's endpoint of that region serves them. `None`: every
    /// zone (no region named, or a catalog that names no region); a region no zone has is
    /// [`Error::UnsupportedRegion`].
    pub fn zones_in_region(&self, region: Option<&str>) -> Result<Option<Vec<i64>>> {
        let Some(region) = region.filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        if self.zones.iter().all(|z| z.region.is_none()) {
            return Ok(None);
        }
        let ids: Vec<i64> = self
            .zones
            .iter()
            .filter(|z| z.in_region(region))
            .map(|z| z.id)
            .collect();
        if ids.is_empty() {
            return Err(Error::UnsupportedRegion(region.to_string()));
        }
        Ok(Some(ids))
    }

    /// The product a purchase names, with the documented refusals in the documented order.
    pub fn product(&self, zone_id: i64, type_id: i64) -> Result<(&Zone, &ProductType)> {
        if type_id != 1 && type_id != 2 {
            return Err(Error::InvalidInstanceType(type_id));
        }
        let zone = self.zone(zone_id).ok_or(Error::NoRedisService(zone_id))?;
        let product = zone
            .types
            .iter()
            .find(|t| t.type_id == type_id)
            .filter(|_| RUNNABLE_TYPES.contains(&type_id))
            .ok_or(Error::NoTypeIdRedisService {
                zone: zone_id,
                type_id,
            })?;
        Ok((zone, product))
    }

    pub fn check_period(&self, months: i64) -> Result<()> {
        let min = self.periods.iter().copied().min().unwrap_or(1);
        let max = self.periods.iter().copied().max().unwrap_or(36);
        if months < min {
            return Err(Error::PeriodLessThanMinLimit(months));
        }
        if months > max {
            return Err(Error::PeriodExceedMaxLimit(months));
        }
        if !self.periods.contains(&months) {
            return Err(Error::invalid(
                "period",
                format!("{months} is not one of {:?}", self.periods),
            ));
        }
        Ok(())
    }

    /// Percent of the configured price a spec costs: 100 for a master with one replica, plus
    /// `extra_replica_percent` for each further replica, times the shards.
    fn percent(&self, spec: &Spec) -> i64 {
        let extra = self.extra_replica_percent * (spec.replicas - 1).max(0);
        (100 + extra) * spec.shards.max(1)
    }

    /// Price of one instance of `spec` for one month, in cents, rounded to the cent.
    pub fn month_price(&self, spec: &Spec) -> i64 {
        let scaled = self.price_per_gb_month * spec.mem_mb * self.percent(spec);
        (scaled + 51_200) / 102_400
    }

    /// Price of `num` instances of `spec` for `months`.
    pub fn buy_price(&self, spec: &Spec, months: i64, num: i64) -> i64 {
        self.month_price(spec) * months * num
    }

    /// Price of one hour of a postpaid instance of `spec`: the month price over 720 hours,
    /// rounded up to the cent.
    pub fn hour_price(&self, spec: &Spec) -> i64 {
        let month = self.month_price(spec);
        (month + HOURS_PER_MONTH - 1) / HOURS_PER_MONTH
    }

    /// Price of changing an instance from `old` to `new` for the `remaining_secs` left of the
    /// period (a month counts as 30 days): the month prices' difference prorated, rounded to
    /// the cent. A memory resize and a replica change are prorated alike; a change to a
    /// cheaper spec (fewer replicas) costs nothing and refunds nothing.
    pub fn upgrade_price(&self, old: &Spec, new: &Spec, remaining_secs: i64) -> i64 {
        let remaining = remaining_secs.max(0) as f64;
        let months = remaining / (30.0 * 86400.0);
        let month = |s: &Spec| {
            self.price_per_gb_month as f64 * s.mem_mb as f64 / 1024.0 * self.percent(s) as f64
                / 100.0
        };
        ((month(new) - month(old)).max(0.0) * months).round() as i64
    }
}

impl Zone {
    /// The Capital Online `RegionId` of this zone.
    pub fn site_id(&self) -> String {
        self.site_id
            .clone()
            .unwrap_or_else(|| format!("zone_{}", self.id))
    }

    /// Whether the zone sells a type crsd can run.
    pub fn sells(&self) -> bool {
        self.types
            .iter()
            .any(|t| RUNNABLE_TYPES.contains(&t.type_id))
    }
}

impl Catalog {
    /// The zone whose Capital Online `RegionId` is `site`.
    pub fn zone_by_site(&self, site: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.site_id() == site)
    }
}

impl ProductType {
    /// The sizes the type sells, in whole GB (memSize moves in 1024 MB steps).
    pub fn sizes_gb(&self) -> impl Iterator<Item = i64> {
        (self.min_mem_mb / 1024..=self.max_mem_mb / 1024).filter(|g| *g > 0)
    }

    pub fn check_mem(&self, mem_mb: i64) -> Result<()> {
        if mem_mb <= 0 || mem_mb % 1024 != 0 {
            return Err(Error::InvalidMemSize(mem_mb));
        }
        if mem_mb < self.min_mem_mb || mem_mb > self.max_mem_mb {
            return Err(Error::MemSizeNotInRange {
                mem: mem_mb,
                min: self.min_mem_mb,
                max: self.max_mem_mb,
            });
        }
        Ok(())
    }

    /// The shard counts the type sells, lowest first (a standard type: one shard).
    pub fn shard_counts(&self) -> Vec<i64> {
        if self.shard_nums.is_empty() {
            return vec![crate::spec::STANDARD_SHARDS];
        }
        let mut counts = self.shard_nums.clone();
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    /// Whether the type is the cluster edition (a Redis Cluster of shards).
    pub fn is_cluster(&self) -> bool {
        self.type_id == CLUSTER_TYPE_ID
    }

    /// The spec a purchase asks for: `shards` (API 3.0 `RedisShardNum`) when sent, else
    /// one for a standard type and [`DEFAULT_CLUSTER_SHARDS`] (or the fewest offered) for a
    /// cluster; the counts are judged by [`ProductType::check_spec`].
    pub fn spec(&self, mem_mb: i64, shards: Option<i64>, replicas: i64) -> Spec {
        let counts = self.shard_counts();
        let shards = shards.unwrap_or_else(|| {
            if counts.contains(&DEFAULT_CLUSTER_SHARDS) && self.is_cluster() {
                DEFAULT_CLUSTER_SHARDS
            } else {
                counts[0]
            }
        });
        Spec {
            mem_mb,
            shards,
            replicas,
        }
    }

    /// The spec of a purchase that names the total memory alone (v2 `memSize`): a cluster's
    /// total is split evenly over the most shards, up to [`DEFAULT_CLUSTER_SHARDS`], that
    /// leave each shard whole GB of at least `min_mem_mb` (3072 MB: 3 × 1024; 4096 MB:
    /// 1 × 4096); a standard type's is its one shard's.
    pub fn spec_of_total(&self, total_mb: i64, replicas: i64) -> Spec {
        if !self.is_cluster() {
            return Spec::standard(total_mb, replicas);
        }
        let counts = self.shard_counts();
        let shards = counts
            .iter()
            .rev()
            .copied()
            .filter(|n| *n <= DEFAULT_CLUSTER_SHARDS)
            .find(|n| total_mb % (n * 1024) == 0 && total_mb / n >= self.min_mem_mb)
            .unwrap_or(counts[0]);
        Spec::cluster(total_mb / shards, shards, replicas)
    }

    /// The total memory a purchase naming the total (v2) may ask for: one shard's least, up
    /// to the most shards [`ProductType::spec_of_total`] splits into, each at its most.
    pub fn total_mem_range(&self) -> (i64, i64) {
        let most = self
            .shard_counts()
            .into_iter()
            .filter(|n| *n <= DEFAULT_CLUSTER_SHARDS)
            .max()
            .unwrap_or(1);
        (self.min_mem_mb, self.max_mem_mb * most)
    }

    /// A spec this type sells: memory per shard, shards and replicas within its ranges.
    pub fn check_spec(&self, spec: &Spec) -> Result<()> {
        self.check_mem(spec.mem_mb)?;
        self.check_shards(spec.shards)?;
        self.check_replicas(spec.replicas)
    }

    pub fn check_shards(&self, num: i64) -> Result<()> {
        if !self.shard_counts().contains(&num) {
            return Err(Error::ShardsNotOffered(num));
        }
        Ok(())
    }

    /// The replica counts the type sells, lowest first.
    pub fn replica_counts(&self) -> std::ops::RangeInclusive<i64> {
        self.min_replicas..=self.max_replicas
    }

    pub fn check_replicas(&self, num: i64) -> Result<()> {
        if !self.replica_counts().contains(&num) {
            return Err(Error::ReplicasNotInRange {
                num,
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        Ok(())
    }

    pub fn check_goods_num(&self, num: i64) -> Result<()> {
        if num < self.min_buy_num || num > self.max_buy_num {
            return Err(Error::GoodsNumNotInRange {
                num,
                min: self.min_buy_num,
                max: self.max_buy_num,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reproduce_the_seed_price() {
        let c = Catalog::default();
        let one = |mb| Spec::standard(mb, 1);
        assert_eq!(c.buy_price(&one(1024), 2, 1), 16000);
        assert_eq!(c.buy_price(&one(1024), 1, 1), 8000);
        // The seed's upgrade example: 1024 -> 2048 MB with 3.0575 months (91.7 days) left = 24460 cents.
        assert_eq!(c.upgrade_price(&one(1024), &one(2048), 7_925_040), 24460);
        // Postpaid: 8000 cents a GB-month is 11.1 cents an hour, charged 12.
        assert_eq!(c.hour_price(&one(1024)), 12);
        let exact = Catalog {
            price_per_gb_month: 7200,
            ..Catalog::default()
        };
        assert_eq!(
            exact.hour_price(&one(1024)),
            10,
            "no rounding when it divides"
        );
        assert_eq!(exact.hour_price(&one(2048)), 20);
    }

    #[test]
    fn each_further_replica_adds_the_configured_percent() {
        let c = Catalog::default();
        assert_eq!(c.extra_replica_percent, 50);
        let spec = |mb, r| Spec::standard(mb, r);
        // 1 GB: 8000 a month with one replica, +4000 for each further one.
        let months: Vec<i64> = (1..=5).map(|r| c.month_price(&spec(1024, r))).collect();
        assert_eq!(months, [8000, 12000, 16000, 20000, 24000]);
        assert_eq!(c.buy_price(&spec(2048, 3), 2, 3), 32000 * 2 * 3);
        // 24000 a month is 33.3 cents an hour, charged 34.
        assert_eq!(c.hour_price(&spec(2048, 2)), 34);
        // A replica change is prorated like a resize: 1 -> 3 replicas of 1 GB adds 8000 a
        // month, the same as 1 -> 2 GB with one replica.
        let left = 7_925_040;
        assert_eq!(c.upgrade_price(&spec(1024, 1), &spec(1024, 3), left), 24460);
        assert_eq!(c.upgrade_price(&spec(1024, 3), &spec(1024, 1), left), 0);
        // A resize of a 3-replica instance grows every node.
        assert_eq!(
            c.upgrade_price(&spec(1024, 3), &spec(2048, 3), left),
            2 * 24460
        );
        // The operator's rule: half a cent rounds up; 0 % prices replicas as included.
        let odd = Catalog {
            price_per_gb_month: 8001,
            extra_replica_percent: 33,
            ..Catalog::default()
        };
        assert_eq!(
            odd.month_price(&spec(1024, 2)),
            10641,
            "8001 x 1.33 = 10641.33"
        );
        let flat = Catalog {
            extra_replica_percent: 0,
            ..Catalog::default()
        };
        assert_eq!(flat.month_price(&spec(1024, 5)), 8000);
    }

    #[test]
    fn refusals_follow_the_seed() {
        let c = Catalog::default();
        assert_eq!(
            c.product(100002, 3).unwrap_err(),
            Error::InvalidInstanceType(3)
        );
        assert_eq!(c.product(1, 2).unwrap_err(), Error::NoRedisService(1));
        // A zone that does not sell the cluster edition.
        let mut standard_only = Catalog::default();
        standard_only.zones[0].types.retain(|t| !t.is_cluster());
        assert!(matches!(
            standard_only.product(100002, 1).unwrap_err(),
            Error::NoTypeIdRedisService { .. }
        ));
        let (_, cluster) = c.product(100002, 1).unwrap();
        assert_eq!(cluster.spec(1024, None, 1), Spec::cluster(1024, 3, 1));
        assert!(cluster.check_spec(&Spec::cluster(1024, 5, 2)).is_ok());
        assert_eq!(
            cluster.check_spec(&Spec::cluster(1024, 4, 1)),
            Err(Error::ShardsNotOffered(4))
        );
        assert_eq!(cluster.spec_of_total(3072, 1), Spec::cluster(1024, 3, 1));
        assert_eq!(cluster.spec_of_total(6144, 1), Spec::cluster(2048, 3, 1));
        assert_eq!(cluster.spec_of_total(4096, 1), Spec::cluster(4096, 1, 1));
        assert_eq!(cluster.spec_of_total(1024, 1), Spec::cluster(1024, 1, 1));
        let (_, p) = c.product(100002, 2).unwrap();
        assert_eq!(p.spec(1024, None, 2), Spec::standard(1024, 2));
        assert_eq!(p.spec_of_total(4096, 1), Spec::standard(4096, 1));
        assert_eq!(
            p.check_spec(&Spec::cluster(1024, 3, 1)),
            Err(Error::ShardsNotOffered(3))
        );
        assert_eq!(p.check_mem(1000).unwrap_err(), Error::InvalidMemSize(1000));
        assert!(matches!(
            p.check_mem(1024 * 100).unwrap_err(),
            Error::MemSizeNotInRange { .. }
        ));
        assert!(p.check_mem(2048).is_ok());
        assert_eq!(p.replica_counts(), 1..=5);
        assert!(p.check_replicas(5).is_ok());
        assert_eq!(
            p.check_replicas(6).unwrap_err(),
            Error::ReplicasNotInRange {
                num: 6,
                min: 1,
                max: 5
            }
        );
        assert!(p.check_replicas(0).is_err());
        assert!(matches!(
            p.check_goods_num(11).unwrap_err(),
            Error::GoodsNumNotInRange { .. }
        ));
        assert_eq!(
            c.check_period(0).unwrap_err(),
            Error::PeriodLessThanMinLimit(0)
        );
        assert_eq!(
            c.check_period(37).unwrap_err(),
            Error::PeriodExceedMaxLimit(37)
        );
        assert!(matches!(
            c.check_period(13).unwrap_err(),
            Error::InvalidParameter { .. }
        ));
        assert!(c.check_period(24).is_ok());
    }
}
