//! Synthesized files: /dev (null, zero, full, random, urandom, the stdio links) and /proc
//! (self, the pid directories, meminfo, uptime, version, mounts). Nothing here reads the
//! host's /proc: it shows the sandbox's own processes.

use super::file::{Dirent, FileKind};
use super::vfs::{Node, Stat};

/// What /proc shows, captured by the kernel when a path under /proc is looked up.
#[derive(Clone, Debug, Default)]
pub struct ProcView {
    /// The calling process's pid.
    pub self_pid: i32,
    /// Every live process.
    pub procs: Vec<ProcInfo>,
    /// Seconds since the sandbox booted.
    pub uptime: f64,
}

/// One process as /proc shows it.
#[derive(Clone, Debug, Default)]
pub struct ProcInfo {
    /// pid.
    pub pid: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgid: i32,
    /// Session.
    pub sid: i32,
    /// Argument vector.
    pub argv: Vec<Vec<u8>>,
    /// Executable's base name.
    pub comm: String,
    /// Executable path.
    pub exe: String,
    /// Open fds and what they point at.
    pub fds: Vec<(i32, String)>,
    /// Current directory.
    pub cwd: String,
    /// R, S or Z.
    pub state: char,
    /// Threads.
    pub threads: usize,
}

/// The sandbox's kernel identity, as uname(2) and /proc/version report it.
pub const SYSNAME: &str = "Linux";
/// Release reported by uname.
pub const RELEASE: &str = "6.1.0-hull-sandbox";
/// Version reported by uname.
pub const VERSION: &str = "#1 SMP hull-sandbox Sentry";

const DEV_DEV: u64 = 0x5;
const PROC_DEV: u64 = 0x4;

fn chr(rdev: u64, ino: u64) -> Stat {
    Stat {
        dev: DEV_DEV,
        ino,
        mode: libc::S_IFCHR | 0o666,
        nlink: 1,
        rdev,
        ..Stat::default()
    }
}

fn dir_stat(dev: u64, ino: u64) -> Stat {
    Stat {
        dev,
        ino,
        mode: libc::S_IFDIR | 0o555,
        nlink: 2,
        ..Stat::default()
    }
}

fn reg(ino: u64, data: Vec<u8>) -> Node {
    let st = Stat {
        dev: PROC_DEV,
        ino,
        mode: libc::S_IFREG | 0o444,
        nlink: 1,
        size: 0,
        ..Stat::default()
    };
    Node::Synth(FileKind::Synthetic(data), st)
}

fn dir(dev: u64, ino: u64, names: &[(&str, u8)]) -> Node {
    let entries = names
        .iter()
        .enumerate()
        .map(|(i, (n, k))| Dirent {
            ino: ino * 100 + i as u64,
            kind: *k,
            name: n.as_bytes().to_vec(),
        })
        .collect();
    Node::Synth(FileKind::Dir(entries), dir_stat(dev, ino))
}

/// The synthesized node at `path`: `None` outside /dev and /proc (and for /dev entries the
/// rootfs may provide), ENOENT for anything else under /proc.
pub fn lookup(path: &str, view: &ProcView) -> Option<Result<Node, nix::errno::Errno>> {
    if path == "/dev" || path.starts_with("/dev/") {
        return dev(path).map(Ok);
    }
    if path == "/proc" || path.starts_with("/proc/") {
        return Some(proc(&path[5..], view).ok_or(nix::errno::Errno::ENOENT));
    }
    None
}

fn dev(path: &str) -> Option<Node> {
    let (kind, rdev, ino) = match path {
        "/dev" => {
            return Some(dir(
                DEV_DEV,
                2,
                &[
                    ("null", libc::DT_CHR),
                    ("zero", libc::DT_CHR),
                    ("full", libc::DT_CHR),
                    ("random", libc::DT_CHR),
                    ("urandom", libc::DT_CHR),
                    ("stdin", libc::DT_LNK),
                    ("stdout", libc::DT_LNK),
                    ("stderr", libc::DT_LNK),
                    ("fd", libc::DT_LNK),
                ],
            ))
        }
        "/dev/null" => (FileKind::Null, 0x103, 3),
        "/dev/zero" => (FileKind::Zero, 0x105, 4),
        "/dev/full" => (FileKind::Full, 0x107, 5),
        "/dev/random" => (FileKind::Random, 0x108, 6),
        "/dev/urandom" => (FileKind::Random, 0x109, 7),
        "/dev/stdin" => return Some(Node::SynthLink(b"/proc/self/fd/0".to_vec())),
        "/dev/stdout" => return Some(Node::SynthLink(b"/proc/self/fd/1".to_vec())),
        "/dev/stderr" => return Some(Node::SynthLink(b"/proc/self/fd/2".to_vec())),
        "/dev/fd" => return Some(Node::SynthLink(b"/proc/self/fd".to_vec())),
        _ => return None,
    };
    Some(Node::Synth(kind, chr(rdev, ino)))
}

