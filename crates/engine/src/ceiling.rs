//! Kernel ceilings of a node: its redis-server runs in a cgroup of its own, whose memory limit
//! is `maxmemory` plus a headroom and whose CPU use is bounded.
//!
//! # Why
//!
//! `maxmemory` bounds the data set and the client buffers, not everything a redis-server can
//! allocate: Lua's heap is not counted at all (an `EVAL` building a table took a 1 GB instance
//! to 1.6 GB), nor a fork's copy-on-write pages. Without a ceiling one tenant can take the
//! host's memory from every other instance and from crsd. With one, the kernel OOM-kills that
//! tenant's redis-server (measured: within seconds, peak at the limit), the supervisor starts
//! it again from its AOF, and every other process keeps its memory. `oom_kill_disable` is
//! never set: a node frozen at its limit blocks its clients for good.
//!
//! # Where the groups live
//!
//! Under crsd's own cgroup, so a service manager that limits crsd limits its instances too,
//! and nothing outside the part of the tree crsd was given is touched:
//!
//! * cgroup v2 (current Debian): `<crsd's cgroup>/<group>/<node>`. The kernel's "no internal
//!   processes" rule forbids enabling controllers for children of a group that holds
//!   processes, so when crsd's own group holds crsd itself, crsd first moves itself (and any
//!   redis-server left there by an older crsd) into the leaf `<crsd's cgroup>/<group>-daemon`.
//!   A unit that runs crsd should set `Delegate=yes`.
//! * cgroup v1: `<crsd's memory cgroup>/<group>/<node>` in the memory hierarchy and the same
//!   under crsd's cpu cgroup, each controller at its own place.
//!
//! Where neither can be used (no memory controller, read-only or not delegated), crsd says so
//! once at start and runs its nodes without a ceiling.
//!
//! # Swap
//!
//! A memory limit alone lets a group swap instead of being stopped: v2 gets `memory.swap.max`
//! 0, v1 a `memory.memsw.limit_in_bytes` equal to the memory limit where swap accounting
//! exists.
//!
//! # Why not a crate
//!
//! What crsd needs is a dozen file writes at paths that differ per controller on v1 (crsd's
//! memory and cpu cgroups are not the same path). The general crates (`cgroups-rs`) create one
//! relative path in every mounted controller, bring a D-Bus client along, and still leave the
//! v2 delegation dance to the caller.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How big a node's ceiling is and how much CPU it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CeilingConfig {
    /// Name of the folder under crsd's own cgroup that holds one cgroup per node.
    pub group: String,
    /// Headroom above `maxmemory`, in percent of it...
    pub memory_headroom_percent: u64,
    /// ...but at least this many MB: a fork (replica sync, BGSAVE of a backup, AOF rewrite)
    /// copies the pages written while it runs, and redis-server itself needs a few MB.
    pub memory_headroom_min_mb: u64,
    /// Relative CPU share under contention, on cgroup v2's scale (1-10000; 100 is what every
    /// process gets by default). v1 `cpu.shares` = weight * 1024 / 100.
    pub cpu_weight: u64,
    /// Hard CPU cap in percent of one CPU (100 = one full core); 0 = no cap.
    pub cpu_quota_percent: u64,
}

impl Default for CeilingConfig {
    fn default() -> Self {
        CeilingConfig {
            group: "crsd".into(),
            memory_headroom_percent: 50,
            memory_headroom_min_mb: 64,
            cpu_weight: 100,
            cpu_quota_percent: 100,
        }
    }
}

impl CeilingConfig {
    /// The memory limit of a node with this `maxmemory`, in bytes.
    pub fn limit_bytes(&self, maxmemory_mb: u64) -> u64 {
        let headroom = (maxmemory_mb.saturating_mul(self.memory_headroom_percent) / 100)
            .max(self.memory_headroom_min_mb);
        maxmemory_mb
            .saturating_add(headroom)
            .saturating_mul(1024 * 1024)
    }

    fn check(&self) -> Result<(), String> {
        let name_ok = !self.group.is_empty()
            && self.group.len() <= 64
            && self
                .group
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && !self.group.starts_with('.');
        if !name_ok {
            return Err(format!(
                "cgroup group name must be 1-64 characters of [A-Za-z0-9._-], got {:?}",
                self.group
            ));
        }
        if !(1..=10000).contains(&self.cpu_weight) {
            return Err(format!(
                "cpu_weight must be 1-10000, got {}",
                self.cpu_weight
            ));
        }
        Ok(())
    }
}

