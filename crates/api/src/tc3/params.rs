//! The parameters of an API 3.0 request as one JSON object, whatever the wire form.
//!
//! A TC3 POST carries a JSON body; a TC3 GET and the old-signature forms carry flattened
//! pairs, where a list is `Name.N` and a nested field `Name.N.Field` (`Status.0=2`,
//! `InstanceParams.0.Key=timeout`). Flattened pairs are folded back into the same shape the
//! JSON body has, so each action reads its parameters one way. Values from pairs are strings;
//! the typed getters accept a number or a numeric string alike.

use crsd_core::{Error, Result};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default)]
pub struct Params3(pub Map<String, Value>);

impl Params3 {
    /// From a JSON body: must be an object.
    pub fn from_json(body: &[u8]) -> Result<Params3> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params3::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Params3(m)),
            _ => Err(Error::invalid("body", "must be a JSON object")),
        }
    }

    /// From flattened pairs (`Name.N`, `Name.N.Field`); `skip` names common parameters that
    /// are not the action's.
    pub fn from_pairs(pairs: &[(String, String)], skip: &[&str]) -> Params3 {
        let mut root = Value::Object(Map::new());
        for (k, v) in pairs {
            if skip.contains(&k.as_str()) {
                continue;
            }
            insert_path(&mut root, &k.split('.').collect::<Vec<_>>(), v);
        }
        let Value::Object(map) = compact(root) else {
            return Params3::default();
        };
        Params3(map)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn required_str(&self, name: &str) -> Result<String> {
        match self.str(name) {
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

    pub fn int_list(&self, name: &str) -> Result<Vec<i64>> {
        self.list(name)
            .iter()
            .map(|v| as_int(v).ok_or_else(|| Error::invalid(name, "must be integers")))
            .collect()
    }

    pub fn str_list(&self, name: &str) -> Vec<String> {
        self.list(name)
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect()
    }

    fn list(&self, name: &str) -> Vec<Value> {
        match self.get(name) {
            Some(Value::Array(a)) => a.clone(),
            Some(other) => vec![other.clone()],
            None => Vec::new(),
        }
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Inserts `value` at `path` where numeric segments index lists (kept as objects keyed by
/// the index until `compact` turns them into arrays in index order).
fn insert_path(node: &mut Value, path: &[&str], value: &str) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Value::Object(map) = node else {
        return;
    };
    if rest.is_empty() {
        map.insert(first.to_string(), Value::String(value.to_string()));
        return;
    }
    let child = map
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !child.is_object() {
        *child = Value::Object(Map::new());
    }
    insert_path(child, rest, value);
}

/// Objects whose keys are all indexes become arrays (sorted by index).
fn compact(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let all_index = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            if all_index {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(0), compact(v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(map.into_iter().map(|(k, v)| (k, compact(v))).collect())
            }
        }
        other => other,
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
        );
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
        assert!(Params3::from_json(b"").unwrap().0.is_empty());
    }
}
