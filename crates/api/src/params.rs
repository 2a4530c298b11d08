//! Request parameters as the query-style dialects send them: a flat map of decoded pairs,
//! with arrays as `name.0`, `name.1`, ... Keys are looked up with `_` read as `.`, the same
//! normalisation the v2 signature applies, so what is signed is what is used.

use crate::limits;
use crsd_core::{Error, Result};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Later pairs win, as they do in the signed string. Pairs beyond the bounds of
    /// [`limits`] (names read with `_` as `.`) are refused.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Params> {
        limits::check_pairs(pairs)?;
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let name = k.replace('_', ".");
            limits::segments(&name)?;
            map.insert(name, v.clone());
        }
        Ok(Params { map })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// A present, non-empty string.
    pub fn str(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).map(str::to_string)
    }

    pub fn required_str(&self, name: &str) -> Result<String> {
        self.str(name)
            .ok_or_else(|| Error::MissingParameter(name.to_string()))
    }

    /// A present string that may be empty (passwords: empty has its own error code).
    pub fn required_raw(&self, name: &str) -> Result<String> {
        self.get(name)
            .map(str::to_string)
            .ok_or_else(|| Error::MissingParameter(name.to_string()))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Error::invalid(name, format!("{v:?} is not an integer"))),
        }
    }

    pub fn required_int(&self, name: &str) -> Result<i64> {
        self.int(name)?
            .ok_or_else(|| Error::MissingParameter(name.to_string()))
    }

    pub fn int_or(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    /// `name.0`, `name.1`, ... in index order; gaps are allowed, empty values are skipped.
    pub fn array(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.");
        let mut items: Vec<(u64, String)> = self
            .map
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| {
                let idx = k[prefix.len()..].parse::<u64>().ok()?;
                (!v.is_empty()).then(|| (idx, v.clone()))
            })
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, v)| v).collect()
    }

    pub fn int_array(&self, name: &str) -> Result<Vec<i64>> {
        self.array(name)
            .into_iter()
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    Error::invalid(&format!("{name}.n"), format!("{v:?} is not an integer"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Params::from_pairs(&v).unwrap()
    }

    #[test]
    fn arrays_in_index_order() {
        let q = p(&[
            ("dealIds.1", "b"),
            ("dealIds.0", "a"),
            ("dealIds.10", "c"),
            ("dealIdsX", "no"),
        ]);
        assert_eq!(q.array("dealIds"), vec!["a", "b", "c"]);
        assert!(q.array("redisIds").is_empty());
    }

    #[test]
    fn underscore_keys_read_as_dots_and_later_wins() {
        let q = p(&[("dealIds_0", "d-1"), ("dealIds.0", "deal-A")]);
        assert_eq!(q.array("dealIds"), vec!["deal-A"]);
    }

    #[test]
    fn ints() {
        let q = p(&[
            ("limit", "10"),
            ("offset", "x"),
            ("projectIds.0", "0"),
            ("projectIds.1", "y"),
        ]);
        assert_eq!(q.required_int("limit").unwrap(), 10);
        assert!(matches!(
            q.int("offset"),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            q.required_int("memSize"),
            Err(Error::MissingParameter(_))
        ));
        assert!(q.int_array("projectIds").is_err());
    }

    #[test]
    fn names_are_bounded_as_in_every_dialect() {
        let deep = vec!["a"; 10_000].join("_");
        let v = vec![(deep, "1".to_string())];
        assert!(matches!(
            Params::from_pairs(&v),
            Err(Error::InvalidParameter { .. })
        ));
        // `_` counts as `.`: nine segments are refused, eight kept.
        let nine = vec![(["a"; 9].join("_"), "1".to_string())];
        assert!(Params::from_pairs(&nine).is_err());
        let eight = vec![(["a"; 8].join("_"), "1".to_string())];
        assert!(Params::from_pairs(&eight).is_ok());
        let huge_index = vec![("dealIds.99999999999".to_string(), "d".to_string())];
        assert!(Params::from_pairs(&huge_index).is_err());
        let control = vec![("remark".to_string(), "a\rb".to_string())];
        assert!(Params::from_pairs(&control).is_err());
    }
}
