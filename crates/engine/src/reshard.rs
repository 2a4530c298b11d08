//! Moving hash slots between the masters of a Redis Cluster, live: the mechanics of
//! `redis-cli --cluster reshard`/`rebalance`, for a layout the caller decides.
//!
//! The caller names, for each master that must serve slots, the one contiguous range it
//! ends with, and the other masters that may still hold slots (a shard being emptied). Each
//! master's own word (`myself` in its `CLUSTER NODES`) says which slots it serves now; every
//! slot whose final owner does not serve it alone is moved, one slot as redis-cli moves it:
//! 1. `CLUSTER SETSLOT <slot> IMPORTING <source>` on the target, `MIGRATING <target>` on the
//!    source: from then on the source answers `ASK` for keys it no longer has, so clients
//!    write new keys to the target and nothing is written behind the move;
//! 2. `CLUSTER GETKEYSINSLOT` and `MIGRATE ... REPLACE AUTH2 ... KEYS` in batches until the
//!    source holds none of the slot's keys;
//! 3. `CLUSTER SETSLOT <slot> NODE <target>` on the target (which takes a new config epoch),
//!    the source, then every other master.
//!
//! Slots move many at a time over the same multiplexed connections, so the round trips of one
//! slot overlap another's MIGRATE: this is what makes it faster than redis-cli's one slot at
//! a time. Every slot stays served throughout (by its source until step 3, by its target
//! after). Nothing here is remembered between calls: after a crash the next call reads the
//! masters again and moves what is not where it belongs, a slot left `MIGRATING`/`IMPORTING`
//! is simply moved again, and open states no move needs any more are closed at the end
//! (`CLUSTER SETSLOT <slot> STABLE`).

use futures_util::stream::{self, TryStreamExt};
use redis::aio::MultiplexedConnection;
use std::time::Duration;
use tokio::time::Instant;

use crate::cluster::{view_of, SLOTS};
use crate::config::connect_host;
use crate::{Engine, EngineError, NodeSpec};

/// Keys per `GETKEYSINSLOT`/`MIGRATE` round (redis-cli's `--cluster-pipeline`).
const BATCH: usize = 100;
/// Slots moved at once.
const PARALLEL_SLOTS: usize = 16;
/// `MIGRATE`'s own timeout for one batch, in milliseconds.
const MIGRATE_TIMEOUT_MS: u64 = 10_000;

/// A master and the slots (`first..=last`) it serves once the move is done.
#[derive(Clone, Debug)]
pub struct SlotOwner {
    pub master: NodeSpec,
    pub first: u16,
    pub last: u16,
}

/// What one call moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotMoves {
    pub slots: u32,
    pub keys: u64,
    pub took: Duration,
}

/// A master as the move knows it.
struct Master {
    name: String,
    con: MultiplexedConnection,
    id: String,
    host: String,
    port: u16,
    user: String,
    secret: String,
    /// The slots it says it serves.
    serves: Vec<(u16, u16)>,
}

/// One slot to move: from `source` to `target` (indexes into the masters), `owned`: the
/// target says it serves the slot already (a move cut short after its step 3 on the target).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Move {
    slot: u16,
    source: usize,
    target: usize,
    owned: bool,
}

impl Engine {
    /// Moves slots until each of `owners` serves its range and no other master serves any of
    /// it; `others` are further masters that may still serve slots (they end with none of
    /// the owners' ranges). Idempotent (see the module's doc). A slot that no master given
    /// serves is an error, never claimed: its keys may live on a master not given.
    pub async fn move_slots(
        &self,
        owners: &[SlotOwner],
        others: &[NodeSpec],
        timeout: Duration,
    ) -> Result<SlotMoves, EngineError> {
        let started = Instant::now();
        let work = async {
            let mut masters = Vec::new();
            for spec in owners.iter().map(|o| &o.master).chain(others) {
                masters.push(self.master(spec).await?);
            }
            let ranges: Vec<(u16, u16)> = owners.iter().map(|o| (o.first, o.last)).collect();
            let serves: Vec<Vec<(u16, u16)>> = masters.iter().map(|m| m.serves.clone()).collect();
            let moves = plan(&ranges, &serves)?;
            let slots = moves.len() as u32;
            let masters = &masters;
            let keys: u64 = stream::iter(moves.into_iter().map(Ok::<Move, EngineError>))
                .map_ok(|m| move_slot(masters, m))
                .try_buffer_unordered(PARALLEL_SLOTS)
                .try_fold(0u64, |sum, keys| async move { Ok(sum + keys) })
                .await?;
            // Open states no move needs any more (a migration cut short towards another
            // layout): closed, now that no move runs.
            for m in masters {
                let mut con = m.con.clone();
                let view = view_of(&mut con).await?;
                let open = view
                    .node(&view.myself)
                    .map(|me| me.open_slots.clone())
                    .unwrap_or_default();
                for slot in open {
                    redis::cmd("CLUSTER")
                        .arg("SETSLOT")
                        .arg(slot)
                        .arg("STABLE")
                        .query_async::<()>(&mut con)
                        .await?;
                }
            }
            Ok::<_, EngineError>(SlotMoves {
                slots,
                keys,
                took: started.elapsed(),
            })
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            Err(_) => Err(EngineError::Protocol(format!(
                "moving slots took longer than {timeout:?}"
            ))),
        }
    }

