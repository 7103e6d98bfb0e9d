//! The Sentry's ELF loader: it parses the executable (and its PT_INTERP dynamic loader)
//! itself and builds the new image in an emptied address space, through stub calls and
//! memory writes. The host's execve is never used.

use nix::errno::Errno;

use crate::platform::{mem, Regs, Tracee};

const PAGE: u64 = 4096;
/// Where a position-independent executable is loaded (as Linux's ELF_ET_DYN_BASE).
const PIE_BASE: u64 = 0x5555_5555_4000;
/// Where the dynamic loader goes.
const INTERP_BASE: u64 = 0x7fff_e000_0000;
/// The top of the initial stack and its reserved size.
const STACK_TOP: u64 = 0x7fff_ef00_0000;
const STACK_SIZE: u64 = 8 << 20;

/// A parsed ELF64 x86_64 image.
pub struct Elf<'a> {
    data: &'a [u8],
    /// ET_EXEC or ET_DYN.
    pub dynamic: bool,
    /// e_entry.
    pub entry: u64,
    phoff: u64,
    /// e_phnum.
    pub phnum: u16,
    /// PT_INTERP's path, if any.
    pub interp: Option<Vec<u8>>,
}

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// p_vaddr.
    pub vaddr: u64,
    /// p_memsz.
    pub memsz: u64,
    /// p_offset.
    pub offset: u64,
    /// p_filesz.
    pub filesz: u64,
    /// PROT_* from p_flags.
    pub prot: u64,
}

/// The bytes at `o..o+n`, or ENOEXEC (also when the offset arithmetic overflows).
fn at(d: &[u8], o: usize, n: usize) -> Result<&[u8], Errno> {
    d.get(o..o.checked_add(n).ok_or(Errno::ENOEXEC)?)
        .ok_or(Errno::ENOEXEC)
}

/// The offset of program header `i`.
fn ph(phoff: u64, i: usize) -> Result<usize, Errno> {
    usize::try_from(phoff)
        .ok()
        .and_then(|p| p.checked_add(i * 56))
        .ok_or(Errno::ENOEXEC)
}

fn u16_at(d: &[u8], o: usize) -> Result<u16, Errno> {
    at(d, o, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}
fn u32_at(d: &[u8], o: usize) -> Result<u32, Errno> {
    at(d, o, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
}
fn u64_at(d: &[u8], o: usize) -> Result<u64, Errno> {
    at(d, o, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

impl<'a> Elf<'a> {
    /// Parses the header; ENOEXEC for anything but a 64-bit little-endian x86_64
    /// executable or shared object.
    pub fn parse(data: &'a [u8]) -> Result<Self, Errno> {
        if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
            return Err(Errno::ENOEXEC);
        }
        let kind = u16_at(data, 16)?;
        if u16_at(data, 18)? != 62 || !(kind == 2 || kind == 3) {
            return Err(Errno::ENOEXEC);
        }
        if u16_at(data, 54)? != 56 {
            return Err(Errno::ENOEXEC);
        }
        let mut elf = Elf {
            data,
            dynamic: kind == 3,
            entry: u64_at(data, 24)?,
            phoff: u64_at(data, 32)?,
            phnum: u16_at(data, 56)?,
            interp: None,
        };
        for i in 0..elf.phnum as usize {
            let o = ph(elf.phoff, i)?;
            if u32_at(data, o)? == 3 {
                let off = u64_at(data, o + 8)? as usize;
                let len = u64_at(data, o + 32)? as usize;
                let s = at(data, off, len)?;
                let s = s.split(|&b| b == 0).next().unwrap_or_default();
                elf.interp = Some(s.to_vec());
            }
        }
        Ok(elf)
    }

    /// The PT_LOAD segments.
    pub fn segments(&self) -> Result<Vec<Segment>, Errno> {
        let mut out = Vec::new();
        for i in 0..self.phnum as usize {
            let o = ph(self.phoff, i)?;
            if u32_at(self.data, o)? != 1 {
                continue;
            }
            let flags = u32_at(self.data, o + 4)?;
            let prot = (if flags & 4 != 0 { libc::PROT_READ } else { 0 }
                | if flags & 2 != 0 { libc::PROT_WRITE } else { 0 }
                | if flags & 1 != 0 { libc::PROT_EXEC } else { 0 }) as u64;
            let s = Segment {
                offset: u64_at(self.data, o + 8)?,
                vaddr: u64_at(self.data, o + 16)?,
                filesz: u64_at(self.data, o + 32)?,
                memsz: u64_at(self.data, o + 40)?,
                prot,
            };
            let end = s.offset.checked_add(s.filesz).ok_or(Errno::ENOEXEC)?;
            if s.filesz > s.memsz || end > self.data.len() as u64 {
                return Err(Errno::ENOEXEC);
            }
            out.push(s);
        }
        if out.is_empty() {
            return Err(Errno::ENOEXEC);
        }
        Ok(out)
    }
}

/// What loading produced.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// Where execution starts (the loader's entry if there is one).
    pub start: u64,
    /// The initial stack pointer.
    pub sp: u64,
    /// The end of the image: the brk heap starts here.
    pub brk: u64,
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE - 1)
}
fn page_up(x: u64) -> u64 {
    (x + PAGE - 1) & !(PAGE - 1)
}

fn stub_ok(ret: i64) -> Result<u64, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw(-ret as i32))
    } else {
        Ok(ret as u64)
    }
}

