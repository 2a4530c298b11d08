//! The redis parameters an instance's user may change (API 3.0 DescribeInstanceParams /
//! ModifyInstanceParams): a documented allow-list with each value's domain. Everything else
//! (persistence, ACL, replication, limits crsd relies on) stays crsd's.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// One of these values.
    Enum(&'static [&'static str]),
    /// An integer within [min, max].
    Integer { min: i64, max: i64 },
    /// Text whose characters all come from this set.
    Text { chars: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDef {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The value an instance starts with.
    pub default: &'static str,
    pub tips: &'static str,
}

pub const PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "maxmemory-policy",
        kind: ParamKind::Enum(&[
            "noeviction",
            "allkeys-lru",
            "volatile-lru",
            "allkeys-lfu",
            "volatile-lfu",
            "allkeys-random",
            "volatile-random",
            "volatile-ttl",
        ]),
        default: "noeviction",
        tips: "what redis evicts when maxmemory is reached",
    },
    ParamDef {
        name: "timeout",
        kind: ParamKind::Integer { min: 0, max: 7200 },
        default: "0",
        tips: "close a client idle this many seconds (0: never)",
    },
    ParamDef {
        name: "notify-keyspace-events",
        kind: ParamKind::Text {
            chars: "KEg$lshzxetmdnA",
        },
        default: "",
        tips: "keyspace notifications (see redis.conf)",
    },
    ParamDef {
        name: "slowlog-log-slower-than",
        kind: ParamKind::Integer {
            min: -1,
            max: 10_000_000,
        },
        default: "10000",
        tips: "log commands slower than this many microseconds",
    },
    ParamDef {
        name: "slowlog-max-len",
        kind: ParamKind::Integer {
            min: 0,
            max: 10_000,
        },
        default: "128",
        tips: "slow log entries kept",
    },
    ParamDef {
        name: "hz",
        kind: ParamKind::Integer { min: 1, max: 500 },
        default: "10",
        tips: "background task frequency",
    },
    ParamDef {
        name: "lazyfree-lazy-eviction",
        kind: ParamKind::Enum(&["yes", "no"]),
        default: "no",
        tips: "free evicted keys in the background",
    },
];

pub fn find(name: &str) -> Option<&'static ParamDef> {
    PARAMS.iter().find(|p| p.name == name)
}

/// The value `name` has on an instance whose own settings are `set`: its own, or else the
/// default. `None` only for a name neither set nor on the allow-list.
pub fn current(set: &std::collections::BTreeMap<String, String>, name: &str) -> Option<String> {
    set.get(name)
        .cloned()
        .or_else(|| find(name).map(|d| d.default.to_string()))
}

/// Checks `value` for the parameter `name`; the parameter must be on the allow-list.
pub fn check(name: &str, value: &str) -> Result<()> {
    let def = find(name).ok_or_else(|| {
        Error::invalid(
            "InstanceParams",
            format!("{name} is not a parameter users may set"),
        )
    })?;
    let ok = match def.kind {
        ParamKind::Enum(values) => values.contains(&value),
        ParamKind::Integer { min, max } => value
            .trim()
            .parse::<i64>()
            .is_ok_and(|v| (min..=max).contains(&v)),
        ParamKind::Text { chars } => value.chars().all(|c| chars.contains(c)),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "InstanceParams",
            format!("{value:?} is not a valid value of {name}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_and_domains() {
        assert!(check("maxmemory-policy", "allkeys-lru").is_ok());
        assert!(check("maxmemory-policy", "everything").is_err());
        assert!(check("timeout", "7200").is_ok());
        assert!(check("timeout", "7201").is_err());
        assert!(check("timeout", "x").is_err());
        assert!(check("notify-keyspace-events", "Ex").is_ok());
        assert!(check("notify-keyspace-events", "E\n").is_err());
        assert!(check("appendonly", "no").is_err(), "not the user's");
        assert!(check("requirepass", "x").is_err(), "not the user's");
        for p in PARAMS {
            assert!(check(p.name, p.default).is_ok(), "{} default", p.name);
        }
    }
}