/// What the kernel says about a node's cgroup (for operators and tests).
#[derive(Clone, Debug)]
pub struct CeilingStatus {
    /// The node's memory cgroup folder.
    pub memory_dir: PathBuf,
    /// `memory.limit_in_bytes` (v1) / `memory.max` (v2).
    pub limit_bytes: u64,
    /// Highest usage since the group was made: `memory.max_usage_in_bytes` (v1) /
    /// `memory.peak` (v2, kernels from 5.19; `None` before).
    pub peak_bytes: Option<u64>,
    /// Processes the kernel killed in this group because it reached its limit.
    pub oom_kills: u64,
}

/// The cgroup tree crsd uses on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tree {
    V1 {
        /// `<memory mount><crsd's memory cgroup>/<group>`.
        memory: PathBuf,
        /// Its path as `/proc/<pid>/cgroup` names it.
        memory_rel: String,
        /// The same for the cpu controller, when it is mounted and writable.
        cpu: Option<(PathBuf, String)>,
    },
    V2 {
        /// `<cgroup2 mount><crsd's cgroup>/<group>`.
        group: PathBuf,
        group_rel: String,
        cpu: bool,
    },
}

/// The ceilings of every node an engine drives.
#[derive(Clone, Debug)]
pub(crate) struct Ceilings {
    tree: Tree,
    cfg: CeilingConfig,
}

/// A cgroup mount from /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    /// The part of the hierarchy mounted there.
    root: String,
    point: PathBuf,
    /// `cgroup2`, or the v1 controllers of this hierarchy.
    v2: bool,
    controllers: Vec<String>,
}

impl Ceilings {
    /// Finds a usable cgroup tree and makes `<crsd's cgroup>/<group>`. `Err` says why nodes
    /// must run without a ceiling.
    pub(crate) fn detect(cfg: &CeilingConfig) -> Result<Ceilings, String> {
        cfg.check()?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        Ceilings::detect_in(cfg, &mountinfo, &own)
    }

    /// `detect` from the text of /proc/self/mountinfo and /proc/self/cgroup.
    fn detect_in(cfg: &CeilingConfig, mountinfo: &str, own: &str) -> Result<Ceilings, String> {
        let mounts = parse_mountinfo(mountinfo);
        let tree = if let Some(memory) = mounts
            .iter()
            .find(|m| !m.v2 && m.controllers.iter().any(|c| c == "memory"))
        {
            v1_tree(cfg, memory, &mounts, own)?
        } else if let Some(unified) = mounts.iter().find(|m| m.v2) {
            v2_tree(cfg, unified, own)?
        } else {
            return Err("no cgroup memory controller is mounted".into());
        };
        Ok(Ceilings {
            tree,
            cfg: cfg.clone(),
        })
    }

    pub(crate) fn config(&self) -> &CeilingConfig {
        &self.cfg
    }

    pub(crate) fn version(&self) -> u8 {
        match self.tree {
            Tree::V1 { .. } => 1,
            Tree::V2 { .. } => 2,
        }
    }

    /// The node's memory cgroup folder (it may not exist yet).
    pub(crate) fn memory_dir(&self, node: &str) -> PathBuf {
        match &self.tree {
            Tree::V1 { memory, .. } => memory.join(node),
            Tree::V2 { group, .. } => group.join(node),
        }
    }

