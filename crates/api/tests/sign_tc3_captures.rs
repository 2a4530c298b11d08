//! API 3.0 signatures against the raw captures of real clients (tencentcloud-sdk-python 3.1.189,
//! tccli 3.1.189.1; `tests/fixtures/v3/`, byte-exact HTTP/1.1 with CRLF, all signed with
//! SecretId `AKIDtestSecretId0001` / SecretKey `testSecretKey0001`): every TC3 capture verifies,
//! every old-signature capture verifies, and each kind of tampering is refused with the right
//! error.

use crsd_api::sign_tc3::{
    self, canonical_request, old_string_to_sign, parse_authorization, signature, string_to_sign,
    verify, verify_old, Tc3Authorization, Tc3Error, Tc3Request,
};
use crsd_api::sign_v2::parse_pairs;

const KEY: &str = "testSecretKey0001";

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("fixtures/v3/", $name)) as &[u8],
        )
    };
}

/// Captures signed with TC3-HMAC-SHA256.
const TC3: &[(&str, &[u8])] = &[
    fixture!("021-v3-tc3_post-DescribeInstanceBackups.raw"),
    fixture!("022-v3-tc3_post-RestoreInstance.raw"),
    fixture!("023-v3-tc3_get_token_enUS-DescribeInstanceBackups.raw"),
    fixture!("024-v3-tc3_get_token_enUS-RestoreInstance.raw"),
    fixture!("028-v3-tc3_https_customCA-DescribeInstanceBackups.raw"),
    fixture!("037-tccli-endpoint-httpurl-DescribeInstanceBackups.raw"),
    fixture!("038-tccli-profile-local-DescribeInstanceBackups.raw"),
    fixture!("039-tccli-profile-local-DescribeInstanceBackups.raw"),
    fixture!("040-tccli-error-ClearInstance.raw"),
    fixture!("041-tccli-restore-RestoreInstance.raw"),
    fixture!("042-tccli-https-certifi-patched-DescribeInstanceBackups.raw"),
    fixture!("048-v3-nested-ModifyInstanceParams.raw"),
    fixture!("049-v3-nested-ModifyInstanceParams.raw"),
    fixture!("052-v3-unsigned-payload-RestoreInstance.raw"),
];

/// API 3.0 captures with the old signature (SignatureMethod=HmacSHA256|HmacSHA1).
const OLD: &[(&str, &[u8])] = &[
    fixture!("025-v3-hmacsha256_post-DescribeInstanceBackups.raw"),
    fixture!("026-v3-hmacsha256_post-RestoreInstance.raw"),
    fixture!("027-v3-hmacsha1_get_token-DescribeInstanceBackups.raw"),
    fixture!("050-v3-nested-ModifyInstanceParams.raw"),
    fixture!("051-v3-nested-ModifyInstanceParams.raw"),
];

/// A raw HTTP/1.1 request: request line, headers, body by Content-Length.
#[derive(Clone)]
struct Raw {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Raw {
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("CRLF CRLF after the headers");
        let head = std::str::from_utf8(&bytes[..split]).expect("ASCII head");
        let rest = &bytes[split + 4..];
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().expect("request line").split(' ');
        let method = request_line.next().expect("method").to_string();
        let target = request_line.next().expect("target");
        assert_eq!(request_line.next(), Some("HTTP/1.1"));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("header line");
                (name.to_string(), value.trim().to_string())
            })
            .collect();
        let raw = Raw {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body: Vec::new(),
        };
        let length = raw
            .header("content-length")
            .map_or(0, |v| v.parse::<usize>().expect("Content-Length"));
        assert_eq!(length, rest.len(), "nothing after the body");
        Raw {
            body: rest[..length].to_vec(),
            ..raw
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: &str) {
        for (n, v) in self.headers.iter_mut() {
            if n.eq_ignore_ascii_case(name) {
                *v = value.to_string();
            }
        }
    }

    fn timestamp(&self) -> i64 {
        self.header("X-TC-Timestamp")
            .expect("X-TC-Timestamp")
            .parse()
            .expect("integer timestamp")
    }

    fn auth(&self) -> Tc3Authorization {
        parse_authorization(self.header("Authorization").expect("Authorization")).expect("parses")
    }

    fn request(&self) -> Tc3Request<'_> {
        Tc3Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            payload: &self.body,
            timestamp: self.timestamp(),
        }
    }

    fn verify_with(&self, key: &str) -> Result<(), Tc3Error> {
        verify(key, &self.auth(), &self.request())
    }

    /// Old signature: the decoded pairs of the query (GET) or the form body (POST).
    fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = parse_pairs(&self.query);
        pairs.extend(parse_pairs(
            std::str::from_utf8(&self.body).expect("form body"),
        ));
        pairs
    }

    fn param(&self, key: &str) -> Option<String> {
        self.pairs()
            .into_iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn old_msg(&self) -> String {
        old_string_to_sign(
            &self.method,
            self.header("Host").expect("Host"),
            &self.pairs(),
        )
    }

    fn old_verifies(&self, msg: &str, key: &str) -> bool {
        verify_old(
            self.param("SignatureMethod").as_deref(),
            key,
            msg,
            &self.param("Signature").expect("Signature"),
        )
    }
}

