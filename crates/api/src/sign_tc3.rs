//! Tencent Cloud API 3.0 signatures: `TC3-HMAC-SHA256` and the "old" query signature.
//!
//! API 3.0 requests (path `/`, redis version 2018-04-12, and Cloud Monitor's version 2018-07-24
//! for the charts' data) arrive signed one of two ways, and the
//! dialect handler picks by the presence of an `Authorization` header, never by `X-TC-Action`
//! (old-signature requests carry no `X-TC-*` headers but `X-TC-TraceId`):
//!
//! - **TC3-HMAC-SHA256** (`Authorization: TC3-HMAC-SHA256 Credential=ID/DATE/redis/tc3_request,
//!   SignedHeaders=content-type;host, Signature=HEX`). An AWS-SigV4-like scheme:
//!   ```text
//!   CanonicalRequest = METHOD \n URI \n QUERY \n name:value\n... \n SignedHeaders \n hex(sha256(payload))
//!   StringToSign     = "TC3-HMAC-SHA256" \n X-TC-Timestamp \n DATE/redis/tc3_request \n hex(sha256(CanonicalRequest))
//!   key              = HMAC(HMAC(HMAC("TC3" + SecretKey, DATE), "redis"), "tc3_request")
//!   Signature        = hex(HMAC(key, StringToSign))
//!   ```
//! - **Old signature** (`SignatureMethod=HmacSHA1|HmacSHA256` with the other parameters in the
//!   query or form body): the v2 scheme of [`crate::sign_v2`] with path `/` and without v2's
//!   `@` rule.
//!
//! Quirks reproduced from the public clients (tencentcloud-sdk-python 3.1.x, tccli 3.1.189.1),
//! all seen on the wire:
//! - the host is the `Host` header exactly as sent, port included; tccli's
//!   `--endpoint http://127.0.0.1:18080` sends, and signs, `Host: http://127.0.0.1:18080`;
//! - the canonical query is the raw query string as received: the SDK neither sorts nor
//!   re-encodes it (insertion order, `+` for space), so neither do we;
//! - the SDKs put header values into the canonical request verbatim, while Tencent's
//!   documentation says to lower-case them (its example signs `x-tc-action:describeinstances`
//!   for `X-TC-Action: DescribeInstances`). Both forms are accepted: the verbatim form first,
//!   then, only if some signed value has upper-case letters, the lower-cased form;
//! - `X-TC-Content-SHA256: UNSIGNED-PAYLOAD` makes the payload hash that of the literal string
//!   `UNSIGNED-PAYLOAD`: the body is then **not** authenticated (see [`is_unsigned_payload`]);
//! - `X-TC-Action`, `X-TC-Region`, `X-TC-Token`, ... are not covered unless listed in
//!   SignedHeaders, which the SDKs never do (only `content-type;host`).
//!
//! The timestamp's distance from the clock and nonce reuse are [`crate::guard`]'s business; this
//! module only checks that the credential's date is the UTC date of the timestamp.
//!
//! This module is pure: no I/O, no clock, no credential lookup.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::sign_v2::{self, SignatureMethod};

/// The only algorithm name TC3 requests carry, first word of `Authorization`.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The service name every redis 2018-04-12 client puts in the credential scope.
pub const SERVICE: &str = "redis";
/// The service name of Cloud Monitor (version 2018-07-24), whose GetMonitorData draws charts.
pub const MONITOR_SERVICE: &str = "monitor";
/// The services a credential scope may name; which version goes with which is the dialect's
/// business.
pub const SERVICES: &[&str] = &[SERVICE, MONITOR_SERVICE];
/// The last element of the credential scope.
pub const TERMINATOR: &str = "tc3_request";
/// The `X-TC-Content-SHA256` value that leaves the body out of the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Names a SignedHeaders list may hold: the SDKs sign two. The header is parsed before the
/// credential is looked up, so its work must stay small for anyone.
pub const MAX_SIGNED_HEADERS: usize = 32;