    /// Makes the node's cgroup(s) if needed and sets the memory limit for `maxmemory_mb` and
    /// the CPU bounds. Idempotent.
    pub(crate) fn prepare(&self, node: &str, maxmemory_mb: u64) -> io::Result<()> {
        let limit = self.cfg.limit_bytes(maxmemory_mb);
        self.ensure_group()?;
        match &self.tree {
            Tree::V1 { memory, cpu, .. } => {
                let dir = self.make_node_dir(memory, node)?;
                // An adopted node brings the memory it already uses along (where the kernel
                // still offers it; newer kernels deprecate it).
                let _ = write(&dir.join("memory.move_charge_at_immigrate"), "3");
                self.set_v1_limit(&dir, limit)?;
                if let Some((cpu, _)) = cpu {
                    let set_cpu = || -> io::Result<()> {
                        let dir = self.make_node_dir(cpu, node)?;
                        let shares = (self.cfg.cpu_weight * 1024 / 100).max(2);
                        write(&dir.join("cpu.shares"), &shares.to_string())?;
                        let period = 100_000u64;
                        let quota = match self.cfg.cpu_quota_percent {
                            0 => "-1".to_string(),
                            p => (period * p / 100).max(1000).to_string(),
                        };
                        write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                        write(&dir.join("cpu.cfs_quota_us"), &quota)
                    };
                    cpu_bound_result(node, set_cpu());
                }
            }
            Tree::V2 { group, cpu, .. } => {
                let dir = self.make_node_dir(group, node)?;
                write(&dir.join("memory.max"), &limit.to_string())?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
                if *cpu {
                    let set_cpu = || -> io::Result<()> {
                        write(&dir.join("cpu.weight"), &self.cfg.cpu_weight.to_string())?;
                        let max = match self.cfg.cpu_quota_percent {
                            0 => "max 100000".to_string(),
                            p => format!("{} 100000", (100_000 * p / 100).max(1000)),
                        };
                        write(&dir.join("cpu.max"), &max)
                    };
                    cpu_bound_result(node, set_cpu());
                }
            }
        }
        Ok(())
    }

    /// Makes the group folder(s) again if someone removed them since `detect` (an operator
    /// tidying up, a test harness).
    fn ensure_group(&self) -> io::Result<()> {
        match &self.tree {
            Tree::V1 { memory, cpu, .. } => {
                make_dir(memory)?;
                if let Some((cpu, _)) = cpu {
                    make_dir(cpu)?;
                }
                Ok(())
            }
            Tree::V2 { group, cpu, .. } => {
                if group.is_dir() {
                    return Ok(());
                }
                make_dir(group)?;
                write(
                    &group.join("cgroup.subtree_control"),
                    if *cpu { "+memory +cpu" } else { "+memory" },
                )
            }
        }
    }

