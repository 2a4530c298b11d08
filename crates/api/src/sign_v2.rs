//! Tencent Cloud API v2 query signature (`SignatureMethod=HmacSHA1|HmacSHA256`).
//!
//! Used by the legacy `/v2/index.php` dialect and by API 3.0 requests that carry the old
//! signature (path `/`). The string to sign is
//! `METHOD + host + path + "?" + k1=v1&k2=v2...` over every parameter except `Signature`,
//! sorted by key, HMAC'd with the SecretKey and sent as standard padded base64.
//!
//! Quirks reproduced from the public client (`qcloudapi-sdk-python` 2.0.15), all seen on the wire:
//! - the host is the `Host` header exactly as sent, port included;
//! - values are signed URL-decoded and raw (they may contain `&`, `=`, spaces, UTF-8);
//! - keys are signed with `_` replaced by `.`; when two keys then collide, the later one in wire
//!   order wins;
//! - in POST, values starting with `@` (an old file-upload convention) are not signed;
//! - `HmacSHA256` selects SHA-256, anything else SHA-1.
//!
//! This module is pure: no I/O, no clock, no credential lookup.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The HMAC digest named by the `SignatureMethod` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureMethod {
    /// HMAC-SHA1, the default.
    HmacSha1,
    /// HMAC-SHA256, selected by `SignatureMethod=HmacSHA256`.
    HmacSha256,
}

impl SignatureMethod {
    /// "HmacSHA256" selects SHA-256; anything else (absent, "HmacSHA1", unknown) is SHA-1, as the seed says.
    pub fn from_param(value: Option<&str>) -> SignatureMethod {
        match value {
            Some("HmacSHA256") => SignatureMethod::HmacSha256,
            _ => SignatureMethod::HmacSha1,
        }
    }
}