/// Maps anonymous memory at exactly `addr` in `t`'s address space.
pub fn map_fixed(t: &Tracee, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as u64;
    let r = t
        .stub_call(libc::SYS_mmap, [addr, len, prot, flags, u64::MAX, 0])
        .map_err(|_| Errno::EFAULT)?;
    stub_ok(r).map(drop)
}

/// Changes protection in `t`'s address space.
pub fn protect(t: &Tracee, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
    let r = t
        .stub_call(libc::SYS_mprotect, [addr, len, prot, 0, 0, 0])
        .map_err(|_| Errno::EFAULT)?;
    stub_ok(r).map(drop)
}

/// Maps `elf` at `bias`; returns the end of its highest segment.
fn map_image(t: &Tracee, elf: &Elf, data: &[u8], bias: u64) -> Result<u64, Errno> {
    let mut end = 0;
    for s in elf.segments()? {
        let start = page_down(s.vaddr + bias);
        let stop = page_up(s.vaddr + bias + s.memsz);
        map_fixed(
            t,
            start,
            stop - start,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
        )?;
        let bytes = &data[s.offset as usize..(s.offset + s.filesz) as usize];
        mem::write(t.pid, s.vaddr + bias, bytes)?;
        if s.prot != (libc::PROT_READ | libc::PROT_WRITE) as u64 {
            protect(t, start, stop - start, s.prot)?;
        }
        end = end.max(stop);
    }
    Ok(end)
}

/// The base the first PT_LOAD of a PIE at `base` is biased by.
fn bias_for(elf: &Elf, base: u64) -> Result<u64, Errno> {
    if !elf.dynamic {
        return Ok(0);
    }
    let low = elf
        .segments()?
        .iter()
        .map(|s| page_down(s.vaddr))
        .min()
        .unwrap_or(0);
    Ok(base - low)
}

/// The initial process image's inputs.
pub struct Image<'a> {
    /// The executable's bytes.
    pub exe: &'a [u8],
    /// The dynamic loader's bytes, if the executable names one.
    pub interp: Option<&'a [u8]>,
    /// argv.
    pub argv: &'a [Vec<u8>],
    /// envp.
    pub envp: &'a [Vec<u8>],
    /// AT_EXECFN.
    pub execfn: &'a [u8],
    /// 16 random bytes for AT_RANDOM.
    pub random: [u8; 16],
    /// Credentials for the auxv.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// Loads `img` into the (already emptied) address space of `t`, and sets `regs` to start
/// it.
pub fn load(t: &Tracee, img: &Image, regs: &mut Regs) -> Result<Loaded, Errno> {
    let elf = Elf::parse(img.exe)?;
    let bias = bias_for(&elf, PIE_BASE)?;
    let end = map_image(t, &elf, img.exe, bias)?;
    let mut start = elf.entry + bias;
    let mut interp_base = 0;
    if let Some(ld) = img.interp {
        let lelf = Elf::parse(ld)?;
        let lbias = bias_for(&lelf, INTERP_BASE)?;
        map_image(t, &lelf, ld, lbias)?;
        start = lelf.entry + lbias;
        interp_base = lbias;
    }
    let phdr = elf
        .segments()?
        .iter()
        .find(|s| s.offset == 0)
        .map(|s| s.vaddr + bias + elf.phoff)
        .unwrap_or(bias + elf.phoff);
    map_fixed(
        t,
        STACK_TOP - STACK_SIZE,
        STACK_SIZE,
        (libc::PROT_READ | libc::PROT_WRITE) as u64,
    )?;
    let auxv = [
        (3u64, phdr),
        (4, 56),
        (5, elf.phnum as u64),
        (6, PAGE),
        (7, interp_base),
        (8, 0),
        (9, elf.entry + bias),
        (11, img.uid as u64),
        (12, img.uid as u64),
        (13, img.gid as u64),
        (14, img.gid as u64),
        (17, 100),
        (23, 0),
    ];
    let sp = build_stack(t, img, &auxv)?;
    *regs = Regs {
        rip: start,
        rsp: sp,
        eflags: 0x202,
        cs: regs.cs,
        ss: regs.ss,
        orig_rax: u64::MAX,
        ..zero_regs()
    };
    t.set_fpregs(&crate::sys::FpRegs::default())
        .map_err(|_| Errno::EFAULT)?;
    Ok(Loaded {
        start,
        sp,
        brk: end,
    })
}

