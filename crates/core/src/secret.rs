//! Instance passwords are never stored in plaintext: crsd keeps a salted SHA-256 for the checks
//! the APIs require (ClearRedis, RestoreInstance, ModfiyRedisPassword), compared in constant time.
//! Format: `sha256$<salt hex>$<digest hex>`.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = rand::thread_rng().gen();
    let digest = digest(&salt, password);
    format!("sha256${}${}", hex::encode(salt), hex::encode(digest))
}

pub fn verify_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("sha256"), Some(salt), Some(expected), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(expected)) = (hex::decode(salt), hex::decode(expected)) else {
        return false;
    };
    let actual = digest(&salt, password);
    actual.as_slice().ct_eq(expected.as_slice()).into()
}

fn digest(salt: &[u8], password: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash_password("49A2d!e@f12e");
        let b = hash_password("49A2d!e@f12e");
        assert_ne!(a, b, "two hashes of one password must differ by salt");
        assert!(verify_password(&a, "49A2d!e@f12e"));
        assert!(!verify_password(&a, "49A2d!e@f12f"));
        assert!(!a.contains("49A2d"));
        assert!(!verify_password("garbage", "x"));
    }
}