fn capture(prefix: &str) -> Raw {
    let (_, bytes) = TC3
        .iter()
        .chain(OLD)
        .find(|(name, _)| name.starts_with(prefix))
        .expect("known capture");
    Raw::parse(bytes)
}

// --- every capture verifies ----------------------------------------------------------------------

#[test]
fn every_tc3_capture_verifies() {
    for (name, bytes) in TC3 {
        let raw = Raw::parse(bytes);
        assert_eq!(raw.path, "/", "{name}");
        let auth = raw.auth();
        assert_eq!(auth.secret_id, "AKIDtestSecretId0001", "{name}");
        assert_eq!(auth.service, "redis", "{name}");
        assert_eq!(auth.signed_headers, ["content-type", "host"], "{name}");
        assert_eq!(raw.verify_with(KEY), Ok(()), "{name}");
    }
}

#[test]
fn every_old_signature_capture_verifies() {
    for (name, bytes) in OLD {
        let raw = Raw::parse(bytes);
        assert_eq!(raw.path, "/", "{name}");
        assert!(raw.header("Authorization").is_none(), "{name}");
        assert!(raw.header("X-TC-Action").is_none(), "{name}");
        assert_eq!(
            raw.param("Version").as_deref(),
            Some("2018-04-12"),
            "{name}"
        );
        let msg = raw.old_msg();
        assert!(
            msg.starts_with(&format!("{}127.0.0.1:18080/?", raw.method)),
            "{name}"
        );
        assert!(raw.old_verifies(&msg, KEY), "{name}: {msg}");
        assert!(!raw.old_verifies(&msg, "testSecretKey0002"), "{name}");
    }
}

// --- what the captures show --------------------------------------------------------------------

