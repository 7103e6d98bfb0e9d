//! Manifests, indexes and image configs come from registries, which are untrusted: any
//! bytes under any content type must parse or be refused, never panic.
#![no_main]

use hull_cri::manifest::{ImageConfig, Manifest};
use libfuzzer_sys::fuzz_target;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let content_type = TYPES[usize::from(selector) % TYPES.len()];
    if let Ok(m) = Manifest::parse(content_type, bytes) {
        if let Manifest::Index(index) = &m {
            let _ = index.select("linux", "amd64");
        }
    }
    let _ = ImageConfig::parse(bytes, usize::from(selector % 8));
});
