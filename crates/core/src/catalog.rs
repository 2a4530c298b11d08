//! The product catalog and prices: what the operator sells, in which zones, at what price.
//! It comes from the config file; the defaults reproduce the seed's examples
//! (1024 MB for 2 months = 16000 cents).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// typeId of the master-replica edition (主从版): a master and one replica.
pub const MASTER_REPLICA_TYPE_ID: i64 = 2;
/// Types crsd can really run today. Cluster (1) is refused with NoTypeIdRedisService until it exists.
pub const RUNNABLE_TYPES: &[i64] = &[MASTER_REPLICA_TYPE_ID];
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
    pub types: Vec<ProductType>,
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
}

fn default_price() -> i64 {
    8000
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
    }
}

fn default_zones() -> Vec<Zone> {
    [
        (100002, "广州二区", 1, "CN_Guangzhou_A", "中国大陆"),
        (200001, "上海一区", 4, "CN_Shanghai_A", "中国大陆"),
        (300001, "香港一区", 5, "CN_Hongkong_A", "亚太地区"),
        (400001, "北美一区", 6, "US_SiliconValley_A", "北美地区"),
    ]
    .into_iter()
    .map(|(id, name, region_id, site, area)| Zone {
        id,
        name: name.into(),
        region_id,
        site_id: Some(site.into()),
        area: Some(area.into()),
        types: vec![master_replica()],
    })
    .collect()
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog {
            price_per_gb_month: default_price(),
            periods: default_periods(),
            zones: default_zones(),
        }
    }
}

impl Catalog {
    pub fn zone(&self, id: i64) -> Option<&Zone> {
        self.zones.iter().find(|z| z.id == id)
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

    /// Price of `num` instances of `mem_mb` for `months`.
    pub fn buy_price(&self, mem_mb: i64, months: i64, num: i64) -> i64 {
        self.price_per_gb_month * mem_mb / 1024 * months * num
    }

    /// Price of one hour of a postpaid instance of `mem_mb`: the month price over 720 hours,
    /// rounded up to the cent.
    pub fn hour_price(&self, mem_mb: i64) -> i64 {
        let month = self.price_per_gb_month * mem_mb / 1024;
        (month + HOURS_PER_MONTH - 1) / HOURS_PER_MONTH
    }

    /// Price of growing from `old_mb` to `new_mb` for the `remaining_secs` left of the period
    /// (a month counts as 30 days), rounded to the cent.
    pub fn upgrade_price(&self, old_mb: i64, new_mb: i64, remaining_secs: i64) -> i64 {
        let remaining = remaining_secs.max(0) as f64;
        let months = remaining / (30.0 * 86400.0);
        let gb = (new_mb - old_mb).max(0) as f64 / 1024.0;
        (self.price_per_gb_month as f64 * gb * months).round() as i64
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
        assert_eq!(c.buy_price(1024, 2, 1), 16000);
        assert_eq!(c.buy_price(1024, 1, 1), 8000);
        // The seed's upgrade example: 1024 -> 2048 MB with 3.0575 months (91.7 days) left = 24460 cents.
        assert_eq!(c.upgrade_price(1024, 2048, 7_925_040), 24460);
        // Postpaid: 8000 cents a GB-month is 11.1 cents an hour, charged 12.
        assert_eq!(c.hour_price(1024), 12);
        let exact = Catalog {
            price_per_gb_month: 7200,
            ..Catalog::default()
        };
        assert_eq!(exact.hour_price(1024), 10, "no rounding when it divides");
        assert_eq!(exact.hour_price(2048), 20);
    }

    #[test]
    fn refusals_follow_the_seed() {
        let c = Catalog::default();
        assert_eq!(
            c.product(100002, 3).unwrap_err(),
            Error::InvalidInstanceType(3)
        );
        assert_eq!(c.product(1, 2).unwrap_err(), Error::NoRedisService(1));
        assert!(matches!(
            c.product(100002, 1).unwrap_err(),
            Error::NoTypeIdRedisService { .. }
        ));
        let (_, p) = c.product(100002, 2).unwrap();
        assert_eq!(p.check_mem(1000).unwrap_err(), Error::InvalidMemSize(1000));
        assert!(matches!(
            p.check_mem(1024 * 100).unwrap_err(),
            Error::MemSizeNotInRange { .. }
        ));
        assert!(p.check_mem(2048).is_ok());
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
