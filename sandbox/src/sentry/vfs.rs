//! The Sentry's file system: the rootfs, read-only, through the gofer (the lower layer), an
//! in-memory writable upper layer with whiteouts and copy-up, and synthesized /dev and
//! /proc (see `synth.rs`).
//!
//! Paths are normalized lexically against the task's cwd; the lower layer resolves
//! symlinks in the host kernel, inside the root, and reports the canonical path, which the
//! upper layer is then consulted under too.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use nix::errno::Errno;
use nix::sys::stat::fstat;

use super::file::{Dirent, FileKind, OpenFile};
use crate::gofer::{self, Client};

/// The metadata the Sentry reports for a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// st_dev.
    pub dev: u64,
    /// st_ino.
    pub ino: u64,
    /// st_mode (type and permissions).
    pub mode: u32,
    /// st_nlink.
    pub nlink: u64,
    /// st_uid.
    pub uid: u32,
    /// st_gid.
    pub gid: u32,
    /// st_rdev.
    pub rdev: u64,
    /// st_size.
    pub size: i64,
    /// st_mtime seconds (also atime and ctime).
    pub mtime: i64,
}

impl Stat {
    /// The 144-byte x86_64 `struct stat`.
    pub fn to_bytes(&self) -> [u8; 144] {
        let mut b = [0u8; 144];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.dev.to_le_bytes());
        put(8, &self.ino.to_le_bytes());
        put(16, &self.nlink.to_le_bytes());
        put(24, &self.mode.to_le_bytes());
        put(28, &self.uid.to_le_bytes());
        put(32, &self.gid.to_le_bytes());
        put(40, &self.rdev.to_le_bytes());
        put(48, &self.size.to_le_bytes());
        put(56, &4096i64.to_le_bytes());
        put(64, &((self.size + 511) / 512).to_le_bytes());
        for t in [72, 88, 104] {
            put(t, &self.mtime.to_le_bytes());
        }
        b
    }

    /// The file type bits.
    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    fn from_host(s: &libc::stat) -> Stat {
        Stat {
            dev: s.st_dev,
            ino: s.st_ino,
            mode: s.st_mode,
            nlink: s.st_nlink,
            uid: s.st_uid,
            gid: s.st_gid,
            rdev: s.st_rdev,
            size: s.st_size,
            mtime: s.st_mtime,
        }
    }
}

/// How many rootfs lookups the Sentry remembers.
const LOWER_CACHE: usize = 8192;

/// A rootfs node: its descriptor, stat and canonical path.
type Lower = (Rc<OwnedFd>, Stat, String);

/// The device number the upper layer's nodes report.
const UPPER_DEV: u64 = 0x5e47;

/// A node of the upper layer.
#[derive(Clone, Debug)]
pub enum Upper {
    /// A regular file.
    File(Rc<RefCell<Vec<u8>>>, Stat),
    /// A directory.
    Dir(Stat),
    /// A symbolic link.
    Symlink(Vec<u8>, Stat),
    /// Deleted: hides the lower layer's node.
    Whiteout,
}

/// What a path names.
pub enum Node {
    /// A node of the upper layer.
    Upper(Upper),
    /// A node of the rootfs.
    Lower(Rc<OwnedFd>, Stat),
    /// A synthesized file (/dev, /proc).
    Synth(FileKind, Stat),
    /// A synthesized symlink (/proc/self).
    SynthLink(Vec<u8>),
}

/// The file system of one sandbox.
pub struct Vfs {
    gofer: Client,
    /// What /proc shows; the kernel refreshes it before resolving a path under /proc.
    pub proc: super::synth::ProcView,
    upper: BTreeMap<String, Upper>,
    lower_cache: std::collections::HashMap<(String, bool), Result<Lower, Errno>>,
    /// Modification times set by utimensat, by path.
    times: std::collections::HashMap<String, i64>,
    /// Bind-mount destinations: read-only in stage 1 (writes there fail with EROFS).
    binds: Vec<String>,
    next_ino: u64,
    now: i64,
}