/// Why a request's API 3.0 signature was refused. [`Tc3Error::code`] gives the Tencent
/// `Response.Error.Code` to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tc3Error {
    /// The `Authorization` header is not `TC3-HMAC-SHA256 Credential=.., SignedHeaders=..,
    /// Signature=..` (wrong algorithm, missing or repeated part, bad hex, SignedHeaders without
    /// `content-type` and `host`, ...). Maps to `AuthFailure.InvalidAuthorization`.
    #[error("malformed Authorization: {0}")]
    MalformedAuthorization(String),
    /// The credential scope does not fit the request: its date is not the UTC date of
    /// `X-TC-Timestamp`, its service is not one of [`SERVICES`], or it does not end in
    /// `tc3_request`.
    /// Maps to `AuthFailure.InvalidAuthorization`.
    #[error("credential scope mismatch: {0}")]
    ScopeMismatch(String),
    /// A header the signature covers (listed in SignedHeaders, or `X-TC-Content-SHA256`) is
    /// absent from the request or sent more than once. Maps to `AuthFailure.SignatureFailure`.
    #[error("bad signed header: {0}")]
    BadHeader(String),
    /// Everything parsed, but the signature is not the one the SecretKey gives.
    /// Maps to `AuthFailure.SignatureFailure`.
    #[error("signature mismatch")]
    SignatureMismatch,
}

impl Tc3Error {
    /// The Tencent error code a 3.0 response should carry for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            Tc3Error::MalformedAuthorization(_) | Tc3Error::ScopeMismatch(_) => {
                "AuthFailure.InvalidAuthorization"
            }
            Tc3Error::BadHeader(_) | Tc3Error::SignatureMismatch => "AuthFailure.SignatureFailure",
        }
    }
}

/// What the TC3 `Authorization` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tc3Authorization {
    /// The SecretId to look the SecretKey up by.
    pub secret_id: String,
    /// The credential scope's date, as sent (`YYYY-MM-DD` when well-formed).
    pub date: String,
    /// The credential scope's service, as sent (`redis` when well-formed).
    pub service: String,
    /// SignedHeaders, lower-cased, in the order sent (the canonical headers follow that order).
    pub signed_headers: Vec<String>,
    /// The signature, 64 hex digits as sent.
    pub signature: String,
}

/// Parse an `Authorization` header value:
/// `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=HEX`.
///
/// The three parts may come in any order, separated by `,` and optional spaces; each must appear
/// exactly once. The scope's terminator must be `tc3_request` ([`Tc3Error::ScopeMismatch`]
/// otherwise); date and service are only checked by [`verify`], against the request.
pub fn parse_authorization(value: &str) -> Result<Tc3Authorization, Tc3Error> {
    let malformed = |why: &str| Tc3Error::MalformedAuthorization(why.to_string());
    let value = value.trim();
    let (algorithm, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(|| malformed("expected `TC3-HMAC-SHA256 Credential=..`"))?;
    if algorithm != ALGORITHM {
        return Err(Tc3Error::MalformedAuthorization(format!(
            "unsupported algorithm {algorithm:?}"
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (key, val) = part
            .split_once('=')
            .ok_or_else(|| Tc3Error::MalformedAuthorization(format!("no '=' in {part:?}")))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(Tc3Error::MalformedAuthorization(format!(
                    "unknown part {key:?}"
                )))
            }
        };
        if slot.replace(val).is_some() {
            return Err(Tc3Error::MalformedAuthorization(format!("{key} repeated")));
        }
    }
    let credential = credential.ok_or_else(|| malformed("Credential missing"))?;
    let signed_headers = signed_headers.ok_or_else(|| malformed("SignedHeaders missing"))?;
    let signature = signature.ok_or_else(|| malformed("Signature missing"))?;

    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, terminator] = scope[..] else {
        return Err(malformed(
            "Credential must be SecretId/Date/Service/tc3_request",
        ));
    };
    if secret_id.is_empty() || date.is_empty() || service.is_empty() {
        return Err(malformed("empty element in Credential"));
    }
    if terminator != TERMINATOR {
        return Err(Tc3Error::ScopeMismatch(format!(
            "credential scope ends in {terminator:?}, not {TERMINATOR:?}"
        )));
    }

    let mut names: Vec<String> = Vec::new();
    for name in signed_headers.split(';') {
        if names.len() == MAX_SIGNED_HEADERS {
            return Err(Tc3Error::MalformedAuthorization(format!(
                "more than {MAX_SIGNED_HEADERS} names in SignedHeaders"
            )));
        }
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() {
            return Err(malformed("empty name in SignedHeaders"));
        }
        if names.contains(&name) {
            return Err(Tc3Error::MalformedAuthorization(format!(
                "{name:?} repeated in SignedHeaders"
            )));
        }
        names.push(name);
    }

    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed("Signature must be 64 hex digits"));
    }

    Ok(Tc3Authorization {
        secret_id: secret_id.to_string(),
        date: date.to_string(),
        service: service.to_string(),
        signed_headers: names,
        signature: signature.to_string(),
    })
}