#[test]
fn capture_023_get_signs_the_raw_query_in_wire_order() {
    let raw = capture("023-");
    assert_eq!(raw.method, "GET");
    assert!(raw.body.is_empty());
    assert_eq!(raw.header("X-TC-Token"), Some("tmpToken_xyz"));
    assert_eq!(raw.header("X-TC-Language"), Some("en-US"));
    let canonical = canonical_request(&raw.request(), &raw.auth().signed_headers).unwrap();
    assert_eq!(
        canonical,
        "GET\n/\nLimit=20&Offset=0&InstanceId=crs-ei43p3gr&BeginTime=2026-06-01+00%3A00%3A00\
         &EndTime=2026-06-02+00%3A00%3A00&Status.0=2&InstanceName=%E6%B5%8B%E8%AF%95+%26+x\n\
         content-type:application/x-www-form-urlencoded\nhost:127.0.0.1:18080\n\n\
         content-type;host\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // Sorting or decoding the query, as a canonicaliser might, breaks the signature.
    let mut pairs: Vec<&str> = raw.query.split('&').collect();
    pairs.sort();
    let sorted = Raw {
        query: pairs.join("&"),
        ..raw.clone()
    };
    assert_eq!(sorted.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
    let decoded = Raw {
        query: raw.query.replace("%3A", ":"),
        ..raw.clone()
    };
    assert_eq!(decoded.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
}

#[test]
fn tccli_signs_the_host_header_with_its_scheme() {
    for prefix in ["037-", "038-", "039-", "040-", "041-"] {
        let mut raw = capture(prefix);
        assert_eq!(
            raw.header("Host"),
            Some("http://127.0.0.1:18080"),
            "{prefix}"
        );
        assert_eq!(raw.verify_with(KEY), Ok(()), "{prefix}");
        // The host an HTTP stack might normalise it to does not verify.
        raw.set_header("Host", "127.0.0.1:18080");
        assert_eq!(
            raw.verify_with(KEY),
            Err(Tc3Error::SignatureMismatch),
            "{prefix}"
        );
    }
}

#[test]
fn action_region_token_and_language_are_not_signed() {
    let mut raw = capture("023-");
    raw.set_header("X-TC-Action", "RestoreInstance");
    raw.set_header("X-TC-Region", "ap-shanghai");
    raw.set_header("X-TC-Token", "other");
    raw.set_header("X-TC-Language", "zh-CN");
    assert_eq!(raw.verify_with(KEY), Ok(()));
}

#[test]
fn capture_052_unsigned_payload_does_not_cover_the_body() {
    let raw = capture("052-");
    assert!(sign_tc3::is_unsigned_payload(&raw.headers));
    assert_eq!(raw.verify_with(KEY), Ok(()));
    let canonical = canonical_request(&raw.request(), &raw.auth().signed_headers).unwrap();
    assert!(canonical.ends_with(
        "\ncontent-type;host\n438d4109ef0d676b8c2c7ed13cdfcb418e494d53b843d4634ce3b1085f07bb96"
    ));
    // Any body verifies: this is what UNSIGNED-PAYLOAD means.
    let swapped = Raw {
        body: br#"{"InstanceId": "crs-other"}"#.to_vec(),
        ..raw.clone()
    };
    assert_eq!(swapped.verify_with(KEY), Ok(()));
    // Dropping the header makes the body count again, and the signature fails.
    let mut dropped = raw.clone();
    dropped
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("X-TC-Content-SHA256"));
    assert_eq!(dropped.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
}

#[test]
fn capture_025_old_string_to_sign_matches_research() {
    let raw = capture("025-");
    assert_eq!(raw.param("SignatureMethod").as_deref(), Some("HmacSHA256"));
    assert_eq!(
        raw.old_msg(),
        "POST127.0.0.1:18080/?Action=DescribeInstanceBackups&BeginTime=2026-06-01 00:00:00\
         &EndTime=2026-06-02 00:00:00&InstanceId=crs-ei43p3gr&InstanceName=测试 & x\
         &Language=zh-CN&Limit=20&Nonce=8029995530500221721&Offset=0&Region=ap-guangzhou\
         &RequestClient=SDK_PYTHON_3.1.189&SecretId=AKIDtestSecretId0001\
         &SignatureMethod=HmacSHA256&Status.0=2&Timestamp=1795530548&Version=2018-04-12"
    );
}

#[test]
fn capture_027_hmac_sha1_get_with_token() {
    let raw = capture("027-");
    assert_eq!(raw.method, "GET");
    assert_eq!(raw.param("SignatureMethod").as_deref(), Some("HmacSHA1"));
    let msg = raw.old_msg();
    assert!(msg.starts_with("GET127.0.0.1:18080/?Action="), "{msg}");
    assert!(msg.contains("&Token=tmpToken_xyz&"), "{msg}");
    assert!(raw.old_verifies(&msg, KEY));
    // The same message checked as SHA-256 fails.
    let sig = raw.param("Signature").unwrap();
    assert!(!verify_old(Some("HmacSHA256"), KEY, &msg, &sig));
}

// --- negative cases ------------------------------------------------------------------------

#[test]
fn one_byte_of_the_body_changed() {
    for prefix in ["021-", "022-", "037-", "048-"] {
        let raw = capture(prefix);
        let mut body = raw.body.clone();
        let last = body.len() - 2; // inside the JSON, before the closing brace
        body[last] ^= 0x01;
        let changed = Raw { body, ..raw };
        assert_eq!(
            changed.verify_with(KEY),
            Err(Tc3Error::SignatureMismatch),
            "{prefix}"
        );
    }
}

#[test]
fn one_byte_of_the_query_changed() {
    let raw = capture("049-");
    let changed = Raw {
        query: raw.query.replace("Value=120", "Value=121"),
        ..raw
    };
    assert_eq!(changed.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
}

#[test]
fn method_and_path_are_signed() {
    let raw = capture("021-");
    let get = Raw {
        method: "GET".into(),
        ..raw.clone()
    };
    assert_eq!(get.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
    let path = Raw {
        path: "/v2/index.php".into(),
        ..raw
    };
    assert_eq!(path.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
}

#[test]
fn a_different_key() {
    for (name, bytes) in TC3 {
        let raw = Raw::parse(bytes);
        let err = raw.verify_with("testSecretKey0002").unwrap_err();
        assert_eq!(err, Tc3Error::SignatureMismatch, "{name}");
        assert_eq!(err.code(), "AuthFailure.SignatureFailure");
        assert_eq!(
            raw.verify_with(""),
            Err(Tc3Error::SignatureMismatch),
            "{name}"
        );
    }
}

#[test]
fn host_or_content_type_changed() {
    let mut raw = capture("028-");
    assert_eq!(raw.header("Host"), Some("127.0.0.1:18443"));
    raw.set_header("Host", "127.0.0.1:18080");
    assert_eq!(raw.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
    let mut raw = capture("021-");
    raw.set_header("Host", "127.0.0.1");
    assert_eq!(raw.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
    let mut raw = capture("021-");
    raw.set_header("Content-Type", "application/json; charset=utf-8");
    assert_eq!(raw.verify_with(KEY), Err(Tc3Error::SignatureMismatch));
}

#[test]
fn credential_date_not_the_timestamps_utc_date() {
    let raw = capture("021-");
    // A timestamp one day later: the scope's date no longer matches.
    let later = Raw {
        headers: raw
            .headers
            .iter()
            .map(|(n, v)| {
                if n == "X-TC-Timestamp" {
                    (n.clone(), (raw.timestamp() + 86_400).to_string())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect(),
        ..raw.clone()
    };
    let err = later.verify_with(KEY).unwrap_err();
    assert!(matches!(err, Tc3Error::ScopeMismatch(_)), "{err:?}");
    assert_eq!(err.code(), "AuthFailure.InvalidAuthorization");
    // The same request claiming the Beijing date of a timestamp that is still the 24th in UTC.
    let mut auth = raw.auth();
    auth.date = "2026-11-25".into();
    let err = verify(KEY, &auth, &raw.request()).unwrap_err();
    assert!(matches!(err, Tc3Error::ScopeMismatch(_)), "{err:?}");
    // A timestamp a few seconds off, same UTC date: the scope holds, the signature does not.
    let req = Tc3Request {
        timestamp: raw.timestamp() + 1,
        ..raw.request()
    };
    assert_eq!(
        verify(KEY, &raw.auth(), &req),
        Err(Tc3Error::SignatureMismatch)
    );
}

#[test]
fn service_not_redis() {
    let raw = capture("021-");
    let header = raw
        .header("Authorization")
        .unwrap()
        .replace("/redis/", "/cvm/");
    let auth = parse_authorization(&header).expect("parses; checked against the request");
    assert_eq!(auth.service, "cvm");
    let err = verify(KEY, &auth, &raw.request()).unwrap_err();
    assert!(matches!(err, Tc3Error::ScopeMismatch(_)), "{err:?}");
    assert_eq!(err.code(), "AuthFailure.InvalidAuthorization");
}

#[test]
fn malformed_authorization() {
    let good = capture("021-").header("Authorization").unwrap().to_string();
    let sig = good.rsplit_once("Signature=").unwrap().1.to_string();
    let cases = [
        String::new(),
        "TC3-HMAC-SHA256".to_string(),
        good.replace("TC3-HMAC-SHA256", "TC3-HMAC-SHA1"),
        good.replace("TC3-HMAC-SHA256", "tc3-hmac-sha256"),
        good.replace("TC3-HMAC-SHA256 ", "HMAC-SHA256 "),
        good.replacen("TC3-HMAC-SHA256 ", "", 1),
        good.replace(", Signature=", ", Sig="),
        good.replace(", SignedHeaders=content-type;host", ""),
        good.replace(
            "Credential=AKIDtestSecretId0001/2026-11-24/redis/tc3_request, ",
            "",
        ),
        good.replace(&format!(", Signature={sig}"), ""),
        format!("{good}, Signature={sig}"),
        good.replace("AKIDtestSecretId0001/", ""),
        good.replace("AKIDtestSecretId0001/", "/"),
        good.replace("/tc3_request", "/tc3_request/x"),
        good.replace("content-type;host", "content-type;;host"),
        good.replace("content-type;host", "host;host"),
        good.replace(&sig, &sig[1..]),
        good.replace(&sig, &format!("{}g", &sig[1..])),
        good.replace(", ", " "),
    ];
    for case in &cases {
        let err = parse_authorization(case).unwrap_err();
        assert!(
            matches!(err, Tc3Error::MalformedAuthorization(_)),
            "{case:?}: {err:?}"
        );
        assert_eq!(err.code(), "AuthFailure.InvalidAuthorization");
    }
    // A scope that does not end in tc3_request.
    let err = parse_authorization(&good.replace("/tc3_request", "/aws4_request")).unwrap_err();
    assert!(matches!(err, Tc3Error::ScopeMismatch(_)), "{err:?}");
    // Parts in another order, without spaces, upper-case hex: still the same authorization.
    let reordered = format!(
        "TC3-HMAC-SHA256 Signature={},SignedHeaders=Content-Type;Host,Credential=AKIDtestSecretId0001/2026-11-24/redis/tc3_request",
        sig.to_ascii_uppercase()
    );
    let auth = parse_authorization(&reordered).unwrap();
    assert_eq!(auth.signed_headers, ["content-type", "host"]);
    assert_eq!(verify(KEY, &auth, &capture("021-").request()), Ok(()));
}

#[test]
fn signed_headers_must_include_content_type_and_host() {
    let raw = capture("021-");
    for signed in ["host", "content-type", "content-type;x-tc-action"] {
        let header = raw
            .header("Authorization")
            .unwrap()
            .replace("content-type;host", signed);
        let auth = parse_authorization(&header).unwrap();
        let err = verify(KEY, &auth, &raw.request()).unwrap_err();
        assert!(
            matches!(err, Tc3Error::MalformedAuthorization(_)),
            "{signed}: {err:?}"
        );
    }
}

#[test]
fn a_signed_header_missing_from_the_request() {
    let raw = capture("021-");
    let header = raw
        .header("Authorization")
        .unwrap()
        .replace("content-type;host", "content-type;host;x-tc-missing");
    let err = verify(KEY, &parse_authorization(&header).unwrap(), &raw.request()).unwrap_err();
    assert!(matches!(err, Tc3Error::BadHeader(_)), "{err:?}");
}

// --- clients that follow Tencent's documentation instead of the SDKs --------------------------

/// Sign `raw` the documented way: extra signed header `x-tc-action`, values lower-cased.
fn sign_documented_way(raw: &Raw, lowercase_values: bool) -> String {
    let action = raw.header("X-TC-Action").unwrap();
    let action = if lowercase_values {
        action.to_ascii_lowercase()
    } else {
        action.to_string()
    };
    let canonical = canonical_request(&raw.request(), &["content-type".into(), "host".into()])
        .unwrap()
        .replacen(
            "\n\ncontent-type;host\n",
            &format!("\nx-tc-action:{action}\n\ncontent-type;host;x-tc-action\n"),
            1,
        );
    let date = "2026-11-24";
    let sts = string_to_sign(raw.timestamp(), date, "redis", &canonical);
    let sig = signature(KEY, date, "redis", &sts);
    format!(
        "TC3-HMAC-SHA256 Credential=AKIDtestSecretId0001/{date}/redis/tc3_request, \
         SignedHeaders=content-type;host;x-tc-action, Signature={sig}"
    )
}

#[test]
fn documented_lowercase_header_values_and_extra_signed_headers_verify() {
    let raw = capture("021-");
    for lowercase in [false, true] {
        let header = sign_documented_way(&raw, lowercase);
        let auth = parse_authorization(&header).unwrap();
        assert_eq!(
            verify(KEY, &auth, &raw.request()),
            Ok(()),
            "lowercase={lowercase}"
        );
        // Once signed, X-TC-Action is covered.
        let mut other = raw.clone();
        other.set_header("X-TC-Action", "ClearInstance");
        assert_eq!(
            verify(KEY, &auth, &other.request()),
            Err(Tc3Error::SignatureMismatch),
            "lowercase={lowercase}"
        );
    }
}
