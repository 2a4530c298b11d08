//! An instance's spec as it is sold and changed: memory, shards and replicas.
//!
//! The same three numbers price a purchase, a renewal, a postpaid hour and a change (see
//! `catalog`), and a change request must be read one way, the same for its price inquiry and
//! its purchase: API 3.0 UpgradeInstance changes ONE of MemSize, RedisShardNum and
//! RedisReplicasNum per call, the other two carrying the instance's current values. So a call
//! that repeats the current MemSize and asks for other replicas is a replica change, not a
//! refused shrink. That rule lives here, as a pure function, so that every dialect and the
//! service share it. No I/O.

use crate::catalog::ProductType;
use crate::error::{Error, Result};
use crate::model::Instance;

/// Replicas of an instance unless its purchase asks for others; v2 and Capital Online have
/// no replica count, so theirs have this one.
pub const DEFAULT_REPLICAS: i64 = 1;
/// A standard (master-replica) instance is one shard.
pub const STANDARD_SHARDS: i64 = 1;

/// What an instance is: memory (MB, per shard), shards, replicas per shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub mem_mb: i64,
    pub shards: i64,
    pub replicas: i64,
}

impl Spec {
    /// A standard instance: one shard of `mem_mb` with `replicas` replicas.
    pub fn standard(mem_mb: i64, replicas: i64) -> Spec {
        Spec {
            mem_mb,
            shards: STANDARD_SHARDS,
            replicas,
        }
    }

    /// A cluster instance: `shards` shards of `mem_mb` each, with `replicas` replicas each.
    pub fn cluster(mem_mb: i64, shards: i64, replicas: i64) -> Spec {
        Spec {
            mem_mb,
            shards,
            replicas,
        }
    }

    /// The memory of all shards together (a standard instance: its one shard's).
    pub fn total_mem_mb(&self) -> i64 {
        self.mem_mb * self.shards.max(1)
    }

    /// The spec an instance has now: its shards are those its nodes serve, its replicas the
    /// nodes of a shard beyond its master. This is the one place that reads the shard and
    /// replica counts of an instance, for its prices (renewals, postpaid hours) and its
    /// changes. (An instance without nodes, deleted, is priced as it was sold by default.)
    pub fn of(inst: &Instance) -> Spec {
        if inst.nodes.is_empty() {
            return Spec::standard(inst.mem_mb, DEFAULT_REPLICAS);
        }
        let mut shards: Vec<i64> = inst.nodes.iter().map(|n| n.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        let count = shards.len().max(1) as i64;
        let replicas = inst.nodes.len() as i64 / count - 1;
        Spec {
            mem_mb: inst.mem_mb,
            shards: count,
            replicas: replicas.max(0),
        }
    }
}

/// What a change request asks for; a field not sent carries the current value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecRequest {
    pub mem_mb: Option<i64>,
    pub shards: Option<i64>,
    pub replicas: Option<i64>,
}

impl SpecRequest {
    /// A request that names the memory size alone (v2 UpgradeRedis).
    pub fn memory(mem_mb: i64) -> SpecRequest {
        SpecRequest {
            mem_mb: Some(mem_mb),
            ..SpecRequest::default()
        }
    }
}

/// The one change a request makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecChange {
    /// A larger memory size (a resize).
    Memory { from: i64, to: i64 },
    /// Replicas added or removed; memory and shards stay.
    Replicas { from: i64, to: i64 },
    /// Shards added or removed (a cluster's resharding); memory per shard and replicas per
    /// shard stay.
    Shards { from: i64, to: i64 },
}

impl SpecChange {
    /// The instance's spec once the change is made.
    pub fn apply(self, current: Spec) -> Spec {
        match self {
            SpecChange::Memory { to, .. } => Spec {
                mem_mb: to,
                ..current
            },
            SpecChange::Replicas { to, .. } => Spec {
                replicas: to,
                ..current
            },
            SpecChange::Shards { to, .. } => Spec {
                shards: to,
                ..current
            },
        }
    }
}