/// The request parts the signature covers, as received. No normalisation happens here or in
/// the caller: `Host` is the header verbatim (e.g. `http://127.0.0.1:18080` from tccli) and the
/// query is the raw query string (`""` when none).
#[derive(Debug, Clone, Copy)]
pub struct Tc3Request<'a> {
    /// The request method, e.g. `POST` (upper-cased when signed).
    pub method: &'a str,
    /// The canonical URI: the request path, `/` for API 3.0.
    pub path: &'a str,
    /// The raw query string as received, without `?`; `""` when none.
    pub query: &'a str,
    /// Every request header, names in any case, values as received.
    pub headers: &'a [(String, String)],
    /// The body as received (empty for GET).
    pub payload: &'a [u8],
    /// `X-TC-Timestamp`, in seconds since the epoch.
    pub timestamp: i64,
}

/// True when the request says `X-TC-Content-SHA256: UNSIGNED-PAYLOAD`: a valid signature then
/// does not vouch for the body, so over plain HTTP anyone on the path can rewrite the
/// parameters of a POST. The handler may want to refuse or log such requests.
pub fn is_unsigned_payload(headers: &[(String, String)]) -> bool {
    matches!(single_header(headers, "x-tc-content-sha256"), Ok(Some(v)) if v == UNSIGNED_PAYLOAD)
}

/// The canonical request, as the SDKs build it:
/// `METHOD \n path \n query \n name:value\n.. \n names;.. \n hex(sha256(payload))`.
///
/// Header lines follow `signed_headers` in order, name lower-case, value trimmed and otherwise
/// verbatim. The payload is the body, or the literal `UNSIGNED-PAYLOAD` when
/// `X-TC-Content-SHA256` says so. Fails with [`Tc3Error::BadHeader`] when a signed header (or
/// `X-TC-Content-SHA256`) is absent or repeated.
pub fn canonical_request(req: &Tc3Request, signed_headers: &[String]) -> Result<String, Tc3Error> {
    build_canonical_request(req, signed_headers, false)
}

