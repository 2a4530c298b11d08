//! API 3.0 signatures: the TC3 `Authorization` parser, the canonical request and the full
//! verification, and the old signature's string to sign, on arbitrary input. The input is
//! split at the first three newlines: Authorization, query, header lines (`name:value`
//! separated by `;`), then the body.
#![no_main]

use crsd_api::sign_tc3::{self, Tc3Request};
use crsd_api::sign_v2::parse_pairs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let authorization = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let header_line = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let headers: Vec<(String, String)> = header_line
        .split(';')
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let timestamp = i64::from_le_bytes(
        data.iter()
            .copied()
            .chain(std::iter::repeat(0))
            .take(8)
            .collect::<Vec<u8>>()
            .try_into()
            .unwrap_or([0; 8]),
    );
    for method in ["GET", "POST"] {
        let req = Tc3Request {
            method,
            path: "/",
            query,
            headers: &headers,
            payload: body.as_bytes(),
            timestamp,
        };
        let _ = sign_tc3::is_unsigned_payload(&headers);
        if let Ok(auth) = sign_tc3::parse_authorization(authorization) {
            let _ = sign_tc3::canonical_request(&req, &auth.signed_headers);
            let _ = sign_tc3::verify("secret", &auth, &req);
        }
        let signed = ["content-type".to_string(), "host".to_string()];
        if let Ok(canonical) = sign_tc3::canonical_request(&req, &signed) {
            let date = sign_tc3::utc_date(timestamp).unwrap_or_default();
            let msg = sign_tc3::string_to_sign(timestamp, &date, "redis", &canonical);
            let _ = sign_tc3::signature("secret", &date, "redis", &msg);
        }
        let pairs = parse_pairs(query);
        let _ = sign_tc3::old_string_to_sign(method, "127.0.0.1:9750", &pairs);
    }
});
