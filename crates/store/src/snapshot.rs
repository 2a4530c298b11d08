//! An in-memory copy of the live instances, for listings.
//!
//! DescribeRedis is the hottest call of the API and it reads a page of an account's
//! instances. Through SQLite it costs a hop to the connection's worker thread for the count
//! and another for the page, and the page query walks every row up to `offset` in order:
//! the call got slower as accounts grew. The instance table is small (one row per
//! instance) and changes only through [`crate::WriteTx`], so listings filter and sort a
//! shared copy of it instead.
//!
//! # Staying current
//! A write transaction that inserts or updates an instance invalidates the copy when it
//! commits (after the commit, so no reader can pick up the old rows again afterwards), and
//! bumps a generation. A reader that finds no copy loads one and installs it only if the
//! generation did not move while it loaded; otherwise it uses what it loaded once and
//! leaves the copy to the next reader. So once a write's API call has answered, every later
//! listing sees it.

use crate::{InstanceFilter, InstanceOrder};
use crsd_core::model::Instance;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Live instances by account.
pub(crate) type ByAccount = HashMap<i64, Vec<Instance>>;

#[derive(Default)]
pub(crate) struct InstanceSnapshot {
    generation: AtomicU64,
    current: RwLock<Option<Arc<ByAccount>>>,
}

impl InstanceSnapshot {
    /// The current copy, if one is installed.
    pub(crate) fn get(&self) -> Option<Arc<ByAccount>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The generation to hand back to [`InstanceSnapshot::install`] after loading.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Installs `loaded` unless a write committed since `generation` was read.
    pub(crate) fn install(&self, generation: u64, loaded: Arc<ByAccount>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            *current = Some(loaded);
        }
    }

    /// Drops the copy; called after a commit that wrote instances.
    pub(crate) fn invalidate(&self) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        *current = None;
    }
}

pub(crate) fn group(instances: Vec<Instance>) -> ByAccount {
    let mut by_account = ByAccount::new();
    for i in instances {
        by_account.entry(i.app_id).or_default().push(i);
    }
    by_account
}

/// The total matching `f` and the requested page, with the same meaning as the SQL it
/// replaces: every given list is an `IN`, the name matches as a substring, and ties in the
/// sort column are broken by id in the same direction.
pub(crate) fn page(all: &ByAccount, f: &InstanceFilter) -> (i64, Vec<Instance>) {
    let Some(mine) = all.get(&f.app_id) else {
        return (0, Vec::new());
    };
    let within = |list: &[i64], v: i64| list.is_empty() || list.contains(&v);
    let within_str = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
    let mut hits: Vec<&Instance> = mine
        .iter()
        .filter(|i| within_str(&f.ids, &i.id))
        .filter(|i| f.name.as_deref().is_none_or(|n| i.name.contains(n)))
        .filter(|i| f.address.as_deref().is_none_or(|a| i.vip.contains(a)))
        .filter(|i| within(&f.project_ids, i.project_id))
        .filter(|i| within(&f.zone_ids, i.zone_id))
        .filter(|i| within(&f.vpc_ids, i.vpc_id))
        .filter(|i| within_str(&f.un_vpc_ids, &i.un_vpc_id))
        .filter(|i| within(&f.subnet_ids, i.subnet_id))
        .filter(|i| within_str(&f.un_subnet_ids, &i.un_subnet_id))
        .collect();
    hits.sort_by(|a, b| {
        let by_column = match f.order_by {
            InstanceOrder::Id => std::cmp::Ordering::Equal,
            InstanceOrder::Project => a.project_id.cmp(&b.project_id),
            InstanceOrder::CreateTime => a.created_at.cmp(&b.created_at),
        };
        let ord = by_column.then_with(|| a.id.cmp(&b.id));
        if f.descending {
            ord.reverse()
        } else {
            ord
        }
    });
    let total = hits.len() as i64;
    let list = hits
        .into_iter()
        .skip(f.offset.max(0) as usize)
        .take(f.limit.max(0) as usize)
        .cloned()
        .collect();
    (total, list)
}