    /// `group/node`, made if missing; the group too if it went away in between.
    fn make_node_dir(&self, group: &Path, node: &str) -> io::Result<PathBuf> {
        let dir = group.join(node);
        let mut tries = 0;
        loop {
            match make_dir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => {
                    tries += 1;
                    self.ensure_group()?;
                }
                other => return other.map(|()| dir),
            }
        }
    }

    /// v1: the memory limit and, where swap is accounted, the memory+swap limit equal to it,
    /// in the order the kernel accepts (memsw must never be below the memory limit).
    fn set_v1_limit(&self, dir: &Path, limit: u64) -> io::Result<()> {
        let mem = dir.join("memory.limit_in_bytes");
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if !memsw.exists() {
            return write(&mem, &limit.to_string());
        }
        let current = read_u64(&mem).unwrap_or(u64::MAX);
        if limit >= current {
            write(&memsw, &limit.to_string())?;
            write(&mem, &limit.to_string())
        } else {
            write(&mem, &limit.to_string())?;
            write(&memsw, &limit.to_string())
        }
    }

    /// Puts `pid` (all its threads) into the node's cgroup(s).
    pub(crate) fn enter(&self, node: &str, pid: u32) -> io::Result<()> {
        match &self.tree {
            Tree::V1 { memory, cpu, .. } => {
                write(&memory.join(node).join("cgroup.procs"), &pid.to_string())?;
                if let Some((cpu, _)) = cpu {
                    let entered = write(&cpu.join(node).join("cgroup.procs"), &pid.to_string());
                    cpu_bound_result(node, entered);
                }
                Ok(())
            }
            Tree::V2 { group, .. } => {
                write(&group.join(node).join("cgroup.procs"), &pid.to_string())
            }
        }
    }

    /// Whether `pid` runs in the node's cgroup(s).
    pub(crate) fn contains(&self, node: &str, pid: u32) -> bool {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return false;
        };
        match &self.tree {
            Tree::V1 {
                memory_rel, cpu, ..
            } => {
                let mem_ok =
                    v1_path_of(&text, "memory").is_some_and(|p| p == join_rel(memory_rel, node));
                let cpu_ok = cpu.as_ref().is_none_or(|(_, rel)| {
                    v1_path_of(&text, "cpu").is_some_and(|p| p == join_rel(rel, node))
                });
                mem_ok && cpu_ok
            }
            Tree::V2 { group_rel, .. } => {
                v2_path_of(&text).is_some_and(|p| p == join_rel(group_rel, node))
            }
        }
    }

    /// What the kernel reports about the node's memory cgroup; `None` if it does not exist.
    pub(crate) fn status(&self, node: &str) -> Option<CeilingStatus> {
        let dir = self.memory_dir(node);
        if !dir.is_dir() {
            return None;
        }
        let (limit, peak, oom_kills) = match &self.tree {
            Tree::V1 { .. } => (
                read_u64(&dir.join("memory.limit_in_bytes")).ok()?,
                read_u64(&dir.join("memory.max_usage_in_bytes")).ok(),
                keyed_u64(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0),
            ),
            Tree::V2 { .. } => (
                read_u64(&dir.join("memory.max")).unwrap_or(u64::MAX),
                read_u64(&dir.join("memory.peak")).ok(),
                keyed_u64(&dir.join("memory.events"), "oom_kill").unwrap_or(0),
            ),
        };
        Some(CeilingStatus {
            memory_dir: dir,
            limit_bytes: limit,
            peak_bytes: peak,
            oom_kills,
        })
    }

    /// Removes the node's cgroup(s). Fine if they are gone; an error if a process still runs
    /// in them.
    pub(crate) fn remove(&self, node: &str) -> io::Result<()> {
        let dirs = match &self.tree {
            Tree::V1 { memory, cpu, .. } => {
                let mut v = vec![memory.join(node)];
                if let Some((cpu, _)) = cpu {
                    v.push(cpu.join(node));
                }
                v
            }
            Tree::V2 { group, .. } => vec![group.join(node)],
        };
        for dir in dirs {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("removing cgroup {}: {e}", dir.display()),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The CPU bound is secondary to the memory ceiling: a host that refuses it (e.g. v1 refuses a
/// child's quota above its parent's) gets a warning, and the node still starts.
fn cpu_bound_result(node: &str, result: io::Result<()>) {
    if let Err(e) = result {
        tracing::warn!(node, error = %e, "cannot set the node's CPU bound; it runs without one");
    }
}

fn v1_tree(
    cfg: &CeilingConfig,
    memory: &Mount,
    mounts: &[Mount],
    own: &str,
) -> Result<Tree, String> {
    let mem_rel =
        v1_path_of(own, "memory").ok_or("/proc/self/cgroup names no memory cgroup (cgroup v1)")?;
    let mem_group = join_rel(&mem_rel, &cfg.group);
    let mem_dir = on_disk(memory, &mem_group)
        .ok_or_else(|| format!("crsd's memory cgroup {mem_rel} is outside the mounted part"))?;
    make_dir(&mem_dir).map_err(|e| {
        format!(
            "cannot create the memory cgroup {} ({e}); is crsd allowed to manage cgroups?",
            mem_dir.display()
        )
    })?;
    if !mem_dir.join("memory.limit_in_bytes").exists() {
        return Err(format!(
            "{} has no memory.limit_in_bytes",
            mem_dir.display()
        ));
    }
    let cpu = mounts
        .iter()
        .find(|m| !m.v2 && m.controllers.iter().any(|c| c == "cpu"))
        .and_then(|cpu_mount| {
            let rel = join_rel(&v1_path_of(own, "cpu")?, &cfg.group);
            let dir = on_disk(cpu_mount, &rel)?;
            match make_dir(&dir) {
                Ok(()) if dir.join("cpu.shares").exists() => Some((dir, rel)),
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e,
                        "cannot create the cpu cgroup; instances run without a CPU bound");
                    None
                }
            }
        });
    Ok(Tree::V1 {
        memory: mem_dir,
        memory_rel: mem_group,
        cpu,
    })
}

fn v2_tree(cfg: &CeilingConfig, unified: &Mount, own: &str) -> Result<Tree, String> {
    let own_rel = v2_path_of(own).ok_or("/proc/self/cgroup names no cgroup v2 path")?;
    // Already moved into the leaf by an earlier engine of this process: its parent is ours.
    let leaf = format!("{}-daemon", cfg.group);
    let own_rel = match own_rel.rsplit_once('/') {
        Some((parent, last)) if last == leaf => {
            if parent.is_empty() {
                "/".to_string()
            } else {
                parent.to_string()
            }
        }
        _ => own_rel,
    };
    let own_dir = on_disk(unified, &own_rel)
        .ok_or_else(|| format!("crsd's cgroup {own_rel} is outside the mounted part"))?;
    let available = fs::read_to_string(own_dir.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| available.split_whitespace().any(|x| x == c);
    if !has("memory") {
        return Err(format!(
            "the memory controller is not available in crsd's cgroup {} (cgroup v2); give \
             crsd's unit Delegate=yes or enable +memory in its parent's cgroup.subtree_control",
            own_dir.display()
        ));
    }
    let cpu = has("cpu");
    let wanted = if cpu { "+memory +cpu" } else { "+memory" };
    enable_controllers(&own_dir, wanted, &leaf)?;
    let group_rel = join_rel(&own_rel, &cfg.group);
    let group = own_dir.join(&cfg.group);
    make_dir(&group).map_err(|e| format!("cannot create {} ({e})", group.display()))?;
    write(&group.join("cgroup.subtree_control"), wanted)
        .map_err(|e| format!("cannot enable {wanted} in {} ({e})", group.display()))?;
    Ok(Tree::V2 {
        group,
        group_rel,
        cpu,
    })
}

/// Enables `wanted` for the children of `own_dir`. When the kernel refuses because the group
/// holds processes ("no internal processes"), crsd and redis-servers left there move into the
/// leaf `own_dir/leaf` first (adoption later moves each redis-server into its node's group).
fn enable_controllers(own_dir: &Path, wanted: &str, leaf: &str) -> Result<(), String> {
    let control = own_dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&control).unwrap_or_default();
    if wanted
        .split_whitespace()
        .all(|w| enabled.split_whitespace().any(|e| e == &w[1..]))
    {
        return Ok(());
    }
    match write(&control, wanted) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        Err(e) => {
            return Err(format!(
                "cannot enable {wanted} in {} ({e})",
                control.display()
            ))
        }
    }
    let leaf_dir = own_dir.join(leaf);
    make_dir(&leaf_dir).map_err(|e| format!("cannot create {} ({e})", leaf_dir.display()))?;
    let me = std::process::id();
    let procs = fs::read_to_string(own_dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let ours = pid == me
            || fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "redis-server");
        if ours {
            write(&leaf_dir.join("cgroup.procs"), &pid.to_string())
                .map_err(|e| format!("cannot move pid {pid} into {} ({e})", leaf_dir.display()))?;
        }
    }
    write(&control, wanted).map_err(|e| {
        format!(
            "cannot enable {wanted} in {} ({e}): other processes share crsd's cgroup; run crsd \
             in a cgroup of its own (a systemd unit with Delegate=yes)",
            control.display()
        )
    })
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 {
            continue;
        }
        let (root, point) = (unescape(left[3]), unescape(left[4]));
        match right[0] {
            "cgroup2" => out.push(Mount {
                root,
                point: PathBuf::from(point),
                v2: true,
                controllers: Vec::new(),
            }),
            "cgroup" => out.push(Mount {
                root,
                point: PathBuf::from(point),
                v2: false,
                controllers: right[2].split(',').map(str::to_string).collect(),
            }),
            _ => {}
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v1 path of `controller` in a /proc/<pid>/cgroup text.
fn v1_path_of(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// The v2 path in a /proc/<pid>/cgroup text (the `0::` line).
fn v2_path_of(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

fn join_rel(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// The folder of cgroup `rel` (a path from the hierarchy's root) under `mount`.
fn on_disk(mount: &Mount, rel: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rest = if root.is_empty() {
        rel
    } else {
        rel.strip_prefix(root)?
    };
    let rest = rest.trim_start_matches('/');
    if rest.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rest.is_empty() {
        mount.point.clone()
    } else {
        mount.point.join(rest)
    })
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

fn read_u64(path: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(path)?;
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {t:?}", path.display()),
        )
    })
}

/// `key N` from a flat-keyed cgroup file (`memory.oom_control`, `memory.events`).
fn keyed_u64(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_maxmemory_plus_the_larger_headroom() {
        let c = CeilingConfig::default();
        const MB: u64 = 1024 * 1024;
        assert_eq!(c.limit_bytes(64), (64 + 64) * MB);
        assert_eq!(c.limit_bytes(1024), (1024 + 512) * MB);
        let c = CeilingConfig {
            memory_headroom_percent: 25,
            memory_headroom_min_mb: 0,
            ..CeilingConfig::default()
        };
        assert_eq!(c.limit_bytes(1024), 1280 * MB);
    }

    #[test]
    fn finds_v1_controllers_and_the_unified_mount() {
        let info = "\
30 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
40 30 0:40 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
41 23 0:41 / /mnt/with\\040space rw - ext4 /dev/sda rw
";
        let mounts = parse_mountinfo(info);
        assert_eq!(mounts.len(), 4);
        assert!(mounts[0].v2);
        assert_eq!(mounts[1].controllers, vec!["rw", "memory"]);
        assert_eq!(mounts[2].point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        let pids = &mounts[3];
        assert_eq!(
            on_disk(pids, "/docker/abc/crsd"),
            Some(PathBuf::from("/sys/fs/cgroup/pids/crsd"))
        );
        assert_eq!(on_disk(pids, "/other"), None);
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
    }

    #[test]
    fn reads_own_paths_per_controller() {
        let text =
            "12:pids:/\n4:memory:/user.slice/x\n2:cpu,cpuacct:/user.slice\n0::/user.slice/y\n";
        assert_eq!(v1_path_of(text, "memory").as_deref(), Some("/user.slice/x"));
        assert_eq!(v1_path_of(text, "cpu").as_deref(), Some("/user.slice"));
        assert_eq!(v1_path_of(text, "cpuacct").as_deref(), Some("/user.slice"));
        assert_eq!(v2_path_of(text).as_deref(), Some("/user.slice/y"));
        assert_eq!(join_rel("/", "crsd"), "/crsd");
        assert_eq!(join_rel("/a/b", "crsd"), "/a/b/crsd");
    }

    /// The v2 layout on a stand-in tree (plain files where the kernel has its own): crsd's
    /// group under its cgroup, controllers enabled for both levels, the node's limits.
    #[test]
    fn lays_out_a_v2_tree_under_crsds_own_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let own = root.join("system.slice/crsd.service");
        fs::create_dir_all(&own).unwrap();
        fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        let mountinfo = format!(
            "30 23 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            root.display()
        );
        let cfg = CeilingConfig::default();
        let c = Ceilings::detect_in(&cfg, &mountinfo, "0::/system.slice/crsd.service\n")
            .expect("usable");
        assert_eq!(c.version(), 2);
        assert_eq!(
            fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(),
            "+memory +cpu"
        );
        let group = own.join("crsd");
        assert_eq!(
            fs::read_to_string(group.join("cgroup.subtree_control")).unwrap(),
            "+memory +cpu"
        );

        c.prepare("crs-a-master", 64).unwrap();
        let node = group.join("crs-a-master");
        assert_eq!(c.memory_dir("crs-a-master"), node);
        assert_eq!(
            fs::read_to_string(node.join("memory.max")).unwrap(),
            (128 * 1024 * 1024).to_string()
        );
        assert_eq!(fs::read_to_string(node.join("cpu.weight")).unwrap(), "100");
        assert_eq!(
            fs::read_to_string(node.join("cpu.max")).unwrap(),
            "100000 100000"
        );
        c.enter("crs-a-master", 4242).unwrap();
        assert_eq!(
            fs::read_to_string(node.join("cgroup.procs")).unwrap(),
            "4242"
        );
        fs::write(
            node.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n",
        )
        .unwrap();
        let status = c.status("crs-a-master").unwrap();
        assert_eq!(status.oom_kills, 2);
        assert_eq!(status.limit_bytes, 128 * 1024 * 1024);

        // An engine of a process that already moved into the daemon leaf finds the same group.
        let again = Ceilings::detect_in(
            &cfg,
            &mountinfo,
            "0::/system.slice/crsd.service/crsd-daemon\n",
        )
        .expect("usable");
        assert_eq!(again.memory_dir("x"), group.join("x"));

        // No memory controller delegated: a reason, no ceiling.
        fs::write(own.join("cgroup.controllers"), "cpu pids\n").unwrap();
        let err = Ceilings::detect_in(&cfg, &mountinfo, "0::/system.slice/crsd.service\n")
            .expect_err("unusable");
        assert!(err.contains("Delegate=yes"), "{err}");
    }

    #[test]
    fn refuses_a_group_name_that_is_a_path() {
        for bad in ["", "..", "a/b", ".hidden"] {
            let c = CeilingConfig {
                group: bad.into(),
                ..CeilingConfig::default()
            };
            assert!(c.check().is_err(), "{bad:?}");
        }
        assert!(CeilingConfig::default().check().is_ok());
    }
}
