//! The Capital Online (cdsapi) signature v1.0: HMAC-SHA1 over a canonical query.
//!
//! * every query parameter but `Signature` (the JSON body of a POST is never signed), the
//!   first occurrence of a repeated name only (the reference client appends the business
//!   parameters a second time after `Signature`);
//! * sorted by name, byte order (case-sensitive), each name and value percent-encoded with
//!   uppercase hex, only `A-Z a-z 0-9 - _ . ~` left as they are (space is `%20`, never `+`);
//! * `METHOD & %2F & enc(canonical)`: the path never enters it, and the canonical query is
//!   encoded a second time;
//! * key: the secret exactly as issued (no `&` appended, whatever the older docs say),
//!   standard padded Base64 of the digest.
//!
//! The documented method is `HMAC-SHA1`; cds-gic-sdk-go can be set to send `HmacSHA256` and
//! then signs the same string with HMAC-SHA256, which is accepted too.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Everything but the unreserved characters of RFC 3986 is encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `enc()` of the spec: UTF-8, unreserved characters kept, the rest `%XY` (uppercase hex).
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// The signed parameters of a decoded query: `Signature` left out and, for a repeated name,
/// the first occurrence only; sorted by name.
pub fn signed_pairs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut seen = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        if k != "Signature" {
            seen.entry(k.as_str()).or_insert(v.as_str());
        }
    }
    seen.into_iter().collect()
}

/// The canonical query: `enc(k)=enc(v)` joined by `&`, in byte order of the names.
pub fn canonical_query(pairs: &[(String, String)]) -> String {
    signed_pairs(pairs)
        .into_iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&enc(canonical query)`.
pub fn string_to_sign(method: &str, pairs: &[(String, String)]) -> String {
    format!(
        "{}&%2F&{}",
        method.to_ascii_uppercase(),
        enc(&canonical_query(pairs))
    )
}

/// The `SignatureMethod` values and their digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `HMAC-SHA1`, the documented one.
    HmacSha1,
    /// `HmacSHA256`, as cds-gic-sdk-go names it.
    HmacSha256,
}

impl Method {
    pub fn from_param(value: &str) -> Option<Method> {
        match value {
            "HMAC-SHA1" => Some(Method::HmacSha1),
            "HmacSHA256" => Some(Method::HmacSha256),
            _ => None,
        }
    }
}

/// Base64(HMAC-SHA1(secret, string to sign)).
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    sign_with(Method::HmacSha1, secret, string_to_sign)
}

/// Base64(HMAC(secret, string to sign)) with the digest `method` names.
pub fn sign_with(method: Method, secret: &str, string_to_sign: &str) -> String {
    let key = secret.as_bytes();
    let digest = match method {
        Method::HmacSha1 => {
            let mut mac =
                <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(string_to_sign.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Method::HmacSha256 => {
            let mut mac =
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(string_to_sign.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    STANDARD.encode(digest)
}

/// Whether `provided` is the HMAC-SHA1 signature of this request.
pub fn verify(secret: &str, method: &str, pairs: &[(String, String)], provided: &str) -> bool {
    verify_with(Method::HmacSha1, secret, method, pairs, provided)
}

/// Whether `provided` is the signature of this request with `digest` (constant-time
/// comparison).
pub fn verify_with(
    digest: Method,
    secret: &str,
    method: &str,
    pairs: &[(String, String)],
    provided: &str,
) -> bool {
    let expected = sign_with(digest, secret, &string_to_sign(method, pairs));
    expected.as_bytes().ct_eq(provided.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn enc_keeps_only_unreserved_characters() {
        assert_eq!(enc("a-z_A.Z~09"), "a-z_A.Z~09");
        assert_eq!(enc(" */+=&%'"), "%20%2A%2F%2B%3D%26%25%27");
        assert_eq!(enc("测"), "%E6%B5%8B");
        assert_eq!(enc("2024-01-02T03:04:05Z"), "2024-01-02T03%3A04%3A05Z");
    }

    #[test]
    fn hmac_sha256_signs_the_same_string_with_the_other_digest() {
        let pairs = p(&[
            ("Action", "DescribeRegins"),
            ("SignatureMethod", "HmacSHA256"),
        ]);
        let sts = string_to_sign("GET", &pairs);
        let sha256 = sign_with(Method::HmacSha256, "k", &sts);
        assert_eq!(sha256.len(), 44);
        assert!(verify_with(Method::HmacSha256, "k", "GET", &pairs, &sha256));
        assert!(!verify_with(Method::HmacSha1, "k", "GET", &pairs, &sha256));
        assert!(!verify_with(
            Method::HmacSha256,
            "k",
            "GET",
            &pairs,
            &sign("k", &sts)
        ));
        assert_eq!(Method::from_param("HMAC-SHA256"), None);
    }

    #[test]
    fn first_occurrence_wins_and_signature_is_left_out() {
        let pairs = p(&[
            ("b", "1"),
            ("Signature", "x"),
            ("a", "2"),
            ("b", "changed"),
            ("B", "3"),
        ]);
        assert_eq!(canonical_query(&pairs), "B=3&a=2&b=1");
    }
}