fn proc(rest: &str, view: &ProcView) -> Option<Node> {
    let rest = rest.trim_start_matches('/');
    match rest {
        "" => {
            let mut names: Vec<(String, u8)> = view
                .procs
                .iter()
                .map(|p| (p.pid.to_string(), libc::DT_DIR))
                .collect();
            for f in [
                "self", "meminfo", "uptime", "version", "mounts", "cpuinfo", "stat",
            ] {
                let k = if f == "self" {
                    libc::DT_LNK
                } else {
                    libc::DT_REG
                };
                names.push((f.to_string(), k));
            }
            let refs: Vec<(&str, u8)> = names.iter().map(|(n, k)| (n.as_str(), *k)).collect();
            return Some(dir(PROC_DEV, 1, &refs));
        }
        "self" => return Some(Node::SynthLink(view.self_pid.to_string().into_bytes())),
        "meminfo" => return Some(reg(10, meminfo())),
        "uptime" => {
            let u = format!("{:.2} {:.2}\n", view.uptime, view.uptime);
            return Some(reg(11, u.into_bytes()));
        }
        "version" => {
            let v = format!("{SYSNAME} version {RELEASE} (hull-sandbox) {VERSION}\n");
            return Some(reg(12, v.into_bytes()));
        }
        "mounts" => {
            return Some(reg(
                13,
                b"none / hullfs rw 0 0\nproc /proc proc rw 0 0\n".to_vec(),
            ))
        }
        "cpuinfo" => {
            return Some(reg(
                14,
                b"processor\t: 0\nvendor_id\t: hull-sandbox\n\n".to_vec(),
            ))
        }
        "stat" => return Some(reg(15, b"cpu  0 0 0 0 0 0 0 0 0 0\nbtime 0\n".to_vec())),
        _ => {}
    }
    let (pid_s, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let pid: i32 = if pid_s == "self" {
        view.self_pid
    } else {
        pid_s.parse().ok()?
    };
    let p = view.procs.iter().find(|p| p.pid == pid)?;
    pid_node(p, sub)
}

fn pid_node(p: &ProcInfo, sub: &str) -> Option<Node> {
    let ino = 1000 + p.pid as u64 * 16;
    Some(match sub {
        "" => dir(
            PROC_DEV,
            ino,
            &[
                ("cmdline", libc::DT_REG),
                ("comm", libc::DT_REG),
                ("stat", libc::DT_REG),
                ("status", libc::DT_REG),
                ("exe", libc::DT_LNK),
                ("cwd", libc::DT_LNK),
                ("fd", libc::DT_DIR),
            ],
        ),
        "cmdline" => {
            let mut d = Vec::new();
            for a in &p.argv {
                d.extend_from_slice(a);
                d.push(0);
            }
            reg(ino + 1, d)
        }
        "comm" => reg(ino + 2, format!("{}\n", p.comm).into_bytes()),
        "stat" => reg(
            ino + 3,
            format!(
                // The 52 fields of proc(5); times, faults and memory are not kept (0).
                "{} ({}) {} {} {} {} 0 -1 0 0 0 0 0 0 0 0 0 20 0 {} 0 0 0 0 {}\n",
                p.pid,
                p.comm,
                p.state,
                p.ppid,
                p.pgid,
                p.sid,
                p.threads,
                ["0"; 28].join(" ")
            )
            .into_bytes(),
        ),
        "status" => reg(
            ino + 4,
            format!(
                "Name:\t{}\nState:\t{}\nTgid:\t{}\nPid:\t{}\nPPid:\t{}\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nThreads:\t{}\n",
                p.comm, p.state, p.pid, p.pid, p.ppid, p.threads
            )
            .into_bytes(),
        ),
        "exe" => Node::SynthLink(p.exe.clone().into_bytes()),
        "cwd" => Node::SynthLink(p.cwd.clone().into_bytes()),
        "fd" => {
            let names: Vec<String> = p.fds.iter().map(|(fd, _)| fd.to_string()).collect();
            let refs: Vec<(&str, u8)> = names.iter().map(|n| (n.as_str(), libc::DT_LNK)).collect();
            dir(PROC_DEV, ino + 5, &refs)
        }
        s => {
            let fd: i32 = s.strip_prefix("fd/")?.parse().ok()?;
            let (_, target) = p.fds.iter().find(|(f, _)| *f == fd)?;
            Node::SynthLink(target.clone().into_bytes())
        }
    })
}

fn meminfo() -> Vec<u8> {
    let total = 2 * 1024 * 1024;
    format!("MemTotal:       {total} kB\nMemFree:        {total} kB\nMemAvailable:   {total} kB\n")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_null_is_a_char_device() {
        match lookup("/dev/null", &ProcView::default()) {
            Some(Ok(Node::Synth(FileKind::Null, st))) => assert_eq!(st.kind(), libc::S_IFCHR),
            _ => panic!("no /dev/null"),
        }
        assert!(lookup("/dev/sda", &ProcView::default()).is_none());
    }

    #[test]
    fn proc_self_points_at_the_caller() {
        let v = ProcView {
            self_pid: 7,
            ..ProcView::default()
        };
        match lookup("/proc/self", &v) {
            Some(Ok(Node::SynthLink(t))) => assert_eq!(t, b"7"),
            _ => panic!("no /proc/self"),
        }
        assert!(matches!(lookup("/proc/8/cmdline", &v), Some(Err(_))));
    }
}
