//! The parameters of an API 3.0 request as one JSON object, whatever the wire form.
//!
//! A TC3 POST carries a JSON body; a TC3 GET and the old-signature forms carry flattened
//! pairs, where a list is `Name.N` and a nested field `Name.N.Field` (`Status.0=2`,
//! `InstanceParams.0.Key=timeout`). Flattened pairs are folded back into the same shape the
//! JSON body has, so each action reads its parameters one way. Values from pairs are strings;
//! the typed getters accept a number or a numeric string alike.

use crate::limits;
use crsd_core::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Params3 {
    fields: Map<String, Value>,
    /// The region the request names (`X-TC-Region`, or the old signature's `Region`): where
    /// the client believes it is, a common parameter rather than one of the action's.
    region: Option<String>,
}

impl Params3 {
    /// The same parameters, sent to `region` (see the field).
    pub fn in_region(mut self, region: Option<String>) -> Params3 {
        self.region = region.filter(|r| !r.is_empty());
        self
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// The names of the parameters given.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.fields.keys()
    }

    /// `other`'s non-null fields over these.
    pub fn overlay(&mut self, other: Params3) {
        for (k, v) in other.fields {
            if !v.is_null() {
                self.fields.insert(k, v);
            }
        }
    }

    /// From a JSON body: must be an object within the bounds of [`limits::check_json`].
    pub fn from_json(body: &[u8]) -> Result<Params3> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params3::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => {
                limits::check_json(&m)?;
                Ok(Params3 {
                    fields: m,
                    region: None,
                })
            }
            _ => Err(Error::invalid("body", "must be a JSON object")),
        }
    }

    /// From flattened pairs (`Name.N`, `Name.N.Field`); `skip` names common parameters that
    /// are not the action's. Every pair (common ones too) is checked by
    /// [`limits::check_pairs`] first. A name given both as a value and with segments under it
    /// (`Status=2&Status.0=3`) is refused; a name repeated as a value keeps the later one.
    pub fn from_pairs(pairs: &[(String, String)], skip: &[&str]) -> Result<Params3> {
        limits::check_pairs(pairs)?;
        let mut tree = Tree::default();
        for (k, v) in pairs {
            if skip.contains(&k.as_str()) {
                continue;
            }
            tree.insert(k, &limits::segments(k)?, v)?;
        }
        Ok(Params3 {
            fields: tree.into_map(),
            region: None,
        })
    }

    /// The string values of the fields `one` and the string items of the arrays `many`,
    /// whatever else they hold ignored (for the access log).
    pub fn instance_ids(&self, one: &[&str], many: &[&str]) -> Vec<String> {
        let mut ids = Vec::new();
        for name in one {
            if let Some(Value::String(s)) = self.fields.get(*name) {
                ids.push(s.clone());
            }
        }
        for name in many {
            if let Some(Value::Array(items)) = self.fields.get(*name) {
                ids.extend(items.iter().filter_map(|v| v.as_str().map(str::to_string)));
            }
        }
        ids
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    /// A scalar read as a string (numbers and booleans as written); a list or an object is
    /// refused.
    pub fn str(&self, name: &str) -> Result<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => scalar(v)
                .map(Some)
                .ok_or_else(|| Error::invalid(name, format!("must be a string, not {}", kind(v)))),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<String> {
        match self.str(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(Error::MissingParameter(name.to_string())),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => as_int(v)
                .map(Some)
                .ok_or_else(|| Error::invalid(name, "must be an integer")),
        }
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn required_int(&self, name: &str) -> Result<i64> {
        self.int(name)?
            .ok_or_else(|| Error::MissingParameter(name.to_string()))
    }

    /// A list of integers (numbers or numeric strings).
    pub fn int_list(&self, name: &str) -> Result<Vec<i64>> {
        self.list(name)?
            .iter()
            .map(|v| as_int(v).ok_or_else(|| Error::invalid(name, "must be integers")))
            .collect()
    }

    /// A list of strings (numbers read as written); a list or object inside is refused.
    pub fn str_list(&self, name: &str) -> Result<Vec<String>> {
        self.list(name)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(Error::invalid(
                    name,
                    format!("must be a list of strings, not of {}", kind(other)),
                )),
            })
            .collect()
    }

    /// A list: absent is empty; a scalar or an object where a list belongs is refused.
    fn list(&self, name: &str) -> Result<&[Value]> {
        match self.get(name) {
            None => Ok(&[]),
            Some(Value::Array(a)) => Ok(a),
            Some(other) => Err(Error::invalid(
                name,
                format!("must be a list, not {}", kind(other)),
            )),
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What a JSON value is, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Flattened names folded into a tree kept in one vector: a node's children always come after
/// it, so walking the vector backwards builds every child before its parent, without
/// recursion.
struct Tree {
    nodes: Vec<Node>,
}

enum Node {
    Leaf(String),
    /// Children by segment.
    Branch(BTreeMap<String, usize>),
}

impl Default for Tree {
    fn default() -> Tree {
        Tree {
            nodes: vec![Node::Branch(BTreeMap::new())],
        }
    }
}

impl Tree {
    fn insert(&mut self, name: &str, path: &[&str], value: &str) -> Result<()> {
        let conflict = || {
            Error::invalid(
                &limits::shown(name),
                "is given both as a value and as a list or object",
            )
        };
        let mut at = 0;
        for (i, segment) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            let next = self.nodes.len();
            let Node::Branch(children) = &mut self.nodes[at] else {
                return Err(conflict());
            };
            let child = *children.entry((*segment).to_string()).or_insert(next);
            if child == next {
                self.nodes.push(if last {
                    Node::Leaf(value.to_string())
                } else {
                    Node::Branch(BTreeMap::new())
                });
            } else if last {
                match &mut self.nodes[child] {
                    Node::Leaf(old) => *old = value.to_string(),
                    Node::Branch(_) => return Err(conflict()),
                }
            }
            at = child;
        }
        Ok(())
    }

    /// The root as a JSON object; any other branch whose segments are all list indexes
    /// becomes an array in index order (gaps closed).
    fn into_map(self) -> Map<String, Value> {
        let mut built: Vec<Value> = Vec::with_capacity(self.nodes.len());
        built.resize(self.nodes.len(), Value::Null);
        for (i, node) in self.nodes.into_iter().enumerate().rev() {
            built[i] = match node {
                Node::Leaf(s) => Value::String(s),
                Node::Branch(children) => {
                    let list = i != 0 && children.keys().all(|k| limits::is_index(k));
                    if list {
                        let mut items: Vec<(u32, usize)> = children
                            .iter()
                            .map(|(k, &c)| (k.parse().unwrap_or(u32::MAX), c))
                            .collect();
                        items.sort_unstable();
                        Value::Array(
                            items
                                .into_iter()
                                .map(|(_, c)| std::mem::take(&mut built[c]))
                                .collect(),
                        )
                    } else {
                        Value::Object(
                            children
                                .into_iter()
                                .map(|(k, c)| (k, std::mem::take(&mut built[c])))
                                .collect(),
                        )
                    }
                }
            };
        }
        match built.into_iter().next() {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flattened_pairs_fold_into_the_json_shape() {
        let p = Params3::from_pairs(
            &pairs(&[
                ("Limit", "20"),
                ("Status.1", "-1"),
                ("Status.0", "2"),
                ("InstanceParams.0.Key", "timeout"),
                ("InstanceParams.0.Value", "30"),
                ("Action", "DescribeInstanceBackups"),
            ]),
            &["Action"],
        )
        .unwrap();
        assert_eq!(p.int("Limit").unwrap(), Some(20));
        assert_eq!(p.int_list("Status").unwrap(), vec![2, -1]);
        assert_eq!(
            p.get("InstanceParams").unwrap(),
            &serde_json::json!([{"Key": "timeout", "Value": "30"}])
        );
        assert!(p.get("Action").is_none());
    }

    #[test]
    fn json_bodies_and_type_errors() {
        let p =
            Params3::from_json(br#"{"Limit": 5, "InstanceId": "crs-1", "Status": [2]}"#).unwrap();
        assert_eq!(p.int_or("Limit", 20).unwrap(), 5);
        assert_eq!(p.required_str("InstanceId").unwrap(), "crs-1");
        assert_eq!(p.int_list("Status").unwrap(), vec![2]);
        assert!(p.required_str("BackupId").is_err());
        let bad = Params3::from_json(br#"{"Limit": "many"}"#).unwrap();
        assert!(bad.int("Limit").is_err());
        assert!(Params3::from_json(b"[1]").is_err());
        assert!(Params3::from_json(b"").unwrap().fields.is_empty());
    }

    fn invalid(r: Result<Params3>) -> String {
        match r {
            Err(Error::InvalidParameter { name, reason }) => format!("{name}: {reason}"),
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn a_ten_thousand_segment_name_is_refused_without_recursion() {
        let deep = vec!["A"; 10_000].join(".");
        let why = invalid(Params3::from_pairs(&pairs(&[(deep.as_str(), "1")]), &[]));
        assert!(why.contains("longer than 128 bytes"), "{why}");
        assert!(why.len() < 200, "the name is not echoed whole: {why}");
        // Short segments, many of them: the segment limit.
        let nine = ["a"; 9].join(".");
        let why = invalid(Params3::from_pairs(&pairs(&[(nine.as_str(), "1")]), &[]));
        assert!(why.contains("more than 8 segments"), "{why}");
        let eight = ["a"; 8].join(".");
        let p = Params3::from_pairs(&pairs(&[(eight.as_str(), "1")]), &[]).unwrap();
        let mut v = p.get("a").unwrap();
        for _ in 0..6 {
            v = &v["a"];
        }
        assert_eq!(v["a"], "1");
    }

    #[test]
    fn indexes_are_small_integers() {
        let why = invalid(Params3::from_pairs(
            &pairs(&[("Status.99999999999", "2")]),
            &[],
        ));
        assert!(why.contains("at most 999"), "{why}");
        assert!(Params3::from_pairs(&pairs(&[("Status.1000", "2")]), &[]).is_err());
        let p =
            Params3::from_pairs(&pairs(&[("Status.999", "1"), ("Status.3", "0")]), &[]).unwrap();
        assert_eq!(p.int_list("Status").unwrap(), vec![0, 1], "gaps close");
        // Top-level names that are numbers stay names.
        let p = Params3::from_pairs(&pairs(&[("7", "x")]), &[]).unwrap();
        assert_eq!(p.str("7").unwrap().as_deref(), Some("x"));
    }

    #[test]
    fn malformed_names_and_values_are_refused() {
        for name in ["", "A..B", ".A", "A.", "A\u{0}B", "A\nB"] {
            assert!(
                Params3::from_pairs(&pairs(&[(name, "1")]), &[]).is_err(),
                "{name:?}"
            );
        }
        let why = invalid(Params3::from_pairs(&pairs(&[("VdcId", "a\u{7}b")]), &[]));
        assert!(why.contains("control characters"), "{why}");
        let big = "x".repeat(4097);
        let why = invalid(Params3::from_pairs(&pairs(&[("VdcId", big.as_str())]), &[]));
        assert!(why.contains("longer than 4096"), "{why}");
        let ok = "x".repeat(4096);
        assert!(Params3::from_pairs(&pairs(&[("VdcId", ok.as_str())]), &[]).is_ok());
        // Common parameters are checked too, though not folded.
        assert!(Params3::from_pairs(&pairs(&[("Action", "a\u{1}")]), &["Action"]).is_err());
    }

    #[test]
    fn request_size_is_bounded() {
        let many: Vec<(String, String)> = (0..513).map(|i| (format!("P{i}"), "v".into())).collect();
        assert!(invalid(Params3::from_pairs(&many, &[])).contains("at most 512"));
        assert!(Params3::from_pairs(&many[..512], &[]).is_ok());
        let heavy: Vec<(String, String)> = (0..17)
            .map(|i| (format!("P{i}"), "v".repeat(4000)))
            .collect();
        assert!(invalid(Params3::from_pairs(&heavy, &[])).contains("65536 bytes"));
    }

    #[test]
    fn a_name_both_value_and_list_is_refused() {
        for order in [
            [("Status", "2"), ("Status.0", "3")],
            [("Status.0", "3"), ("Status", "2")],
        ] {
            let why = invalid(Params3::from_pairs(&pairs(&order), &[]));
            assert!(why.contains("both"), "{why}");
        }
        // A repeated value: the later wins, as in the signed string.
        let p = Params3::from_pairs(&pairs(&[("Limit", "1"), ("Limit", "2")]), &[]).unwrap();
        assert_eq!(p.int("Limit").unwrap(), Some(2));
    }

    #[test]
    fn wrong_json_types_are_refused_not_ignored() {
        let p = Params3::from_json(
            br#"{"InstanceId": {"a": 1}, "SearchKey": ["x"], "Status": {"0": 2},
                 "ProjectIds": 5, "InstanceIds": ["crs-1", {"x": 1}], "TaskTypes": "001",
                 "Limit": 5, "Name": 7, "Ids": ["a", 2]}"#,
        )
        .unwrap();
        assert!(matches!(
            p.str("InstanceId"),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            p.required_str("InstanceId"),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(p.str("SearchKey").is_err());
        assert!(
            p.int_list("Status").is_err(),
            "an object where a list belongs"
        );
        assert!(
            p.int_list("ProjectIds").is_err(),
            "a scalar where a list belongs"
        );
        assert!(
            p.str_list("InstanceIds").is_err(),
            "an object inside a list"
        );
        assert!(p.str_list("TaskTypes").is_err());
        assert!(p.int("InstanceId").is_err());
        // What fits keeps working: numbers read as strings, absent lists empty.
        assert_eq!(p.str("Limit").unwrap().as_deref(), Some("5"));
        assert_eq!(p.str("Name").unwrap().as_deref(), Some("7"));
        assert_eq!(p.str_list("Ids").unwrap(), vec!["a", "2"]);
        assert!(p.str_list("Absent").unwrap().is_empty());
    }

    #[test]
    fn json_bodies_are_bounded_like_pairs() {
        // Nine levels of nesting: refused; eight: kept.
        let nest = |levels: usize| {
            let mut s = String::from("1");
            for _ in 1..levels {
                s = format!("[{s}]");
            }
            format!(r#"{{"A": {s}}}"#)
        };
        assert!(Params3::from_json(nest(8).as_bytes()).is_ok());
        let why = invalid(Params3::from_json(nest(9).as_bytes()));
        assert!(why.contains("nests more than 8"), "{why}");
        // Deeper than serde_json's own recursion limit: refused while parsing.
        assert!(Params3::from_json(nest(10_000).as_bytes()).is_err());
        let long_list = format!(r#"{{"Status": [{}]}}"#, vec!["2"; 1001].join(","));
        assert!(invalid(Params3::from_json(long_list.as_bytes())).contains("1000 items"));
        assert!(Params3::from_json(br#"{"VdcId": "a\u0007b"}"#).is_err());
        let long_key = format!(r#"{{"{}": 1}}"#, "k".repeat(129));
        assert!(Params3::from_json(long_key.as_bytes()).is_err());
        let heavy = format!(
            "{{{}}}",
            (0..17)
                .map(|i| format!(r#""P{i}": "{}""#, "v".repeat(4000)))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(Params3::from_json(heavy.as_bytes()).is_err());
    }
}
