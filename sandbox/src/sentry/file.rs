//! Open file descriptions, the fd table and pipes: all Sentry objects. A workload's fd
//! never names a host descriptor directly.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::rc::Rc;

use nix::errno::Errno;

/// Capacity of a pipe, as Linux's default.
pub const PIPE_CAP: usize = 65536;
/// Writes up to this size are atomic (POSIX PIPE_BUF).
pub const PIPE_BUF: usize = 4096;
/// The highest fd number plus one (RLIMIT_NOFILE).
pub const MAX_FDS: i32 = 1024;

/// A pipe's buffer and its open ends.
#[derive(Default, Debug)]
pub struct Pipe {
    /// Bytes written and not yet read.
    pub buf: VecDeque<u8>,
    /// Open read ends.
    pub readers: usize,
    /// Open write ends.
    pub writers: usize,
}

/// One end of a pipe; dropping it closes that end.
#[derive(Debug)]
pub struct PipeEnd {
    /// The pipe.
    pub pipe: Rc<RefCell<Pipe>>,
    /// Whether this is the write end.
    pub write: bool,
}

impl PipeEnd {
    /// Opens an end of `pipe`.
    pub fn new(pipe: &Rc<RefCell<Pipe>>, write: bool) -> Self {
        let mut p = pipe.borrow_mut();
        if write {
            p.writers += 1;
        } else {
            p.readers += 1;
        }
        PipeEnd {
            pipe: pipe.clone(),
            write,
        }
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let mut p = self.pipe.borrow_mut();
        if self.write {
            p.writers -= 1;
        } else {
            p.readers -= 1;
        }
    }
}

/// A directory entry as getdents64 reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent {
    /// Inode number.
    pub ino: u64,
    /// DT_* type.
    pub kind: u8,
    /// Name.
    pub name: Vec<u8>,
}

/// What an open file is.
#[derive(Debug)]
pub enum FileKind {
    /// A read-only file of the rootfs, opened by the gofer.
    Host(Rc<OwnedFd>),
    /// A regular file of the writable upper layer.
    Upper(Rc<RefCell<Vec<u8>>>),
    /// A directory: its entries, read when opened.
    Dir(Vec<Dirent>),
    /// A pipe end.
    Pipe(PipeEnd),
    /// A host descriptor the sandbox was given for I/O: the container's stdio, or an exec's.
    Stdio(Rc<OwnedFd>),
    /// /dev/null.
    Null,
    /// /dev/zero.
    Zero,
    /// /dev/full.
    Full,
    /// /dev/random and /dev/urandom.
    Random,
    /// A generated file (/proc): its content, fixed at open.
    Synthetic(Vec<u8>),
    /// A path-only descriptor (O_PATH) or a symlink opened with O_NOFOLLOW|O_PATH.
    PathOnly,
}

/// An open file description, shared by dup and fork.
#[derive(Debug)]
pub struct OpenFile {
    /// What it is.
    pub kind: FileKind,
    /// The absolute path it was opened by (for fstat, /proc/self/fd, fchdir).
    pub path: String,
    /// The read/write offset.
    pub offset: u64,
    /// O_ACCMODE, O_APPEND, O_NONBLOCK.
    pub flags: i32,
    /// Stat data of the node (st_mode, st_ino, size for non-upper files).
    pub stat: crate::sentry::vfs::Stat,
}

/// A shared open file description.
pub type FileRef = Rc<RefCell<OpenFile>>;

/// One slot of the fd table.
#[derive(Clone, Debug)]
pub struct FdEntry {
    /// The open file description.
    pub file: FileRef,
    /// FD_CLOEXEC.
    pub cloexec: bool,
}

/// A process's descriptors.
#[derive(Clone, Debug, Default)]
pub struct FdTable {
    fds: BTreeMap<i32, FdEntry>,
}

impl FdTable {
    /// The entry at `fd`, or EBADF.
    pub fn get(&self, fd: i32) -> Result<&FdEntry, Errno> {
        self.fds.get(&fd).ok_or(Errno::EBADF)
    }

    /// The entry at `fd` for changing its flags, or EBADF.
    pub fn get_mut(&mut self, fd: i32) -> Result<&mut FdEntry, Errno> {
        self.fds.get_mut(&fd).ok_or(Errno::EBADF)
    }

    /// The open file at `fd`, or EBADF.
    pub fn file(&self, fd: i32) -> Result<FileRef, Errno> {
        Ok(self.get(fd)?.file.clone())
    }

    /// Puts `file` at the lowest free fd ≥ `min`; EMFILE if none.
    pub fn install(&mut self, file: FileRef, cloexec: bool, min: i32) -> Result<i32, Errno> {
        let mut fd = min.max(0);
        for &used in self.fds.range(fd..).map(|(k, _)| k) {
            if used != fd {
                break;
            }
            fd += 1;
        }
        if fd >= MAX_FDS {
            return Err(Errno::EMFILE);
        }
        self.fds.insert(fd, FdEntry { file, cloexec });
        Ok(fd)
    }

    /// Puts `file` at exactly `fd`, closing what was there.
    pub fn install_at(&mut self, fd: i32, file: FileRef, cloexec: bool) -> Result<(), Errno> {
        if !(0..MAX_FDS).contains(&fd) {
            return Err(Errno::EBADF);
        }
        self.fds.insert(fd, FdEntry { file, cloexec });
        Ok(())
    }

    /// Closes `fd`; EBADF if it is not open.
    pub fn close(&mut self, fd: i32) -> Result<(), Errno> {
        self.fds.remove(&fd).map(drop).ok_or(Errno::EBADF)
    }

    /// Closes every FD_CLOEXEC descriptor (at execve).
    pub fn close_on_exec(&mut self) {
        self.fds.retain(|_, e| !e.cloexec);
    }

    /// Closes all descriptors in `[lo, hi]`.
    pub fn close_range(&mut self, lo: i32, hi: i32) {
        self.fds.retain(|&fd, _| fd < lo || fd > hi);
    }

    /// The open fds, ascending (for /proc/self/fd).
    pub fn fds(&self) -> impl Iterator<Item = (i32, &FdEntry)> {
        self.fds.iter().map(|(&k, v)| (k, v))
    }
}

/// Reads the host file behind `fd` at `offset` into `buf`.
pub fn pread_host(fd: &OwnedFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    nix::sys::uio::pread(fd, buf, offset as i64)
}
