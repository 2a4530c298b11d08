//! v2 (`/v2/index.php`): the form/query decoder, `Params` (bounds, `_` read as `.`, arrays,
//! integers) and the signature (string to sign, sign, verify) on arbitrary input.
#![no_main]

use crsd_api::params::Params;
use crsd_api::sign_v2::{self, SignatureMethod};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let pairs = sign_v2::parse_pairs(&raw);
    if let Ok(params) = Params::from_pairs(&pairs) {
        for (name, _) in &pairs {
            let name = name.replace('_', ".");
            let _ = params.get(&name);
            let _ = params.int(&name);
            if let Some((list, _)) = name.rsplit_once('.') {
                let items = params.array(list);
                assert!(items.len() <= pairs.len());
                let _ = params.int_array(list);
            }
        }
    }
    for method in ["GET", "POST"] {
        let msg = sign_v2::string_to_sign(method, "redis.api.qcloud.com", "/v2/index.php", &pairs);
        for digest in [SignatureMethod::HmacSha1, SignatureMethod::HmacSha256] {
            let sig = sign_v2::sign(digest, b"secret", &msg);
            assert!(sign_v2::verify(digest, b"secret", &msg, &sig));
            if let Some((_, provided)) = pairs.iter().find(|(k, _)| k == "Signature") {
                let _ = sign_v2::verify(digest, b"secret", &msg, provided);
            }
        }
    }
});
