//! Backup keys. Their parts become file names, so they are validated at every use: only
//! `[A-Za-z0-9-]{1,64}`, which can never be `..`, contain a separator, or start a hidden file.

use crate::StoreError;

/// Names one backup of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackupKey {
    pub instance_id: String,
    pub backup_id: String,
}

impl BackupKey {
    /// A validated key.
    pub fn new(
        instance_id: impl Into<String>,
        backup_id: impl Into<String>,
    ) -> Result<BackupKey, StoreError> {
        let key = BackupKey {
            instance_id: instance_id.into(),
            backup_id: backup_id.into(),
        };
        key.validate()?;
        Ok(key)
    }

    /// Checks both parts; the fields are public, so stores call this before touching the disk.
    pub fn validate(&self) -> Result<(), StoreError> {
        for part in [&self.instance_id, &self.backup_id] {
            if !valid_part(part) {
                return Err(StoreError::InvalidKey(format!("{part:?}")));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.instance_id, self.backup_id)
    }
}

fn valid_part(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_checked() {
        assert!(BackupKey::new("crs-abc123", "b-1").is_ok());
        assert!(BackupKey::new("a".repeat(64), "B").is_ok());
        for bad in ["", "..", ".", "a/b", "a\\b", "a.rdb", "a b", "é", "a\0b"] {
            assert!(BackupKey::new(bad, "b").is_err(), "{bad:?}");
            assert!(BackupKey::new("i", bad).is_err(), "{bad:?}");
        }
        assert!(BackupKey::new("a".repeat(65), "b").is_err());
    }
}