/// Joins `path` onto `cwd` and removes `.`, `..` and duplicate slashes.
pub fn normalize(cwd: &str, path: &[u8]) -> Result<String, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let s = std::str::from_utf8(path).map_err(|_| Errno::EINVAL)?;
    let mut parts: Vec<&str> = Vec::new();
    let base = if s.starts_with('/') { "" } else { cwd };
    for p in base.split('/').chain(s.split('/')) {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The parent directory and last component of a normalized path.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

impl Vfs {
    /// A file system over the gofer's rootfs.
    pub fn new(gofer: Client, binds: Vec<String>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Vfs {
            gofer,
            proc: Default::default(),
            upper: BTreeMap::new(),
            lower_cache: Default::default(),
            binds,
            times: Default::default(),
            next_ino: 1 << 40,
            now,
        }
    }

    /// EROFS for a path on a bind mount (they are read-only views of host files).
    fn writable(&self, path: &str) -> Result<(), Errno> {
        let under = |d: &String| {
            path == d
                || path
                    .strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        };
        if self.binds.iter().any(under) {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    fn ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }

    fn new_stat(&mut self, mode: u32) -> Stat {
        Stat {
            dev: UPPER_DEV,
            ino: self.ino(),
            mode,
            nlink: 1,
            mtime: self.now,
            ..Stat::default()
        }
    }

    /// Looks `path` (normalized) up, following a final symlink unless `nofollow`.
    pub fn lookup(&mut self, path: &str, nofollow: bool) -> Result<(Node, String), Errno> {
        let mut path = path.to_string();
        for _ in 0..40 {
            if let Some(n) = super::synth::lookup(&path, &self.proc) {
                match n? {
                    Node::SynthLink(target) if !nofollow => {
                        let (dir, _) = split(&path);
                        path = normalize(dir, &target)?;
                        continue;
                    }
                    n => return Ok((n, path)),
                }
            }
            match self.upper.get(&path) {
                Some(Upper::Whiteout) => return Err(Errno::ENOENT),
                Some(Upper::Symlink(t, _)) if !nofollow => {
                    let (dir, _) = split(&path);
                    path = normalize(dir, &t.clone())?;
                    continue;
                }
                Some(u) => return Ok((Node::Upper(u.clone()), path)),
                None => {}
            }
            self.check_parent_visible(&path)?;
            let (fd, st, canon) = self.lower(&path, nofollow)?;
            if canon != path {
                match self.upper.get(&canon) {
                    Some(Upper::Whiteout) => return Err(Errno::ENOENT),
                    Some(u) => return Ok((Node::Upper(u.clone()), canon)),
                    None => {}
                }
            }
            return Ok((Node::Lower(fd, st), canon));
        }
        Err(Errno::ELOOP)
    }

    /// A node of the rootfs, through the gofer, or from the cache of earlier answers: the
    /// rootfs is read-only to the sandbox, so an answer (including ENOENT) stays true.
    fn lower(&mut self, path: &str, nofollow: bool) -> Result<Lower, Errno> {
        let key = (path.to_string(), nofollow);
        if let Some(hit) = self.lower_cache.get(&key) {
            return hit.clone();
        }
        let flags = if nofollow { gofer::NOFOLLOW } else { 0 };
        let r = self.gofer.open(path, flags).and_then(|(fd, canon)| {
            let st = fstat(fd.as_raw_fd())?;
            Ok((Rc::new(fd), Stat::from_host(&st), canon))
        });
        if self.lower_cache.len() >= LOWER_CACHE {
            self.lower_cache.clear();
        }
        self.lower_cache.insert(key, r.clone());
        r
    }

    /// A whited-out directory hides everything below it.
    fn check_parent_visible(&self, path: &str) -> Result<(), Errno> {
        let mut p = path;
        while p != "/" {
            p = split(p).0;
            if let Some(u) = self.upper.get(p) {
                return match u {
                    Upper::Whiteout => Err(Errno::ENOENT),
                    Upper::File(..) => Err(Errno::ENOTDIR),
                    _ => Ok(()),
                };
            }
        }
        Ok(())
    }

    /// The stat of `path`.
    pub fn stat(&mut self, path: &str, nofollow: bool) -> Result<Stat, Errno> {
        let (node, real) = self.lookup(path, nofollow)?;
        let mut st = node_stat(&node);
        if let Some(&t) = self.times.get(&real) {
            st.mtime = t;
        }
        Ok(st)
    }

    /// Sets the modification time of `path` (utimensat); the host file is never touched.
    pub fn set_mtime(&mut self, path: &str, nofollow: bool, secs: i64) -> Result<(), Errno> {
        let (_, real) = self.lookup(path, nofollow)?;
        self.writable(&real)?;
        self.times.insert(real, secs);
        Ok(())
    }

    /// Whether `path` exists as a directory.
    pub fn is_dir(&mut self, path: &str) -> Result<(), Errno> {
        match self.stat(path, false)?.kind() {
            libc::S_IFDIR => Ok(()),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Reads a symlink's target.
    pub fn readlink(&mut self, path: &str) -> Result<Vec<u8>, Errno> {
        match self.lookup(path, true)?.0 {
            Node::Upper(Upper::Symlink(t, _)) | Node::SynthLink(t) => Ok(t),
            Node::Lower(fd, st) if st.kind() == libc::S_IFLNK => {
                let t = nix::fcntl::readlinkat(Some(fd.as_raw_fd()), "")?;
                Ok(t.into_encoded_bytes())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// Opens `path` with open(2) `flags` and `mode` (before umask is applied by the caller).
    pub fn open(&mut self, path: &str, flags: i32, mode: u32) -> Result<OpenFile, Errno> {
        let acc = flags & libc::O_ACCMODE;
        let writing = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let nofollow = flags & libc::O_NOFOLLOW != 0;
        if writing || flags & libc::O_CREAT != 0 {
            self.writable(path)?;
        }
        let found = match self.lookup(path, nofollow) {
            Ok(f) => Some(f),
            Err(Errno::ENOENT) if flags & libc::O_CREAT != 0 => None,
            Err(e) => return Err(e),
        };
        let (node, real) = match found {
            Some(_) if flags & libc::O_CREAT != 0 && flags & libc::O_EXCL != 0 => {
                return Err(Errno::EEXIST)
            }
            Some(f) => f,
            None => {
                let (dir, name) = split(path);
                if name.is_empty() {
                    return Err(Errno::EISDIR);
                }
                self.is_dir(dir)?;
                let st = self.new_stat(libc::S_IFREG | (mode & 0o7777));
                let u = Upper::File(Rc::new(RefCell::new(Vec::new())), st);
                self.upper.insert(path.to_string(), u.clone());
                (Node::Upper(u), path.to_string())
            }
        };
        let st = node_stat(&node);
        if flags & libc::O_DIRECTORY != 0 && st.kind() != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        if flags & libc::O_PATH != 0 {
            return Ok(open_file(FileKind::PathOnly, real, flags, st));
        }
        if st.kind() == libc::S_IFDIR {
            if writing {
                return Err(Errno::EISDIR);
            }
            let entries = self.list(&real, node)?;
            return Ok(open_file(FileKind::Dir(entries), real, flags, st));
        }
        if st.kind() == libc::S_IFLNK {
            return Err(Errno::ELOOP);
        }
        let kind = match node {
            Node::Upper(Upper::File(data, _)) => {
                if flags & libc::O_TRUNC != 0 && acc != libc::O_RDONLY {
                    data.borrow_mut().clear();
                }
                FileKind::Upper(data)
            }
            Node::Lower(fd, _) if writing => {
                if st.kind() != libc::S_IFREG {
                    return Err(Errno::EACCES);
                }
                let data = self.copy_up(&real, &fd, st, flags & libc::O_TRUNC != 0)?;
                FileKind::Upper(data)
            }
            Node::Lower(fd, _) if st.kind() == libc::S_IFREG => FileKind::Host(fd),
            Node::Lower(..) => return Err(Errno::ENXIO),
            Node::Synth(kind, _) => kind,
            Node::Upper(_) | Node::SynthLink(_) => return Err(Errno::ENOENT),
        };
        Ok(open_file(kind, real, flags, st))
    }

    fn copy_up(
        &mut self,
        path: &str,
        fd: &OwnedFd,
        st: Stat,
        trunc: bool,
    ) -> Result<Rc<RefCell<Vec<u8>>>, Errno> {
        let mut data = Vec::new();
        if !trunc {
            data = vec![0u8; st.size.max(0) as usize];
            let mut off = 0;
            while off < data.len() {
                match super::file::pread_host(fd, &mut data[off..], off as u64)? {
                    0 => break,
                    n => off += n,
                }
            }
            data.truncate(off);
        }
        let data = Rc::new(RefCell::new(data));
        let mut nst = self.new_stat(st.mode);
        nst.uid = st.uid;
        nst.gid = st.gid;
        self.upper
            .insert(path.to_string(), Upper::File(data.clone(), nst));
        Ok(data)
    }

    /// The entries of directory `path` (normalized, resolved), upper over lower.
    fn list(&mut self, path: &str, node: Node) -> Result<Vec<Dirent>, Errno> {
        let mut names: BTreeMap<Vec<u8>, (u64, u8)> = BTreeMap::new();
        if let Node::Lower(fd, _) = &node {
            for e in read_host_dir(fd)? {
                names.insert(e.name, (e.ino, e.kind));
            }
        }
        if let Node::Synth(FileKind::Dir(entries), _) = &node {
            for e in entries {
                names.insert(e.name.clone(), (e.ino, e.kind));
            }
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        for (p, u) in self.upper.range(prefix.clone()..) {
            let Some(rest) = p.strip_prefix(&prefix) else {
                break;
            };
            if rest.is_empty() || rest.contains('/') {
                continue;
            }
            let name = rest.as_bytes().to_vec();
            match u {
                Upper::Whiteout => {
                    names.remove(&name);
                }
                u => {
                    let st = node_stat(&Node::Upper(u.clone()));
                    names.insert(name, (st.ino, dtype(st.mode)));
                }
            }
        }
        let mut out = vec![
            Dirent {
                ino: 1,
                kind: libc::DT_DIR,
                name: b".".to_vec(),
            },
            Dirent {
                ino: 1,
                kind: libc::DT_DIR,
                name: b"..".to_vec(),
            },
        ];
        out.extend(
            names
                .into_iter()
                .map(|(name, (ino, kind))| Dirent { ino, kind, name }),
        );
        Ok(out)
    }

    /// mkdir(2).
    pub fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Errno> {
        self.writable(path)?;
        if self.lookup(path, true).is_ok() {
            return Err(Errno::EEXIST);
        }
        self.is_dir(split(path).0)?;
        let st = self.new_stat(libc::S_IFDIR | (mode & 0o7777));
        self.upper.insert(path.to_string(), Upper::Dir(st));
        Ok(())
    }

    /// symlink(2).
    pub fn symlink(&mut self, target: &[u8], path: &str) -> Result<(), Errno> {
        if self.lookup(path, true).is_ok() {
            return Err(Errno::EEXIST);
        }
        self.is_dir(split(path).0)?;
        let st = self.new_stat(libc::S_IFLNK | 0o777);
        self.upper
            .insert(path.to_string(), Upper::Symlink(target.to_vec(), st));
        Ok(())
    }

    /// unlink(2) (`dir` false) or rmdir(2) (`dir` true).
    pub fn remove(&mut self, path: &str, dir: bool) -> Result<(), Errno> {
        self.writable(path)?;
        if path == "/" {
            return Err(Errno::EBUSY);
        }
        let (node, _) = self.lookup(path, true)?;
        let st = node_stat(&node);
        let is_dir = st.kind() == libc::S_IFDIR;
        if matches!(node, Node::Synth(..) | Node::SynthLink(_)) {
            return Err(Errno::EPERM);
        }
        match (dir, is_dir) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if self.list(path, node)?.len() > 2 => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let prefix = format!("{path}/");
        self.upper.retain(|p, _| !p.starts_with(&prefix));
        self.upper.insert(path.to_string(), Upper::Whiteout);
        Ok(())
    }

    /// rename(2) of a file (directories only when they live in the upper layer alone).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
        self.writable(from)?;
        self.writable(to)?;
        let (node, _) = self.lookup(from, true)?;
        let node = match node {
            Node::Upper(u) => u,
            Node::Lower(fd, st) if st.kind() == libc::S_IFREG => {
                Upper::File(self.copy_up(from, &fd, st, false)?, st)
            }
            Node::Lower(_, st) if st.kind() == libc::S_IFLNK => {
                Upper::Symlink(self.readlink(from)?, st)
            }
            _ => return Err(Errno::EXDEV),
        };
        if let Upper::Dir(_) = node {
            let prefix = format!("{from}/");
            if self.upper.keys().any(|p| p.starts_with(&prefix)) || to.starts_with(&prefix) {
                return Err(Errno::EXDEV);
            }
        }
        self.is_dir(split(to).0)?;
        if let Ok(st) = self.stat(to, true) {
            if st.kind() == libc::S_IFDIR {
                return Err(Errno::EISDIR);
            }
        }
        self.upper.insert(from.to_string(), Upper::Whiteout);
        self.upper.insert(to.to_string(), node);
        Ok(())
    }

    /// Changes the permission bits of `path`, copying it up.
    pub fn chmod(&mut self, path: &str, mode: u32) -> Result<(), Errno> {
        let (node, real) = self.lookup(path, false)?;
        let mut u = match node {
            Node::Upper(u) => u,
            Node::Lower(fd, st) if st.kind() == libc::S_IFREG => {
                Upper::File(self.copy_up(&real, &fd, st, false)?, st)
            }
            Node::Lower(_, st) if st.kind() == libc::S_IFDIR => Upper::Dir(st),
            _ => return Err(Errno::EPERM),
        };
        match &mut u {
            Upper::File(_, st) | Upper::Dir(st) | Upper::Symlink(_, st) => {
                st.mode = (st.mode & libc::S_IFMT) | (mode & 0o7777)
            }
            Upper::Whiteout => return Err(Errno::ENOENT),
        }
        self.upper.insert(real, u);
        Ok(())
    }
}

fn open_file(kind: FileKind, path: String, flags: i32, stat: Stat) -> OpenFile {
    OpenFile {
        kind,
        path,
        offset: 0,
        flags,
        stat,
    }
}

/// The stat of a node; for upper files the live size.
pub fn node_stat(n: &Node) -> Stat {
    match n {
        Node::Upper(Upper::File(d, st)) => Stat {
            size: d.borrow().len() as i64,
            ..*st
        },
        Node::Upper(Upper::Dir(st)) | Node::Lower(_, st) | Node::Synth(_, st) => *st,
        Node::Upper(Upper::Symlink(t, st)) => Stat {
            size: t.len() as i64,
            ..*st
        },
        Node::Upper(Upper::Whiteout) => Stat::default(),
        Node::SynthLink(t) => Stat {
            mode: libc::S_IFLNK | 0o777,
            size: t.len() as i64,
            nlink: 1,
            ..Stat::default()
        },
    }
}

/// The DT_* type of a mode.
pub fn dtype(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        libc::S_IFBLK => libc::DT_BLK,
        _ => libc::DT_REG,
    }
}

fn read_host_dir(fd: &OwnedFd) -> Result<Vec<Dirent>, Errno> {
    let dup = fd.try_clone().map_err(|_| Errno::EMFILE)?;
    // The descriptor is cached and shared: list from the start every time.
    nix::unistd::lseek(dup.as_raw_fd(), 0, nix::unistd::Whence::SeekSet)?;
    let mut dir = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dup))?;
    let mut out = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let name = e.file_name().to_bytes().to_vec();
        if name == b"." || name == b".." {
            continue;
        }
        let kind = match e.file_type() {
            Some(nix::dir::Type::Directory) => libc::DT_DIR,
            Some(nix::dir::Type::Symlink) => libc::DT_LNK,
            Some(nix::dir::Type::File) => libc::DT_REG,
            Some(nix::dir::Type::CharacterDevice) => libc::DT_CHR,
            Some(nix::dir::Type::Fifo) => libc::DT_FIFO,
            Some(nix::dir::Type::Socket) => libc::DT_SOCK,
            Some(nix::dir::Type::BlockDevice) => libc::DT_BLK,
            None => libc::DT_UNKNOWN,
        };
        out.push(Dirent {
            ino: e.ino(),
            kind,
            name,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_against_cwd() {
        assert_eq!(normalize("/a/b", b"../c/./d").unwrap(), "/a/c/d");
        assert_eq!(normalize("/", b"/../../x//y/").unwrap(), "/x/y");
        assert_eq!(normalize("/tmp", b".").unwrap(), "/tmp");
        assert_eq!(normalize("/", b"").unwrap_err(), Errno::ENOENT);
    }

    #[test]
    fn split_gives_parent_and_name() {
        assert_eq!(split("/a/b"), ("/a", "b"));
        assert_eq!(split("/a"), ("/", "a"));
    }

    #[test]
    fn stat_bytes_follow_the_x86_64_layout() {
        let s = Stat {
            ino: 7,
            mode: 0o100644,
            size: 10,
            nlink: 1,
            ..Stat::default()
        };
        let b = s.to_bytes();
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 0o100644);
        assert_eq!(i64::from_le_bytes(b[48..56].try_into().unwrap()), 10);
    }
}
