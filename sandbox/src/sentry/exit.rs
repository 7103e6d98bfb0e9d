//! Creating and ending processes and threads in the Sentry's tables.

use std::cell::RefCell;
use std::rc::Rc;

use super::signal::{SigInfo, NSIG, SA_NOCLDWAIT, SIG_IGN};
use super::task::{AltStack, Brk, Exit, Pid, Process, Task};
use super::{InitSpec, Kernel};
use crate::platform::Tracee;

impl Kernel {
    /// Registers a new task `tid` of process `tgid` running on `tracee`.
    pub(super) fn add_task(&mut self, tid: Pid, tgid: Pid, tracee: Tracee, mask: u64) {
        self.host.insert(tracee.pid.as_raw(), tid);
        self.tasks.insert(
            tid,
            Task {
                tid,
                tgid,
                tracee,
                mask,
                pending: Default::default(),
                clear_tid: 0,
                blocked: None,
                futex_woken: false,
                saved_mask: None,
                altstack: AltStack {
                    disabled: true,
                    ..Default::default()
                },
                running: false,
                interrupted: false,
            },
        );
    }

    /// Creates init's process record.
    pub(super) fn new_process(&mut self, tracee: Tracee, ppid: Pid, spec: &InitSpec) -> Pid {
        let pid = self.alloc_pid();
        let mm = self.alloc_mm();
        let fds = super::syscalls::fs::stdio_table();
        self.procs.insert(
            pid,
            Process {
                pid,
                ppid,
                pgid: pid,
                sid: pid,
                threads: vec![pid],
                fds,
                cwd: if spec.cwd.is_empty() {
                    "/".into()
                } else {
                    spec.cwd.clone()
                },
                umask: 0o022,
                actions: Rc::new(RefCell::new([Default::default(); NSIG])),
                zombie: None,
                brk: Brk::default(),
                mm,
                exe: String::new(),
                name: String::new(),
                argv: Vec::new(),
                vfork_parent: None,
                uid: spec.uid,
                gid: spec.gid,
                children: Vec::new(),
            },
        );
        self.add_task(pid, pid, tracee, 0);
        pid
    }

    /// Ends one thread; the last one ends its process with `code`.
    pub(super) fn exit_thread(&mut self, tid: Pid, code: i32) {
        let Some(t) = self.tasks.get(&tid) else {
            return;
        };
        let tgid = t.tgid;
        let live = self.procs.get(&tgid).map_or(0, |p| p.threads.len());
        if live <= 1 {
            self.exit_process(tgid, Exit::Code(code));
            return;
        }
        let clear = t.clear_tid;
        let mm = self.procs[&tgid].mm;
        if clear != 0 {
            let _ = crate::platform::mem::write(t.tracee.pid, clear, &0u32.to_le_bytes());
            self.futex_wake(mm, clear, 1, u32::MAX);
        }
        self.remove_task(tid);
        if let Some(p) = self.procs.get_mut(&tgid) {
            p.threads.retain(|&x| x != tid);
        }
    }

    fn remove_task(&mut self, tid: Pid) {
        if let Some(t) = self.tasks.remove(&tid) {
            t.tracee.kill();
            self.host.remove(&t.tracee.pid.as_raw());
        }
        self.futex.retain(|w| w.tid != tid);
    }

    /// Ends process `pid`: kills its threads, closes its files, makes it a zombie for its
    /// parent (or reaps it), hands its children to init and wakes waiters.
    pub(super) fn exit_process(&mut self, pid: Pid, how: Exit) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.zombie.is_some() {
            return;
        }
        let threads = std::mem::take(&mut p.threads);
        p.fds = Default::default();
        p.zombie = Some(how);
        let children = std::mem::take(&mut p.children);
        let ppid = p.ppid;
        let vfork_parent = p.vfork_parent.take();
        for tid in threads {
            self.remove_task(tid);
        }
        let _ = vfork_parent;
        self.report_exec_exit(pid, how);
        if pid == 1 {
            self.init_exit = Some(how);
            return;
        }
        for c in children {
            if let Some(cp) = self.procs.get_mut(&c) {
                cp.ppid = 1;
            }
            if let Some(init) = self.procs.get_mut(&1) {
                init.children.push(c);
            }
        }
        let Some(parent) = self.procs.get(&ppid) else {
            self.procs.remove(&pid);
            return;
        };
        let act = parent.actions.borrow()[libc::SIGCHLD as usize];
        if act.handler == SIG_IGN || act.flags & SA_NOCLDWAIT != 0 {
            self.reap(pid);
            return;
        }
        let (code, status) = match how {
            Exit::Code(c) => (1, c),
            Exit::Signal(s) => (2, s),
        };
        let info = SigInfo {
            signo: libc::SIGCHLD,
            code,
            pid,
            status,
            ..Default::default()
        };
        self.send_signal(ppid, info);
    }

    /// Removes zombie `pid` from the tables.
    pub(super) fn reap(&mut self, pid: Pid) {
        if let Some(p) = self.procs.remove(&pid) {
            if let Some(parent) = self.procs.get_mut(&p.ppid) {
                parent.children.retain(|&c| c != pid);
            }
        }
    }
}