/// [`canonical_request`], with header values lower-cased (as Tencent's documentation says) when
/// `lowercase_values`.
fn build_canonical_request(
    req: &Tc3Request,
    signed_headers: &[String],
    lowercase_values: bool,
) -> Result<String, Tc3Error> {
    let mut out = String::with_capacity(256 + req.query.len());
    out.push_str(&req.method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(req.path);
    out.push('\n');
    out.push_str(req.query);
    out.push('\n');
    let mut names = Vec::with_capacity(signed_headers.len());
    for name in signed_headers {
        let name = name.to_ascii_lowercase();
        let value = single_header(req.headers, &name)?
            .ok_or_else(|| Tc3Error::BadHeader(format!("signed header {name:?} not sent")))?;
        out.push_str(&name);
        out.push(':');
        if lowercase_values {
            out.push_str(&value.to_ascii_lowercase());
        } else {
            out.push_str(value);
        }
        out.push('\n');
        names.push(name);
    }
    out.push('\n');
    out.push_str(&names.join(";"));
    out.push('\n');
    let unsigned = single_header(req.headers, "x-tc-content-sha256")? == Some(UNSIGNED_PAYLOAD);
    let payload: &[u8] = if unsigned {
        UNSIGNED_PAYLOAD.as_bytes()
    } else {
        req.payload
    };
    out.push_str(&sha256_hex(payload));
    Ok(out)
}

/// `TC3-HMAC-SHA256 \n timestamp \n date/service/tc3_request \n hex(sha256(canonical_request))`.
pub fn string_to_sign(
    timestamp: i64,
    date: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{date}/{service}/{TERMINATOR}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of `string_to_sign` under the key derived from `secret_key`, `date` and
/// `service` (`kDate = HMAC("TC3" + key, date)`, `kService`, `kSigning`, then the HMAC).
pub fn signature(secret_key: &str, date: &str, service: &str, string_to_sign: &str) -> String {
    format!(
        "{:x}",
        signature_mac(secret_key, date, service, string_to_sign)
    )
}

/// The UTC date (`YYYY-MM-DD`) of a Unix timestamp, as the credential scope must carry it;
/// `None` when out of chrono's range.
pub fn utc_date(timestamp: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(timestamp, 0).map(|t| t.format("%Y-%m-%d").to_string())
}

/// The full check of a TC3 request: the scope's service is one of [`SERVICES`] and its date the UTC date of
/// `req.timestamp`; SignedHeaders include `content-type` and `host` (mandatory per Tencent's
/// documentation, and what every SDK signs: the body's meaning depends on the content type);
/// then the signature, compared in constant time, over the SDK's canonical form or, failing
/// that, the documented lower-cased one (see the module docs).
///
/// The caller looks `secret_key` up by `auth.secret_id` and checks the timestamp's skew.
pub fn verify(secret_key: &str, auth: &Tc3Authorization, req: &Tc3Request) -> Result<(), Tc3Error> {
    if !SERVICES.contains(&auth.service.as_str()) {
        return Err(Tc3Error::ScopeMismatch(format!(
            "service {:?} in credential scope, expected one of {SERVICES:?}",
            auth.service
        )));
    }
    let date = utc_date(req.timestamp).ok_or_else(|| {
        Tc3Error::ScopeMismatch(format!("timestamp {} out of range", req.timestamp))
    })?;
    if auth.date != date {
        return Err(Tc3Error::ScopeMismatch(format!(
            "date {:?} in credential scope, but X-TC-Timestamp {} is {date} UTC",
            auth.date, req.timestamp
        )));
    }
    for required in ["content-type", "host"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(Tc3Error::MalformedAuthorization(format!(
                "SignedHeaders must include {required:?}"
            )));
        }
    }
    let provided = auth.signature.to_ascii_lowercase();
    let matches = |canonical: &str| -> bool {
        let msg = string_to_sign(req.timestamp, &auth.date, &auth.service, canonical);
        let expected = signature(secret_key, &auth.date, &auth.service, &msg);
        // Both are 64 lower-case hex digits once parsed; `ct_eq` inspects every byte.
        expected.as_bytes().ct_eq(provided.as_bytes()).into()
    };
    let verbatim = build_canonical_request(req, &auth.signed_headers, false)?;
    if matches(&verbatim) {
        return Ok(());
    }
    let lowered = build_canonical_request(req, &auth.signed_headers, true)?;
    if lowered != verbatim && matches(&lowered) {
        return Ok(());
    }
    Err(Tc3Error::SignatureMismatch)
}

/// The string to sign of an API 3.0 request with the old signature:
/// `METHOD + host + "/?" + k1=v1&k2=v2...`, pairs sorted by key (tencentcloud-sdk-python
/// `_format_sign_string`).
///
/// As in v2: `pairs` are decoded and in wire order, `Signature` is left out, keys are signed
/// with `_` replaced by `.` (the later pair wins a collision), values raw. Unlike v2, values
/// starting with `@` are signed too: the 3.0 SDK has no such rule.
pub fn old_string_to_sign(method: &str, host: &str, pairs: &[(String, String)]) -> String {
    // Python dict + `sorted`: byte order of UTF-8 keys is code-point order.
    let mut signed: BTreeMap<String, &str> = BTreeMap::new();
    for (key, value) in pairs {
        if key != "Signature" {
            signed.insert(key.replace('_', "."), value);
        }
    }
    let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{host}/?{}", method.to_ascii_uppercase(), query.join("&"))
}

/// Check an old-signature request: `method_name` is its `SignatureMethod` parameter
/// (`HmacSHA256` selects SHA-256, anything else SHA-1, as Tencent documents), `msg` comes from
/// [`old_string_to_sign`], `provided_b64` is the decoded `Signature` parameter. Constant time,
/// via [`sign_v2::verify`].
pub fn verify_old(
    method_name: Option<&str>,
    secret_key: &str,
    msg: &str,
    provided_b64: &str,
) -> bool {
    sign_v2::verify(
        SignatureMethod::from_param(method_name),
        secret_key.as_bytes(),
        msg,
        provided_b64,
    )
}

/// The one value of header `name` (lower-case), trimmed: `Ok(None)` when absent,
/// [`Tc3Error::BadHeader`] when sent more than once.
fn single_header<'h>(
    headers: &'h [(String, String)],
    name: &str,
) -> Result<Option<&'h str>, Tc3Error> {
    let mut found = None;
    for (n, v) in headers {
        if n.eq_ignore_ascii_case(name) && found.replace(v.trim()).is_some() {
            return Err(Tc3Error::BadHeader(format!("{name:?} sent more than once")));
        }
    }
    Ok(found)
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256(key: &[u8], msg: &[u8]) -> hmac::digest::Output<HmacSha256> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(msg);
    mac.finalize().into_bytes()
}

