//! hull-sandbox's Sentry parses workload executables itself (its own ELF loader and `#!`
//! handling): any bytes must parse or be refused with an errno, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hull_sandbox::sentry::loader::shebang(data);
    if let Ok(elf) = hull_sandbox::sentry::loader::Elf::parse(data) {
        if let Ok(segs) = elf.segments() {
            for s in segs {
                assert!(s.filesz <= s.memsz);
                assert!(s.offset + s.filesz <= data.len() as u64);
            }
        }
    }
});
