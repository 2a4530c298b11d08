//! Capital Online (`/redis`): the query decoder, the folded parameters of the query and of a
//! JSON body (`Params3`), and the signature (canonical query, string to sign, sign, verify),
//! on arbitrary input: before the first `\n` the query, after it the body.
#![no_main]

use crsd_api::sign_co::{self, Method};
use crsd_api::sign_v2::parse_pairs;
use crsd_api::tc3::params::Params3;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (query, body) = text.split_once('\n').unwrap_or((&text, ""));
    let pairs = parse_pairs(query);
    if let Ok(p) = Params3::from_pairs(&pairs, &["Action", "AccessKeyId", "Signature"]) {
        for name in p.names() {
            let _ = p.str(name);
            let _ = p.int(name);
        }
    }
    let _ = Params3::from_json(body.as_bytes());
    let signed = sign_co::signed_pairs(&pairs);
    assert!(signed.len() <= pairs.len());
    for http in ["GET", "POST"] {
        let msg = sign_co::string_to_sign(http, &pairs);
        for digest in [Method::HmacSha1, Method::HmacSha256] {
            let sig = sign_co::sign_with(digest, "secret", &msg);
            assert!(sign_co::verify_with(digest, "secret", http, &pairs, &sig));
            let provided = pairs
                .iter()
                .find(|(k, _)| k == "Signature")
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            let _ = sign_co::verify_with(digest, "secret", http, &pairs, provided);
        }
    }
});