fn signature_mac(
    secret_key: &str,
    date: &str,
    service: &str,
    string_to_sign: &str,
) -> hmac::digest::Output<HmacSha256> {
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, TERMINATOR.as_bytes());
    hmac_sha256(&k_signing, string_to_sign.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "testSecretKey0001";

    /// Capture 021 (tencentcloud-sdk-python, TC3 POST JSON), values as in research B.5.
    const BODY_021: &str = r#"{"Limit": 20, "Offset": 0, "InstanceId": "crs-ei43p3gr", "BeginTime": "2026-06-01 00:00:00", "EndTime": "2026-06-02 00:00:00", "Status": [2], "InstanceName": "\u6d4b\u8bd5 & x"}"#;
    const PAYLOAD_HASH_021: &str =
        "494c2c25b49700537fc93447c90a08000d5bdfe83bf1eda8b12365214a48c794";
    const CANONICAL_021: &str = "POST\n/\n\ncontent-type:application/json\nhost:127.0.0.1:18080\n\ncontent-type;host\n494c2c25b49700537fc93447c90a08000d5bdfe83bf1eda8b12365214a48c794";
    const STRING_TO_SIGN_021: &str = "TC3-HMAC-SHA256\n1795530547\n2026-11-24/redis/tc3_request\n3b01ba672bafd4224ec209caeef284b8fe7fff0358b3291987f898994b68b654";
    const SIGNATURE_021: &str = "b9706cccbe00b4cbcc5bbf5f98a88789b29ab1be39d054df2ca61f86c740638e";
    const AUTH_021: &str = "TC3-HMAC-SHA256 Credential=AKIDtestSecretId0001/2026-11-24/redis/tc3_request, SignedHeaders=content-type;host, Signature=b9706cccbe00b4cbcc5bbf5f98a88789b29ab1be39d054df2ca61f86c740638e";

    fn headers_021() -> Vec<(String, String)> {
        [
            ("User-Agent", "python-requests/2.34.2"),
            ("X-TC-TraceId", "ed4dfb58-515c-4737-86a2-7f4b656fdfc8"),
            ("Content-Type", "application/json"),
            ("Host", "127.0.0.1:18080"),
            ("X-TC-Action", "DescribeInstanceBackups"),
            ("X-TC-Timestamp", "1795530547"),
            ("X-TC-Version", "2018-04-12"),
            ("Authorization", AUTH_021),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn request(headers: &[(String, String)]) -> Tc3Request<'_> {
        Tc3Request {
            method: "POST",
            path: "/",
            query: "",
            headers,
            payload: BODY_021.as_bytes(),
            timestamp: 1795530547,
        }
    }

    fn signed() -> Vec<String> {
        vec!["content-type".into(), "host".into()]
    }

    #[test]
    fn signed_headers_are_bounded() {
        let auth = |n: usize| {
            let names: Vec<String> = (0..n).map(|i| format!("h{i}")).collect();
            format!(
                "TC3-HMAC-SHA256 Credential=AKID/2026-11-24/redis/tc3_request, \
                 SignedHeaders={}, Signature={}",
                names.join(";"),
                "0".repeat(64)
            )
        };
        assert!(parse_authorization(&auth(MAX_SIGNED_HEADERS)).is_ok());
        assert!(matches!(
            parse_authorization(&auth(MAX_SIGNED_HEADERS + 1)),
            Err(Tc3Error::MalformedAuthorization(_))
        ));
        // Sixty thousand names (about the most a request head holds) fail at once.
        let started = std::time::Instant::now();
        assert!(parse_authorization(&auth(60_000)).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn capture_021_fixed_vectors() {
        assert_eq!(sha256_hex(BODY_021.as_bytes()), PAYLOAD_HASH_021);
        let headers = headers_021();
        let req = request(&headers);
        let canonical = canonical_request(&req, &signed()).unwrap();
        assert_eq!(canonical, CANONICAL_021);
        let sts = string_to_sign(1795530547, "2026-11-24", "redis", &canonical);
        assert_eq!(sts, STRING_TO_SIGN_021);
        assert_eq!(signature(KEY, "2026-11-24", "redis", &sts), SIGNATURE_021);
        let auth = parse_authorization(AUTH_021).unwrap();
        assert_eq!(
            auth,
            Tc3Authorization {
                secret_id: "AKIDtestSecretId0001".into(),
                date: "2026-11-24".into(),
                service: "redis".into(),
                signed_headers: signed(),
                signature: SIGNATURE_021.into(),
            }
        );
        assert_eq!(verify(KEY, &auth, &req), Ok(()));
    }

    #[test]
    fn the_scope_names_redis_or_monitor_and_no_other_service() {
        let headers = headers_021();
        let req = request(&headers);
        let canonical = canonical_request(&req, &signed()).unwrap();
        for service in ["monitor", "cvm"] {
            let sts = string_to_sign(1795530547, "2026-11-24", service, &canonical);
            let auth = Tc3Authorization {
                service: service.into(),
                signature: signature(KEY, "2026-11-24", service, &sts),
                ..parse_authorization(AUTH_021).unwrap()
            };
            let got = verify(KEY, &auth, &req);
            if service == MONITOR_SERVICE {
                assert_eq!(got, Ok(()));
            } else {
                assert!(matches!(got, Err(Tc3Error::ScopeMismatch(_))), "{got:?}");
            }
        }
        // A signature made for one service does not pass for the other.
        let auth = Tc3Authorization {
            service: MONITOR_SERVICE.into(),
            ..parse_authorization(AUTH_021).unwrap()
        };
        assert_eq!(verify(KEY, &auth, &req), Err(Tc3Error::SignatureMismatch));
    }

    #[test]
    fn get_with_empty_payload_hashes_the_empty_string() {
        let headers = headers_021();
        let req = Tc3Request {
            method: "get",
            query: "Limit=20&Status.0=2",
            payload: b"",
            ..request(&headers)
        };
        let canonical = canonical_request(&req, &signed()).unwrap();
        assert!(
            canonical.starts_with("GET\n/\nLimit=20&Status.0=2\n"),
            "{canonical}"
        );
        assert!(canonical
            .ends_with("\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    }

    #[test]
    fn unsigned_payload_hashes_the_literal() {
        let mut headers = headers_021();
        assert!(!is_unsigned_payload(&headers));
        headers.push(("x-tc-content-sha256".into(), "UNSIGNED-PAYLOAD".into()));
        assert!(is_unsigned_payload(&headers));
        let canonical = canonical_request(&request(&headers), &signed()).unwrap();
        assert!(canonical
            .ends_with("\n438d4109ef0d676b8c2c7ed13cdfcb418e494d53b843d4634ce3b1085f07bb96"));
        // Same canonical request whatever the body.
        let other = Tc3Request {
            payload: b"anything",
            ..request(&headers)
        };
        assert_eq!(canonical_request(&other, &signed()).unwrap(), canonical);
        // Adding the header to a signed request breaks its signature.
        let auth = parse_authorization(AUTH_021).unwrap();
        assert_eq!(
            verify(KEY, &auth, &request(&headers)),
            Err(Tc3Error::SignatureMismatch)
        );
    }

    #[test]
    fn header_lookup_any_case_trimmed_single() {
        let mut headers = headers_021();
        for (k, v) in headers.iter_mut() {
            if k == "Host" {
                *k = "HOST".into();
                *v = " 127.0.0.1:18080 ".into();
            }
        }
        let auth = parse_authorization(AUTH_021).unwrap();
        assert_eq!(verify(KEY, &auth, &request(&headers)), Ok(()));
        headers.push(("host".into(), "127.0.0.1:18080".into()));
        assert!(matches!(
            verify(KEY, &auth, &request(&headers)),
            Err(Tc3Error::BadHeader(_))
        ));
        let no_host: Vec<_> = headers_021()
            .into_iter()
            .filter(|(k, _)| k != "Host")
            .collect();
        let err = verify(KEY, &auth, &request(&no_host)).unwrap_err();
        assert!(matches!(err, Tc3Error::BadHeader(_)), "{err:?}");
        assert_eq!(err.code(), "AuthFailure.SignatureFailure");
    }

    #[test]
    fn utc_date_is_utc_not_beijing() {
        // 2026-11-24 23:59:59 UTC is already the 25th in UTC+8.
        assert_eq!(utc_date(1795564799).as_deref(), Some("2026-11-24"));
        assert_eq!(utc_date(1795564800).as_deref(), Some("2026-11-25"));
        assert_eq!(utc_date(0).as_deref(), Some("1970-01-01"));
        assert_eq!(utc_date(i64::MAX), None);
    }

    #[test]
    fn old_string_to_sign_has_no_at_rule_and_maps_underscores() {
        let pairs: Vec<(String, String)> = [
            ("Password", "@startsWithAt"),
            ("redis_name", "a_b"),
            ("Signature", "xyz"),
            ("Action", "RestoreInstance"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            old_string_to_sign("post", "127.0.0.1:18080", &pairs),
            "POST127.0.0.1:18080/?Action=RestoreInstance&Password=@startsWithAt&redis.name=a_b"
        );
        // v2 drops the '@' value in POST; the only difference.
        assert_eq!(
            sign_v2::string_to_sign("POST", "127.0.0.1:18080", "/", &pairs),
            "POST127.0.0.1:18080/?Action=RestoreInstance&redis.name=a_b"
        );
    }
}
