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
//! after).
//!
//! **Config epochs.** A target takes a moved slot with a config epoch above every one it
//! knows. A gossip message its source sent before letting the slot go still claims it, and
//! wins wherever it lands late if the source's epoch is the higher; the node that believes it
//! then tells the target, which drops the slot *and deletes its keys*. A master that is both
//! a source and a target in one layout change (layouts shift along the masters) bumps its
//! epoch when it receives, and the masters it gives to may not have heard of that epoch yet.
//! So moves run in layers: every master gives all it gives before it receives anything
//! (`layers`); a source's epoch is then one from before the change, known to all, and every
//! target's is above it. Moving slots between contiguous ranges in the masters' order never
//! makes a cycle; a state left by a crash might, and is then moved in one layer.
//!
//! **Agreement.** The call returns once every master given says each owner serves its whole
//! range, what `redis-cli --cluster check` calls agreement. A master that says otherwise is
//! told again (`SETSLOT NODE`) and the owner's epoch is raised (`CLUSTER BUMPEPOCH`), so its
//! claim wins wherever gossip takes it. Nothing here is remembered between calls: after a crash the next call reads the
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
    /// The range it ends with (none for a master being emptied).
    range: Option<(u16, u16)>,
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
            for o in owners {
                let mut m = self.master(&o.master).await?;
                m.range = Some((o.first, o.last.min(SLOTS - 1)));
                masters.push(m);
            }
            for spec in others {
                masters.push(self.master(spec).await?);
            }
            let ranges: Vec<(u16, u16)> = owners.iter().map(|o| (o.first, o.last)).collect();
            let serves: Vec<Vec<(u16, u16)>> = masters.iter().map(|m| m.serves.clone()).collect();
            let moves = plan(&ranges, &serves)?;
            let slots = moves.len() as u32;
            let masters = &masters;
            let mut keys = 0u64;
            for layer in layers(moves, masters.len()) {
                keys += stream::iter(layer.into_iter().map(Ok::<Move, EngineError>))
                    .map_ok(|m| move_slot(masters, m))
                    .try_buffer_unordered(PARALLEL_SLOTS)
                    .try_fold(0u64, |sum, keys| async move { Ok(sum + keys) })
                    .await?;
            }
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
            await_agreement(masters, owners.len()).await?;
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
            range: None,
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

/// The moves in the order they may run (see "Config epochs" in the module's doc): a move to
/// master `t` runs in layer `depth(t)`, where a master that gives nothing has depth 0 and one
/// that gives has one more than the deepest master it gives to. A cycle (never met between
/// contiguous layouts) puts everything in one layer.
fn layers(moves: Vec<Move>, masters: usize) -> Vec<Vec<Move>> {
    let gives_to = |m: usize| {
        moves
            .iter()
            .filter(move |mv| mv.source == m)
            .map(|mv| mv.target)
    };
    let mut depth: Vec<Option<usize>> = vec![None; masters];
    // Longest path by relaxation: at most `masters` rounds unless there is a cycle.
    let mut cyclic = true;
    for _ in 0..=masters {
        let mut changed = false;
        for m in 0..masters {
            let d = gives_to(m)
                .map(|t| depth[t].map_or(1, |d| d + 1))
                .max()
                .unwrap_or(0);
            if depth[m] != Some(d) {
                depth[m] = Some(d);
                changed = true;
            }
        }
        if !changed {
            cyclic = false;
            break;
        }
    }
    if cyclic {
        return vec![moves];
    }
    let deepest = depth.iter().flatten().copied().max().unwrap_or(0);
    let mut out = vec![Vec::new(); deepest + 1];
    for mv in moves {
        out[depth[mv.target].unwrap_or(0)].push(mv);
    }
    out.retain(|layer| !layer.is_empty());
    out
}