/// Decides the one change `req` makes to an instance of `product` whose spec is `current`,
/// or refuses it:
/// - a shard count other than the instance's: for a cluster, one the product sells is a shard
///   change ([`Error::ShardsNotOffered`] otherwise), refused with [`Error::SpecChangeNotOne`]
///   when memory or replicas change too; a standard instance is one shard and stays one
///   ([`Error::ShardsNotOffered`]);
/// - a new replica count outside the product's range: [`Error::ReplicasNotInRange`];
/// - memory and replicas both changed: [`Error::SpecChangeNotOne`];
/// - otherwise a replica change when the replicas differ from the current ones, else a
///   memory change, refused as a memory change always was: a size the product does not sell
///   ([`Error::InvalidMemSize`], [`Error::MemSizeNotInRange`]) or not larger than the current
///   one ([`Error::ReduceCapacityNotAllowed`]; shrinking is not offered).
pub fn decide_change(product: &ProductType, current: Spec, req: SpecRequest) -> Result<SpecChange> {
    if let Some(shards) = req.shards.filter(|s| *s != current.shards) {
        if product.is_cluster() {
            product.check_shards(shards)?;
            let other_mem = req.mem_mb.is_some_and(|m| m != current.mem_mb);
            let other_replicas = req.replicas.is_some_and(|r| r != current.replicas);
            if other_mem || other_replicas {
                return Err(Error::SpecChangeNotOne);
            }
            return Ok(SpecChange::Shards {
                from: current.shards,
                to: shards,
            });
        }
        return Err(Error::ShardsNotOffered(shards));
    }
    let new_replicas = req.replicas.filter(|r| *r != current.replicas);
    if let Some(r) = new_replicas {
        product.check_replicas(r)?;
    }
    let new_mem = req.mem_mb.filter(|m| *m != current.mem_mb);
    match (new_mem, new_replicas) {
        (Some(_), Some(_)) => Err(Error::SpecChangeNotOne),
        (None, Some(to)) => Ok(SpecChange::Replicas {
            from: current.replicas,
            to,
        }),
        (_, None) => {
            let to = req.mem_mb.unwrap_or(current.mem_mb);
            product.check_mem(to)?;
            if to <= current.mem_mb {
                return Err(Error::ReduceCapacityNotAllowed {
                    requested: to,
                    current: current.mem_mb,
                });
            }
            Ok(SpecChange::Memory {
                from: current.mem_mb,
                to,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn product() -> ProductType {
        let c = Catalog::default();
        c.product(100002, 2).unwrap().1.clone()
    }

    fn req(mem: Option<i64>, shards: Option<i64>, replicas: Option<i64>) -> SpecRequest {
        SpecRequest {
            mem_mb: mem,
            shards,
            replicas,
        }
    }

    #[test]
    fn repeating_memsize_and_changing_replicas_is_a_replica_change() {
        let p = product();
        let now = Spec::standard(2048, 1);
        for (r, want) in [
            (req(Some(2048), Some(1), Some(3)), 3),
            (req(Some(2048), None, Some(5)), 5),
            (req(None, None, Some(2)), 2),
        ] {
            assert_eq!(
                decide_change(&p, now, r),
                Ok(SpecChange::Replicas { from: 1, to: want }),
                "{r:?}"
            );
        }
        // Fewer replicas is a change too (removing replicas is offered).
        let three = Spec::standard(2048, 3);
        let change = decide_change(&p, three, req(Some(2048), Some(1), Some(1))).unwrap();
        assert_eq!(change, SpecChange::Replicas { from: 3, to: 1 });
        assert_eq!(change.apply(three), Spec::standard(2048, 1));
    }

    #[test]
    fn a_memory_change_is_what_it_was() {
        let p = product();
        let now = Spec::standard(2048, 3);
        // The current replicas repeated, or not sent: a resize.
        for r in [
            req(Some(4096), Some(1), Some(3)),
            req(Some(4096), None, None),
        ] {
            let change = decide_change(&p, now, r).unwrap();
            assert_eq!(
                change,
                SpecChange::Memory {
                    from: 2048,
                    to: 4096
                }
            );
            assert_eq!(change.apply(now), Spec::standard(4096, 3));
        }
        // Not larger: refused as a shrink (also when nothing changes at all).
        for mem in [1024, 2048] {
            assert_eq!(
                decide_change(&p, now, req(Some(mem), None, Some(3))),
                Err(Error::ReduceCapacityNotAllowed {
                    requested: mem,
                    current: 2048
                })
            );
        }
        assert_eq!(
            decide_change(&p, now, req(Some(3000), None, None)),
            Err(Error::InvalidMemSize(3000))
        );
        assert!(matches!(
            decide_change(&p, now, req(Some(1024 * 100), None, None)),
            Err(Error::MemSizeNotInRange { .. })
        ));
    }

    #[test]
    fn refusals() {
        let p = product();
        let now = Spec::standard(2048, 1);
        for bad in [0, 6, -1] {
            assert_eq!(
                decide_change(&p, now, req(Some(2048), None, Some(bad))),
                Err(Error::ReplicasNotInRange {
                    num: bad,
                    min: 1,
                    max: 5
                })
            );
        }
        assert_eq!(
            decide_change(&p, now, req(Some(4096), None, Some(2))),
            Err(Error::SpecChangeNotOne),
            "memory and replicas at once"
        );
        for shards in [0, 3] {
            assert_eq!(
                decide_change(&p, now, req(Some(2048), Some(shards), None)),
                Err(Error::ShardsNotOffered(shards))
            );
        }
        // A range the operator narrowed: the current count may be repeated, not asked anew.
        let narrow = ProductType {
            max_replicas: 2,
            ..p.clone()
        };
        let five = Spec::standard(2048, 5);
        assert!(decide_change(&narrow, five, req(Some(4096), None, Some(5))).is_ok());
        assert!(decide_change(&narrow, five, req(Some(2048), None, Some(2))).is_ok());
        assert_eq!(
            decide_change(&narrow, now, req(Some(2048), None, Some(3))),
            Err(Error::ReplicasNotInRange {
                num: 3,
                min: 1,
                max: 2
            })
        );
    }

    #[test]
    fn a_cluster_shard_change_is_one_change() {
        let c = Catalog::default();
        let p = c
            .product(100002, crate::catalog::CLUSTER_TYPE_ID)
            .unwrap()
            .1
            .clone();
        let now = Spec::cluster(1024, 3, 1);
        let change = decide_change(&p, now, req(Some(1024), Some(5), Some(1))).unwrap();
        assert_eq!(change, SpecChange::Shards { from: 3, to: 5 });
        assert_eq!(change.apply(now), Spec::cluster(1024, 5, 1));
        let back = decide_change(&p, Spec::cluster(1024, 5, 1), req(None, Some(3), None));
        assert_eq!(back, Ok(SpecChange::Shards { from: 5, to: 3 }));
        assert_eq!(
            decide_change(&p, now, req(Some(1024), Some(4), Some(1))),
            Err(Error::ShardsNotOffered(4))
        );
        assert_eq!(
            decide_change(&p, now, req(Some(2048), Some(5), Some(1))),
            Err(Error::SpecChangeNotOne)
        );
        assert_eq!(
            decide_change(&p, now, req(Some(1024), Some(5), Some(2))),
            Err(Error::SpecChangeNotOne)
        );
        // More shards cost the difference; fewer cost nothing.
        let more = c.upgrade_price(&now, &Spec::cluster(1024, 5, 1), 30 * 86400);
        assert!(more > 0);
        assert_eq!(
            c.upgrade_price(&Spec::cluster(1024, 5, 1), &now, 30 * 86400),
            0
        );
    }
}