fn zero_regs() -> Regs {
    Regs {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        rbp: 0,
        rbx: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rax: 0,
        rcx: 0,
        rdx: 0,
        rsi: 0,
        rdi: 0,
        orig_rax: 0,
        rip: 0,
        cs: 0,
        eflags: 0,
        rsp: 0,
        ss: 0,
        fs_base: 0,
        gs_base: 0,
        ds: 0,
        es: 0,
        fs: 0,
        gs: 0,
    }
}

/// Writes strings, the random bytes, auxv, envp, argv and argc at the top of the stack,
/// as the System V ABI lays them out; returns the stack pointer (pointing at argc).
fn build_stack(t: &Tracee, img: &Image, auxv: &[(u64, u64)]) -> Result<u64, Errno> {
    let mut strings = Vec::new();
    let mut offs = Vec::new();
    for s in img.argv.iter().chain(img.envp.iter()) {
        offs.push(strings.len() as u64);
        strings.extend_from_slice(s);
        strings.push(0);
    }
    let execfn_off = strings.len() as u64;
    strings.extend_from_slice(img.execfn);
    strings.push(0);
    let platform_off = strings.len() as u64;
    strings.extend_from_slice(b"x86_64\0");
    let random_off = strings.len() as u64;
    strings.extend_from_slice(&img.random);
    if strings.len() as u64 > STACK_SIZE / 4 {
        return Err(Errno::E2BIG);
    }
    let str_base = (STACK_TOP - 16 - strings.len() as u64) & !15;
    mem::write(t.pid, str_base, &strings)?;
    let mut words: Vec<u64> = vec![img.argv.len() as u64];
    let (a, e) = offs.split_at(img.argv.len());
    words.extend(a.iter().map(|o| str_base + o));
    words.push(0);
    words.extend(e.iter().map(|o| str_base + o));
    words.push(0);
    for &(k, v) in auxv {
        words.extend([k, v]);
    }
    words.extend([31, str_base + execfn_off, 15, str_base + platform_off]);
    words.extend([25, str_base + random_off, 0, 0]);
    let sp = (str_base - words.len() as u64 * 8) & !15;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem::write(t.pid, sp, &bytes)?;
    Ok(sp)
}

/// A `#!` line: the interpreter and its optional argument.
pub fn shebang(data: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let rest = data.strip_prefix(b"#!")?;
    let line = rest.split(|&b| b == b'\n').next()?;
    let line: &[u8] = line.trim_ascii();
    let mut it = line.splitn(2, |b| *b == b' ' || *b == b'\t');
    let interp = it.next().filter(|i| !i.is_empty())?.to_vec();
    let arg = it
        .next()
        .map(|a| a.trim_ascii().to_vec())
        .filter(|a| !a.is_empty());
    Some((interp, arg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf() {
        assert_eq!(Elf::parse(b"#!/bin/sh\n").err(), Some(Errno::ENOEXEC));
        assert_eq!(Elf::parse(&[0u8; 100]).err(), Some(Errno::ENOEXEC));
    }

    #[test]
    fn parses_a_real_executable() {
        // This test binary itself: always there, a PIE.
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = Elf::parse(&data).expect("the test binary parses");
        assert!(elf.dynamic);
        assert!(!elf.segments().expect("segments").is_empty());
        assert!(elf.entry != 0);
    }

    #[test]
    fn shebang_splits_interpreter_and_argument() {
        assert_eq!(
            shebang(b"#!/bin/sh -e\necho"),
            Some((b"/bin/sh".to_vec(), Some(b"-e".to_vec())))
        );
        assert_eq!(shebang(b"#! /bin/sh\n"), Some((b"/bin/sh".to_vec(), None)));
        assert_eq!(shebang(b"\x7fELF"), None);
    }
}