/// How long the masters may take to agree on the slots' owners once every slot has moved.
const AGREEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until every master says each of the first `owners` masters serves its whole range
/// (`masters[i]` owns `ranges` given to `move_slots`, in order); tells a master that says
/// otherwise again, and raises the owner's epoch (see "Agreement" in the module's doc).
async fn await_agreement(masters: &[Master], owners: usize) -> Result<(), EngineError> {
    let deadline = Instant::now() + AGREEMENT_TIMEOUT;
    loop {
        let mut disputes: Vec<(usize, usize, Vec<u16>)> = Vec::new();
        for (i, m) in masters.iter().enumerate() {
            let mut con = m.con.clone();
            let view = view_of(&mut con).await?;
            for (o, owner) in masters.iter().enumerate().take(owners) {
                let serves = view
                    .node(&owner.id)
                    .map(|n| n.slots.clone())
                    .unwrap_or_default();
                let wrong: Vec<u16> = owner
                    .range
                    .iter()
                    .flat_map(|(lo, hi)| *lo..=*hi)
                    .filter(|slot| !serves.iter().any(|(lo, hi)| (*lo..=*hi).contains(slot)))
                    .collect();
                if !wrong.is_empty() {
                    disputes.push((i, o, wrong));
                }
            }
        }
        if disputes.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let (i, o, wrong) = &disputes[0];
            return Err(EngineError::Protocol(format!(
                "after moving slots, {} still does not say {} serves {} of its slots (slot {} first)",
                masters[*i].name,
                masters[*o].name,
                wrong.len(),
                wrong[0]
            )));
        }
        for (i, o, wrong) in &disputes {
            let (m, owner) = (&masters[*i], &masters[*o]);
            tracing::warn!(node = %m.name, owner = %owner.name, slots = wrong.len(),
                first = wrong[0], "a master disagrees on moved slots' owner: telling it again");
            let mut con = m.con.clone();
            let mut pipe = redis::pipe();
            for slot in wrong {
                pipe.cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(*slot)
                    .arg("NODE")
                    .arg(&owner.id)
                    .ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut con).await {
                tracing::debug!(node = %m.name, error = %e, "SETSLOT NODE refused");
            }
            let mut con = owner.con.clone();
            redis::cmd("CLUSTER")
                .arg("BUMPEPOCH")
                .query_async::<redis::Value>(&mut con)
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

    #[test]
    fn every_master_gives_before_it_receives() {
        // 3 shards become 5: each old master gives to the next ones along the line.
        let ranges: Vec<(u16, u16)> = (0..5).map(|i| crate::even_slots(i, 5)).collect();
        let serves: Vec<Vec<(u16, u16)>> = (0..3)
            .map(|i| vec![crate::even_slots(i, 3)])
            .chain([vec![], vec![]])
            .collect();
        let moves = plan(&ranges, &serves).unwrap();
        let count = moves.len();
        let out = layers(moves, 5);
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), count);
        let pairs = |l: &Vec<Move>| {
            let mut p: Vec<(usize, usize)> = l.iter().map(|m| (m.source, m.target)).collect();
            p.dedup();
            p.sort_unstable();
            p.dedup();
            p
        };
        let got: Vec<Vec<(usize, usize)>> = out.iter().map(pairs).collect();
        assert_eq!(
            got,
            vec![vec![(1, 3), (2, 3), (2, 4)], vec![(1, 2)], vec![(0, 1)]]
        );
        // 5 back to 3: the same rule, the other way along.
        let ranges: Vec<(u16, u16)> = (0..3).map(|i| crate::even_slots(i, 3)).collect();
        let serves: Vec<Vec<(u16, u16)>> = (0..5).map(|i| vec![crate::even_slots(i, 5)]).collect();
        let got: Vec<Vec<(usize, usize)>> = layers(plan(&ranges, &serves).unwrap(), 5)
            .iter()
            .map(pairs)
            .collect();
        for (n, layer) in got.iter().enumerate() {
            for (source, _) in layer {
                let receives_earlier = got[..n].iter().flatten().any(|(_, t)| t == source);
                assert!(!receives_earlier, "{got:?}");
            }
        }
        // A cycle (0 gives to 1 and 1 to 0): one layer.
        let serves = vec![vec![(5, 9)], vec![(0, 4)]];
        let cyc = layers(plan(&[(0, 4), (5, 9)], &serves).unwrap(), 2);
        assert_eq!(cyc.len(), 1);
        assert_eq!(cyc[0].len(), 10);
    }
}