/// Decode an application/x-www-form-urlencoded string (query or POST body) into pairs, in wire order,
/// values decoded ('+' = space, UTF-8 percent-decoding). Use form_urlencoded.
pub fn parse_pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Build the string to sign: METHOD (upper-case) + host + path + "?" + sorted `k=v` joined by '&'.
/// - every pair except the key "Signature";
/// - keys have '_' replaced by '.' (signed copy only); when two keys collide after that, the LATER pair in wire order wins;
/// - when method is POST, pairs whose value starts with '@' are left out;
/// - sorted by key in byte order; values raw (decoded, not re-encoded).
pub fn string_to_sign(method: &str, host: &str, path: &str, pairs: &[(String, String)]) -> String {
    let is_post = method.eq_ignore_ascii_case("POST");
    // The client builds a dict: the '@' filter runs before the insert, and a later insert
    // under the same (mapped) key overwrites the earlier one. BTreeMap<String> iterates in
    // byte order, which for UTF-8 is code-point order, as Python's `sorted`.
    let mut signed: BTreeMap<String, &str> = BTreeMap::new();
    for (key, value) in pairs {
        if key == "Signature" {
            continue;
        }
        if is_post && value.starts_with('@') {
            continue;
        }
        signed.insert(key.replace('_', "."), value.as_str());
    }
    let mut out = String::with_capacity(
        method.len()
            + host.len()
            + path.len()
            + 1
            + signed
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>(),
    );
    out.push_str(&method.to_ascii_uppercase());
    out.push_str(host);
    out.push_str(path);
    out.push('?');
    for (i, (key, value)) in signed.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// base64 (standard, padded) of the HMAC of `msg` keyed with `secret_key`.
pub fn sign(method: SignatureMethod, secret_key: &[u8], msg: &str) -> String {
    // HMAC accepts keys of any length, so `None` cannot happen; an empty string would never
    // verify anyway because `verify` goes through `mac_base64` and fails closed.
    mac_base64(method, secret_key, msg).unwrap_or_default()
}

/// Constant-time comparison of the expected signature against the provided one (subtle::ConstantTimeEq on bytes;
/// different lengths => false, still without early exit on content).
pub fn verify(method: SignatureMethod, secret_key: &[u8], msg: &str, provided: &str) -> bool {
    let Some(expected) = mac_base64(method, secret_key, msg) else {
        return false;
    };
    // `ct_eq` on slices returns false at once on a length mismatch (the length of a
    // signature is public: 28 or 44 characters) and otherwise inspects every byte.
    expected.as_bytes().ct_eq(provided.as_bytes()).into()
}

fn mac_base64(method: SignatureMethod, secret_key: &[u8], msg: &str) -> Option<String> {
    let digest = match method {
        SignatureMethod::HmacSha1 => {
            let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret_key).ok()?;
            mac.update(msg.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        SignatureMethod::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret_key).ok()?;
            mac.update(msg.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    Some(STANDARD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURE_KEY: &[u8] = b"testSecretKey0001";

    /// Every signed legacy capture (the CONNECT-only 012/014/016 are not requests to sign).
    const CAPTURES: &[(&str, &str)] = &[
        (
            "003-legacyv2-patch_host_https-DescribeRedis.raw",
            include_str!("../tests/fixtures/v2/003-legacyv2-patch_host_https-DescribeRedis.raw"),
        ),
        (
            "004-legacyv2-patch_host_https-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/004-legacyv2-patch_host_https-ClearRedis.raw"),
        ),
        (
            "005-legacyv2-patch_host_https-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/005-legacyv2-patch_host_https-ClearRedis.raw"),
        ),
        (
            "006-legacyv2-generic_module-DescribeRedis.raw",
            include_str!("../tests/fixtures/v2/006-legacyv2-generic_module-DescribeRedis.raw"),
        ),
        (
            "007-legacyv2-generic_module-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/007-legacyv2-generic_module-ClearRedis.raw"),
        ),
        (
            "008-legacyv2-generic_module-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/008-legacyv2-generic_module-ClearRedis.raw"),
        ),
        (
            "009-legacyv2-plain_http-DescribeRedis.raw",
            include_str!("../tests/fixtures/v2/009-legacyv2-plain_http-DescribeRedis.raw"),
        ),
        (
            "010-legacyv2-plain_http-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/010-legacyv2-plain_http-ClearRedis.raw"),
        ),
        (
            "011-legacyv2-plain_http-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/011-legacyv2-plain_http-ClearRedis.raw"),
        ),
        (
            "013-legacyv2-https_proxy-DescribeRedis.raw",
            include_str!("../tests/fixtures/v2/013-legacyv2-https_proxy-DescribeRedis.raw"),
        ),
        (
            "015-legacyv2-https_proxy-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/015-legacyv2-https_proxy-ClearRedis.raw"),
        ),
        (
            "017-legacyv2-https_proxy-ClearRedis.raw",
            include_str!("../tests/fixtures/v2/017-legacyv2-https_proxy-ClearRedis.raw"),
        ),
        (
            "018-legacyv2-sha1_token_errors-DescribeRedis.raw",
            include_str!("../tests/fixtures/v2/018-legacyv2-sha1_token_errors-DescribeRedis.raw"),
        ),
        (
            "019-legacyv2-sha1_token_errors-DescribeRedisErr.raw",
            include_str!(
                "../tests/fixtures/v2/019-legacyv2-sha1_token_errors-DescribeRedisErr.raw"
            ),
        ),
        (
            "020-legacyv2-sha1_token_errors-ClearRedis500.raw",
            include_str!("../tests/fixtures/v2/020-legacyv2-sha1_token_errors-ClearRedis500.raw"),
        ),
    ];

    /// A raw HTTP/1.1 request, split just enough to sign it.
    struct Capture {
        method: String,
        path: String,
        host: String,
        pairs: Vec<(String, String)>,
    }

    impl Capture {
        fn param(&self, key: &str) -> Option<&str> {
            self.pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        fn signature(&self) -> &str {
            self.param("Signature").expect("capture has a Signature")
        }

        fn signature_method(&self) -> SignatureMethod {
            SignatureMethod::from_param(self.param("SignatureMethod"))
        }

        fn string_to_sign(&self) -> String {
            string_to_sign(&self.method, &self.host, &self.path, &self.pairs)
        }

        fn verifies(&self, msg: &str, key: &[u8]) -> bool {
            verify(self.signature_method(), key, msg, self.signature())
        }
    }

    /// Parse a capture: request line, `Host` header, query and form body (CRLF, LF tolerated).
    fn parse_capture(raw: &str) -> Capture {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .or_else(|| raw.split_once("\n\n"))
            .expect("header/body separator");
        let mut lines = head.lines().map(|l| l.trim_end_matches('\r'));
        let request_line = lines.next().expect("request line");
        let mut parts = request_line.split(' ');
        let method = parts.next().expect("method").to_string();
        let target = parts.next().expect("target");
        assert!(parts.next().expect("version").starts_with("HTTP/"));
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, q),
            None => (target, ""),
        };
        let mut host = None;
        let mut content_length = None;
        for line in lines {
            let (name, value) = line.split_once(':').expect("header line");
            if name.eq_ignore_ascii_case("host") {
                host = Some(value.trim().to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.trim().parse::<usize>().expect("length"));
            }
        }
        if let Some(len) = content_length {
            assert_eq!(len, body.len(), "Content-Length matches the body");
        }
        let mut pairs = parse_pairs(query);
        pairs.extend(parse_pairs(body));
        Capture {
            method,
            path: path.to_string(),
            host: host.expect("Host header"),
            pairs,
        }
    }

    fn capture(prefix: &str) -> Capture {
        let (_, raw) = CAPTURES
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .expect("known capture");
        parse_capture(raw)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // --- the seed's worked example -------------------------------------------------------

    const SEED_KEY: &[u8] = b"Gu5t9xGARNpq86cd98joQYCN3Cozk1qA";

    fn seed_pairs(signature_method: &str) -> Vec<(String, String)> {
        // Deliberately not in sorted order.
        pairs(&[
            ("Timestamp", "1465185768"),
            ("Region", "ap-guangzhou"),
            ("SignatureMethod", signature_method),
            ("Action", "DescribeInstances"),
            ("SecretId", "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA"),
            ("InstanceIds.0", "ins-09dx96dg"),
            ("Nonce", "11886"),
        ])
    }

    #[test]
    fn seed_example_hmac_sha256() {
        let msg = string_to_sign(
            "GET",
            "cvm.api.qcloud.com",
            "/v2/index.php",
            &seed_pairs("HmacSHA256"),
        );
        assert_eq!(
            msg,
            "GETcvm.api.qcloud.com/v2/index.php?Action=DescribeInstances&InstanceIds.0=ins-09dx96dg\
             &Nonce=11886&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA\
             &SignatureMethod=HmacSHA256&Timestamp=1465185768"
        );
        let method = SignatureMethod::from_param(Some("HmacSHA256"));
        assert_eq!(method, SignatureMethod::HmacSha256);
        let sig = sign(method, SEED_KEY, &msg);
        assert_eq!(sig, "0EEm/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s=");
        assert!(verify(
            method,
            SEED_KEY,
            &msg,
            "0EEm/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s="
        ));
        // The seed's own misprint does not verify.
        assert!(!verify(
            method,
            SEED_KEY,
            &msg,
            "0EEem/HtGRr/VJXTAD9tYMth1Bzm3lLHz5RCDv1GdM8s="
        ));
    }

    #[test]
    fn seed_example_hmac_sha1() {
        let msg = string_to_sign(
            "GET",
            "cvm.api.qcloud.com",
            "/v2/index.php",
            &seed_pairs("HmacSHA1"),
        );
        assert_eq!(
            msg,
            "GETcvm.api.qcloud.com/v2/index.php?Action=DescribeInstances&InstanceIds.0=ins-09dx96dg\
             &Nonce=11886&Region=ap-guangzhou&SecretId=AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA\
             &SignatureMethod=HmacSHA1&Timestamp=1465185768"
        );
        let method = SignatureMethod::from_param(Some("HmacSHA1"));
        assert_eq!(method, SignatureMethod::HmacSha1);
        let sig = sign(method, SEED_KEY, &msg);
        assert_eq!(sig, "nPVnY6njQmwQ8ciqbPl5Qe+Oru4=");
        assert!(verify(
            method,
            SEED_KEY,
            &msg,
            "nPVnY6njQmwQ8ciqbPl5Qe+Oru4="
        ));
        assert!(!verify(
            method,
            SEED_KEY,
            &msg,
            "nPVnY6njQmwQ8ciqbPI5Qe+Oru4="
        ));
    }

    // --- small pieces ----------------------------------------------------------------------

    #[test]
    fn signature_method_from_param() {
        assert_eq!(
            SignatureMethod::from_param(Some("HmacSHA256")),
            SignatureMethod::HmacSha256
        );
        assert_eq!(
            SignatureMethod::from_param(Some("HmacSHA1")),
            SignatureMethod::HmacSha1
        );
        assert_eq!(SignatureMethod::from_param(None), SignatureMethod::HmacSha1);
        assert_eq!(
            SignatureMethod::from_param(Some("")),
            SignatureMethod::HmacSha1
        );
        assert_eq!(
            SignatureMethod::from_param(Some("hmacsha256")),
            SignatureMethod::HmacSha1
        );
        assert_eq!(
            SignatureMethod::from_param(Some("TC3-HMAC-SHA256")),
            SignatureMethod::HmacSha1
        );
    }

    #[test]
    fn parse_pairs_decodes_in_wire_order() {
        let got = parse_pairs("b=my+redis%26x%3D1%2B%E4%B8%AD&a=p%40ss&b=2&empty=&flag");
        assert_eq!(
            got,
            pairs(&[
                ("b", "my redis&x=1+中"),
                ("a", "p@ss"),
                ("b", "2"),
                ("empty", ""),
                ("flag", ""),
            ])
        );
        assert!(parse_pairs("").is_empty());
    }

    #[test]
    fn string_to_sign_rules() {
        let p = pairs(&[
            ("b_c", "x_y"),
            ("Signature", "ignored"),
            ("a", "@file"),
            ("B", "1"),
            ("b.c", "later"),
        ]);
        // GET: '@' values are signed; keys mapped, later wins, byte order (upper-case first).
        assert_eq!(
            string_to_sign("get", "h:1", "/p", &p),
            "GETh:1/p?B=1&a=@file&b.c=later"
        );
        // POST: '@' values are left out.
        assert_eq!(
            string_to_sign("post", "h:1", "/p", &p),
            "POSTh:1/p?B=1&b.c=later"
        );
        // No params at all.
        assert_eq!(string_to_sign("GET", "h", "/", &[]), "GETh/?");
    }

    #[test]
    fn sign_output_lengths() {
        assert_eq!(sign(SignatureMethod::HmacSha1, b"k", "m").len(), 28);
        assert_eq!(sign(SignatureMethod::HmacSha256, b"k", "m").len(), 44);
        // Empty key is accepted by HMAC.
        assert_eq!(sign(SignatureMethod::HmacSha256, b"", "m").len(), 44);
    }

    // --- the raw captures --------------------------------------------------------------------

    #[test]
    fn all_legacy_captures_verify() {
        assert_eq!(CAPTURES.len(), 15);
        for (name, raw) in CAPTURES {
            let c = parse_capture(raw);
            assert_eq!(c.path, "/v2/index.php", "{name}");
            assert_eq!(c.param("SecretId"), Some("AKIDtestSecretId0001"), "{name}");
            let msg = c.string_to_sign();
            assert!(
                msg.starts_with(&format!("{}{}/v2/index.php?", c.method, c.host)),
                "{name}"
            );
            assert!(!msg.contains("Signature="), "{name}: {msg}");
            assert_eq!(
                sign(c.signature_method(), CAPTURE_KEY, &msg),
                c.signature(),
                "{name}: {msg}"
            );
            assert!(c.verifies(&msg, CAPTURE_KEY), "{name}: {msg}");
        }
    }

    #[test]
    fn capture_003_string_to_sign_matches_research() {
        let c = capture("003-");
        assert_eq!(c.signature_method(), SignatureMethod::HmacSha256);
        assert_eq!(
            c.string_to_sign(),
            "GET127.0.0.1:18443/v2/index.php?Action=DescribeRedis&Nonce=5765974777795885923\
             &Region=gz&RequestClient=SDK_PYTHON_2.0.15&SecretId=AKIDtestSecretId0001\
             &SignatureMethod=HmacSHA256&Timestamp=1795530493&limit=20&offset=0&projectIds.0=0\
             &redisName=my redis&x=1+中&vpcIds.0=vpc-1&vpcIds.1=vpc-2"
        );
        assert_eq!(
            c.signature(),
            "p/mGM/cz2y6YxDdf/akbdTXZRXdAa/9lRy87vzxdc10="
        );
    }

    #[test]
    fn capture_004_string_to_sign_matches_research() {
        let c = capture("004-");
        assert_eq!(
            c.string_to_sign(),
            "POST127.0.0.1:18443/v2/index.php?Action=ClearRedis&Nonce=8729064768563805235\
             &Region=gz&RequestClient=SDK_PYTHON_2.0.15&SecretId=AKIDtestSecretId0001\
             &SignatureMethod=HmacSHA256&Timestamp=1795530493&password=p@ss w+rd/=\
             &redisId=crs-abcd1234"
        );
    }

    // --- negative cases ------------------------------------------------------------------------

    #[test]
    fn one_character_change_in_a_value_fails() {
        for prefix in ["003-", "004-", "018-"] {
            let c = capture(prefix);
            assert!(c.verifies(&c.string_to_sign(), CAPTURE_KEY));
            // Nonce: last digit bumped.
            let mut changed = c.pairs.clone();
            for (k, v) in changed.iter_mut() {
                if k == "Nonce" {
                    let last = v.pop().expect("non-empty nonce");
                    v.push(if last == '9' { '0' } else { '9' });
                }
            }
            let msg = string_to_sign(&c.method, &c.host, &c.path, &changed);
            assert!(!c.verifies(&msg, CAPTURE_KEY), "{prefix}");
        }
        // A value with decoded special characters: one byte of redisName changed.
        let c = capture("003-");
        let changed: Vec<_> = c
            .pairs
            .iter()
            .map(|(k, v)| {
                if k == "redisName" {
                    (k.clone(), v.replace("my redis", "my_redis"))
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        let msg = string_to_sign(&c.method, &c.host, &c.path, &changed);
        assert!(!c.verifies(&msg, CAPTURE_KEY));
        // Signing the raw (encoded) value instead of the decoded one fails too.
        let encoded: Vec<_> = c
            .pairs
            .iter()
            .map(|(k, v)| {
                if k == "redisName" {
                    (k.clone(), "my+redis%26x%3D1%2B%E4%B8%AD".to_string())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        let msg = string_to_sign(&c.method, &c.host, &c.path, &encoded);
        assert!(!c.verifies(&msg, CAPTURE_KEY));
    }

    #[test]
    fn capture_004_host_without_port_fails() {
        let c = capture("004-");
        assert_eq!(c.host, "127.0.0.1:18443");
        assert!(c.verifies(&c.string_to_sign(), CAPTURE_KEY));
        let msg = string_to_sign(&c.method, "127.0.0.1", &c.path, &c.pairs);
        assert!(!c.verifies(&msg, CAPTURE_KEY));
    }

    #[test]
    fn capture_015_signed_with_proxy_host() {
        let c = capture("015-");
        assert_eq!(c.host, "redis.api.qcloud.com");
        assert!(c.verifies(&c.string_to_sign(), CAPTURE_KEY));
        let msg = string_to_sign(&c.method, "127.0.0.1:18443", &c.path, &c.pairs);
        assert!(!c.verifies(&msg, CAPTURE_KEY));
    }

    #[test]
    fn method_is_part_of_the_signature() {
        let c = capture("004-");
        assert_eq!(c.method, "POST");
        let msg = string_to_sign("GET", &c.host, &c.path, &c.pairs);
        assert!(!c.verifies(&msg, CAPTURE_KEY));
        // Lower-case method on input is upper-cased in the string to sign.
        let msg = string_to_sign("post", &c.host, &c.path, &c.pairs);
        assert!(c.verifies(&msg, CAPTURE_KEY));
    }

    #[test]
    fn capture_005_post_at_value_is_not_signed() {
        let c = capture("005-");
        assert_eq!(c.param("password"), Some("@startsWithAt"));
        let msg = c.string_to_sign();
        assert!(!msg.contains("password="), "{msg}");
        assert!(!msg.contains("@startsWithAt"), "{msg}");
        assert!(c.verifies(&msg, CAPTURE_KEY));
        // The same pairs with the '@' value included (GET keeps it; swap the prefix back).
        let with_at = string_to_sign("GET", &c.host, &c.path, &c.pairs);
        let with_at = format!("POST{}", &with_at["GET".len()..]);
        assert!(with_at.contains("&password=@startsWithAt&"), "{with_at}");
        assert_ne!(
            sign(c.signature_method(), CAPTURE_KEY, &with_at),
            c.signature()
        );
        assert!(!c.verifies(&with_at, CAPTURE_KEY));
    }

    #[test]
    fn capture_005_collision_later_pair_wins() {
        let c = capture("005-");
        let keys: Vec<&str> = c.pairs.iter().map(|(k, _)| k.as_str()).collect();
        let first = keys
            .iter()
            .position(|k| *k == "dealIds_0")
            .expect("dealIds_0");
        let second = keys
            .iter()
            .position(|k| *k == "dealIds.0")
            .expect("dealIds.0");
        assert!(first < second);
        let msg = c.string_to_sign();
        assert!(msg.contains("&dealIds.0=deal-A&dealIds.1=deal-B&"), "{msg}");
        assert!(!msg.contains("d-1"), "{msg}");
        assert!(!msg.contains("dealIds_0"), "{msg}");
        assert!(c.verifies(&msg, CAPTURE_KEY));
        // Had the earlier pair won, the signature would not match.
        let mut reordered = c.pairs.clone();
        reordered.swap(first, second);
        let msg = string_to_sign(&c.method, &c.host, &c.path, &reordered);
        assert!(msg.contains("&dealIds.0=d-1&"), "{msg}");
        assert!(!c.verifies(&msg, CAPTURE_KEY));
    }

    #[test]
    fn capture_018_underscore_key_signed_with_dot() {
        let c = capture("018-");
        assert_eq!(c.signature_method(), SignatureMethod::HmacSha1);
        assert_eq!(c.param("redis_name"), Some("a_b"));
        let msg = c.string_to_sign();
        assert!(
            msg.ends_with("&Token=tmpToken_abc&flag=True&limit=5&redis.name=a_b"),
            "{msg}"
        );
        assert!(!msg.contains("redis_name"), "{msg}");
        assert!(c.verifies(&msg, CAPTURE_KEY));
        // Signing the key as it travels on the wire fails.
        let wire_key = msg.replace("redis.name=", "redis_name=");
        assert!(!c.verifies(&wire_key, CAPTURE_KEY));
        // Values keep their '_'.
        let dotted_value = msg.replace("redis.name=a_b", "redis.name=a.b");
        assert!(!c.verifies(&dotted_value, CAPTURE_KEY));
    }

    #[test]
    fn wrong_key_fails() {
        for (name, raw) in CAPTURES {
            let c = parse_capture(raw);
            let msg = c.string_to_sign();
            assert!(!c.verifies(&msg, b"testSecretKey0002"), "{name}");
            assert!(!c.verifies(&msg, b""), "{name}");
        }
    }

    #[test]
    fn wrong_method_fails() {
        let c = capture("003-");
        let msg = c.string_to_sign();
        assert!(!verify(
            SignatureMethod::HmacSha1,
            CAPTURE_KEY,
            &msg,
            c.signature()
        ));
    }

    #[test]
    fn verify_rejects_other_lengths_and_garbage() {
        let c = capture("018-");
        let msg = c.string_to_sign();
        let good = c.signature().to_string();
        let method = c.signature_method();
        assert!(verify(method, CAPTURE_KEY, &msg, &good));
        // Shorter, longer, empty.
        assert!(!verify(method, CAPTURE_KEY, &msg, &good[..good.len() - 1]));
        assert!(!verify(method, CAPTURE_KEY, &msg, &format!("{good}=")));
        assert!(!verify(method, CAPTURE_KEY, &msg, ""));
        // The SHA-256 signature of another capture (44 chars against 28).
        assert!(!verify(
            method,
            CAPTURE_KEY,
            &msg,
            capture("004-").signature()
        ));
        // Not base64 at all, same length and other lengths, including non-ASCII.
        assert!(!verify(
            method,
            CAPTURE_KEY,
            &msg,
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        ));
        assert!(!verify(method, CAPTURE_KEY, &msg, "not base64 %%% ***"));
        assert!(!verify(method, CAPTURE_KEY, &msg, "中中中中中中中中中"));
        // The URL-encoded form of the signature is not the signature.
        assert!(!verify(
            method,
            CAPTURE_KEY,
            &msg,
            "3JkAC7OzbWHW40O2LIpY%2F3wbWTg%3D"
        ));
    }
}
