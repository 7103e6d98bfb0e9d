//! OOM notifications of a container's cgroup, for `events`.

use std::path::{Path, PathBuf};

use super::CgroupError;
use crate::state::CgroupRecord;

/// A source of OOM notifications for a container's cgroup: a cgroup v1 eventfd bound to
/// memory.oom_control, or an inotify watch on cgroup v2's memory.events.
pub struct OomWatch {
    fd: std::os::fd::OwnedFd,
    /// v1: the memory.oom_control fd, which must stay open for the eventfd to fire.
    _control: Option<std::fs::File>,
    /// v2: memory.events and the last oom_kill count seen.
    events: Option<(PathBuf, std::cell::Cell<u64>)>,
}

fn oom_kills(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill ").map(str::to_owned))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

impl OomWatch {
    /// Opens a watch; `None` when the memory controller is not available.
    pub fn open(record: &CgroupRecord) -> Result<Option<Self>, CgroupError> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        use std::os::fd::AsRawFd;
        let rel = record.path.strip_prefix("/").unwrap_or(&record.path);
        let v1 = Path::new("/sys/fs/cgroup/memory").join(rel);
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source: std::io::Error| CgroupError::Join { path, source }
        };
        if v1.join("memory.oom_control").exists() {
            let control = std::fs::File::open(v1.join("memory.oom_control")).map_err(err(&v1))?;
            let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).map_err(|e| err(&v1)(e.into()))?;
            let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
            std::fs::write(v1.join("cgroup.event_control"), line).map_err(err(&v1))?;
            return Ok(Some(Self {
                fd: efd.into(),
                _control: Some(control),
                events: None,
            }));
        }
        let events = Path::new("/sys/fs/cgroup").join(rel).join("memory.events");
        if !events.exists() {
            return Ok(None);
        }
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| err(&events)(e.into()))?;
        ino.add_watch(&events, AddWatchFlags::IN_MODIFY)
            .map_err(|e| err(&events)(e.into()))?;
        let last = std::cell::Cell::new(oom_kills(&events));
        // A duplicate keeps the inotify instance (and its watch) alive after `ino` drops.
        let fd = std::os::fd::AsFd::as_fd(&ino)
            .try_clone_to_owned()
            .map_err(err(&events))?;
        Ok(Some(Self {
            fd,
            _control: None,
            events: Some((events, last)),
        }))
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Drains the notification; true when it reports a new OOM kill.
    pub fn consume(&self) -> bool {
        let mut buf = [0u8; 4096];
        let _ = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut buf);
        match &self.events {
            None => true,
            Some((path, last)) => {
                let now = oom_kills(path);
                let new = now > last.get();
                last.set(now);
                new
            }
        }
    }
}
