//! API 3.0 parameters: flattened pairs folded by `Params3::from_pairs` (the TC3 GET and the
//! old signature; Capital Online's query too) and JSON bodies by `Params3::from_json`, then
//! every typed getter on every name, on arbitrary input.
#![no_main]

use crsd_api::limits;
use crsd_api::sign_v2::parse_pairs;
use crsd_api::tc3::params::Params3;
use libfuzzer_sys::fuzz_target;

fn read_all(p: &Params3) {
    let names: Vec<String> = p.names().cloned().collect();
    for name in &names {
        let _ = p.get(name);
        let _ = p.str(name);
        let _ = p.required_str(name);
        let _ = p.int(name);
        let _ = p.int_list(name);
        let _ = p.str_list(name);
    }
}

fuzz_target!(|data: &[u8]| {
    let pairs = parse_pairs(&String::from_utf8_lossy(data));
    if let Ok(p) = Params3::from_pairs(&pairs, &["Action", "Signature"]) {
        // What was accepted is within the bounds.
        assert!(pairs.len() <= limits::MAX_PAIRS);
        for (name, value) in &pairs {
            assert!(name.len() <= limits::MAX_NAME_BYTES);
            assert!(name.split('.').count() <= limits::MAX_SEGMENTS);
            assert!(value.len() <= limits::MAX_VALUE_BYTES);
        }
        read_all(&p);
    }
    if let Ok(p) = Params3::from_json(data) {
        read_all(&p);
    }
});
