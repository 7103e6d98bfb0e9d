//! Image references arrive in CRI requests: any string must parse or be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = hull_cri::reference::Reference::parse(s) {
            let _ = (r.name(), r.tagged(), r.manifest_ref());
        }
    }
});