    async fn master(&self, spec: &NodeSpec) -> Result<Master, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let view = view_of(&mut con).await?;
        let me = view
            .node(&view.myself)
            .ok_or_else(|| EngineError::Protocol("CLUSTER NODES lists no myself".into()))?;
        Ok(Master {
            name: spec.name.clone(),
            id: view.myself.clone(),
            host: connect_host(self.config(), spec)?,
            port: spec.port,
            user: spec.admin_user.clone(),
            secret: spec.admin_secret.clone(),
            serves: me.slots.clone(),
            con,
        })
    }
}

/// The moves that give the first `ranges.len()` masters their range alone; `serves`: the
/// slot ranges each master says it serves, owners first.
fn plan(ranges: &[(u16, u16)], serves: &[Vec<(u16, u16)>]) -> Result<Vec<Move>, EngineError> {
    let has = |i: usize, slot: u16| serves[i].iter().any(|(lo, hi)| (*lo..=*hi).contains(&slot));
    let mut moves = Vec::new();
    for (target, (first, last)) in ranges.iter().enumerate() {
        for slot in *first..=(*last).min(SLOTS - 1) {
            let owned = has(target, slot);
            let source = (0..serves.len()).find(|i| *i != target && has(*i, slot));
            match source {
                Some(source) => moves.push(Move {
                    slot,
                    source,
                    target,
                    owned,
                }),
                None if owned => {}
                None => {
                    return Err(EngineError::Protocol(format!(
                        "slot {slot} is served by none of the masters given"
                    )))
                }
            }
        }
    }
    Ok(moves)
}

/// Moves one slot (see the module's doc); returns how many keys went.
async fn move_slot(masters: &[Master], m: Move) -> Result<u64, EngineError> {
    let (source, target) = (&masters[m.source], &masters[m.target]);
    let (mut src, mut tgt) = (source.con.clone(), target.con.clone());
    let setslot = |state: &str, id: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(m.slot).arg(state).arg(id);
        cmd
    };
    if m.owned {
        // The target took the slot already; the source, which has not heard yet, answers
        // `ASK` for the keys it no longer has from now on (refused once it has heard: then
        // it takes no new key of the slot anyway).
        let _ = setslot("MIGRATING", &target.id)
            .query_async::<()>(&mut src)
            .await;
    } else {
        setslot("IMPORTING", &source.id)
            .query_async::<()>(&mut tgt)
            .await?;
        setslot("MIGRATING", &target.id)
            .query_async::<()>(&mut src)
            .await?;
    }
    let mut moved = 0u64;
    loop {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(m.slot)
            .arg(BATCH)
            .query_async(&mut src)
            .await?;
        if keys.is_empty() {
            break;
        }
        // `NOKEY` when they all expired meanwhile: nothing to move, fine.
        redis::cmd("MIGRATE")
            .arg(&target.host)
            .arg(target.port)
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS)
            .arg("REPLACE")
            .arg("AUTH2")
            .arg(&target.user)
            .arg(&target.secret)
            .arg("KEYS")
            .arg(&keys)
            .query_async::<redis::Value>(&mut src)
            .await
            .map_err(|e| {
                EngineError::Protocol(format!(
                    "MIGRATE of slot {} from {} to {}: {e}",
                    m.slot, source.name, target.name
                ))
            })?;
        moved += keys.len() as u64;
    }
    // The target first (it takes the slot with a new epoch), then the source, then the rest,
    // who would learn it by gossip anyway.
    setslot("NODE", &target.id)
        .query_async::<()>(&mut tgt)
        .await?;
    setslot("NODE", &target.id)
        .query_async::<()>(&mut src)
        .await?;
    for (i, other) in masters.iter().enumerate() {
        if i == m.source || i == m.target {
            continue;
        }
        let mut con = other.con.clone();
        if let Err(e) = setslot("NODE", &target.id)
            .query_async::<()>(&mut con)
            .await
        {
            tracing::debug!(node = %other.name, slot = m.slot, error = %e,
                "a master did not take the slot's new owner; gossip will tell it");
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_only_what_is_not_where_it_belongs() {
        // Three masters of 0-9 (0-3, 4-6, 7-9) become two (0-4, 5-9); the third empties.
        let ranges = [(0, 4), (5, 9)];
        let serves = vec![vec![(0, 3)], vec![(4, 6)], vec![(7, 9)]];
        let moves = plan(&ranges, &serves).unwrap();
        let got: Vec<(u16, usize, usize)> =
            moves.iter().map(|m| (m.slot, m.source, m.target)).collect();
        assert_eq!(got, vec![(4, 1, 0), (7, 2, 1), (8, 2, 1), (9, 2, 1)]);
        assert!(moves.iter().all(|m| !m.owned));
        // Cut short after the target took slot 4 but before the source let it go.
        let serves = vec![vec![(0, 4)], vec![(4, 9)], vec![]];
        let moves = plan(&ranges, &serves).unwrap();
        assert_eq!(
            moves,
            vec![Move {
                slot: 4,
                source: 1,
                target: 0,
                owned: true
            }]
        );
        // Done: nothing to move.
        let serves = vec![vec![(0, 4)], vec![(5, 9)], vec![]];
        assert!(plan(&ranges, &serves).unwrap().is_empty());
        // A slot nobody given serves: refused, never claimed.
        let serves = vec![vec![(0, 4)], vec![(6, 9)]];
        assert!(plan(&ranges, &serves).is_err());
    }
}
