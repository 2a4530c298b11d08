//! Ids look like the cloud's: `crs-` + 8 lowercase alphanumerics for instances, UUIDs for
//! backups, increasing integers (from the database) for deals and tasks.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

pub fn new_instance_id() -> String {
    let mut rng = rand::thread_rng();
    let tail: String = (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("crs-{tail}")
}

/// A node id of the warm pool, `node-` + 12 lowercase hex digits (see `model::WarmNode`).
pub fn new_warm_node_id() -> String {
    let bytes: [u8; 6] = rand::thread_rng().gen();
    format!("node-{}", hex::encode(bytes))
}

/// A backup id: a random UUID, like the cloud's (`fb8d2cd6-f6ee-11e6-ac36-525400394272`).
pub fn new_backup_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Does `s` have the shape of a backup id (a UUID)?
pub fn looks_like_backup_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// A random secret for crsd's own ACL users (admin, replication): 32 hex characters.
pub fn new_secret() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    hex::encode(bytes)
}

/// Does `s` have the shape of an instance id? Used to answer "not found" early for garbage.
pub fn looks_like_instance_id(s: &str) -> bool {
    s.len() == 12
        && s.starts_with("crs-")
        && s[4..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_have_the_cloud_shape() {
        for _ in 0..100 {
            let id = new_instance_id();
            assert!(looks_like_instance_id(&id), "{id}");
        }
        assert!(!looks_like_instance_id("crs-ABCDEFGH"));
        assert!(!looks_like_instance_id("ins-abcdefgh"));
    }
}
