//! What a pod or a container can leave on the host, found by looking at the host itself
//! (directories, /proc/self/mountinfo, processes, links, host-local's files, cgroupfs,
//! iptables), and the forced clean-up of an [`Env`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{hull_bin, run_out, Env};

fn entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| Some(format!("{}", e.ok()?.path().display())))
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points under `dir`, with their filesystem type, in mount order.
pub fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let point = l.split(' ').nth(4)?;
            let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
            point
                .starts_with(&prefix)
                .then(|| (point.to_string(), fstype.to_string()))
        })
        .collect()
}

/// A live (not zombie) process: pid, comm, command line with spaces for NULs.
pub struct Proc {
    pub pid: i32,
    pub comm: String,
    pub cmdline: String,
    pub cgroup: String,
}

pub fn processes() -> Vec<Proc> {
    let Ok(d) = fs::read_dir("/proc") else {
        return vec![];
    };
    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The state follows the parenthesised comm; zombies hold nothing but a pid.
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            if state == 'Z' || state == 'X' {
                return None;
            }
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            Some(Proc {
                pid,
                comm: comm.trim().to_string(),
                cmdline: String::from_utf8_lossy(&cmd).replace('\0', " "),
                cgroup,
            })
        })
        .collect()
}

/// Cgroup directories under the test's cgroup parent, in every mounted hierarchy.
pub fn cgroups_under(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let base = h.path().join(parent.trim_start_matches('/'));
        collect_dirs(&base, &mut out);
    }
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            collect_dirs(&e.path(), out);
            out.push(e.path());
        }
    }
}

impl Env {
    /// Everything a container of this daemon leaves while it exists.
    pub fn ctr_leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = entries(&self.root().join("containers"))
            .into_iter()
            .map(|e| format!("container dir {e}"))
            .collect();
        out.extend(
            mounts_under(self.dir.path())
                .into_iter()
                .filter(|(_, t)| t == "overlay")
                .map(|(p, _)| format!("overlay mount {p}")),
        );
        out.extend(
            cgroups_under(&self.cgroup_parent())
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("hull-cri-"))
                })
                .map(|p| format!("cgroup {}", p.display())),
        );
        out.extend(
            entries(&self.run_dir().join("runtime/hull"))
                .into_iter()
                .map(|e| format!("runtime state {e}")),
        );
        let dir = self.dir.path().display().to_string();
        let ours = format!("{}/", self.cgroup_parent());
        for p in processes() {
            if p.comm.starts_with("hull-cri-monit") && p.cmdline.contains(&dir) {
                out.push(format!("monitor process {} {}", p.pid, p.cmdline));
            } else if p.cgroup.contains(&ours) {
                out.push(format!("container process {} {}", p.pid, p.cmdline));
            } else if p.comm == "hull" && p.cmdline.contains(&dir) {
                out.push(format!("runtime process {} {}", p.pid, p.cmdline));
            }
        }
        out
    }

    /// Everything a pod of this daemon leaves while it exists (containers included).
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = self.ctr_leftovers();
        for d in [self.root().join("pods"), self.run_dir().join("pods")] {
            out.extend(entries(&d).into_iter().map(|e| format!("pod dir {e}")));
        }
        out.extend(
            mounts_under(self.dir.path())
                .into_iter()
                .filter(|(_, t)| t != "overlay")
                .map(|(p, t)| format!("{t} mount {p}")),
        );
        let dir = self.dir.path().display().to_string();
        out.extend(
            processes()
                .into_iter()
                .filter(|p| p.comm == "hull-pod-init" && p.cmdline.contains(&dir))
                .map(|p| format!("holder process {} {}", p.pid, p.cmdline)),
        );
        let veths = run_out(&["ip", "-o", "link", "show", "master", &self.bridge()]);
        out.extend(veths.lines().map(|l| format!("veth {l}")));
        out.extend(
            self.ip_files()
                .into_iter()
                .map(|f| format!("host-local allocation {f}")),
        );
        out.extend(
            entries(&self.root().join("cni"))
                .into_iter()
                .map(|e| format!("CNI cache {e}")),
        );
        // The bridge plugin's masquerade rules carry the network's name in a comment.
        let net = format!("\\\"{}\\\"", self.net_name());
        out.extend(
            run_out(&["iptables-save", "-t", "nat"])
                .lines()
                .filter(|l| l.contains(&net))
                .map(|l| format!("iptables rule {l}")),
        );
        out
    }

    /// Addresses host-local holds for the test network.
    pub fn ip_files(&self) -> Vec<String> {
        entries(&Path::new("/var/lib/cni/networks").join(self.net_name()))
            .into_iter()
            .filter(|f| f.contains(&format!("/{}", self.subnet_prefix())))
            .collect()
    }

    /// Asserts nothing of a pod or container is left.
    #[track_caller]
    pub fn assert_clean(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind:\n  {}", left.join("\n  "));
    }

    /// Removes pod `pod_id` through the daemon and asserts nothing of it is left.
    pub async fn remove_pod_and_assert_clean(&mut self, pod_id: String) {
        self.rt
            .remove_pod_sandbox(hull_cri::api::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id,
            })
            .await
            .unwrap();
        self.assert_clean();
    }

    /// Asserts nothing of a container is left.
    #[track_caller]
    pub fn assert_no_ctr(&self) {
        let left = self.ctr_leftovers();
        assert!(left.is_empty(), "left behind:\n  {}", left.join("\n  "));
    }
}

/// Removes by force whatever the daemon did not: processes, runtime state, mounts,
/// cgroups, the bridge, host-local's files and masquerade rules.
pub fn force_clean(env: &Env) {
    let dir = env.dir.path().display().to_string();
    let ours = format!("{}/", env.cgroup_parent());
    for p in processes() {
        let mine = p.cgroup.contains(&ours)
            || (p.cmdline.contains(&dir)
                && (p.comm == "hull-pod-init" || p.comm.starts_with("hull")));
        if mine {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let state = env.run_dir().join("runtime/hull");
    for e in fs::read_dir(&state).into_iter().flatten().flatten() {
        let _ = Command::new(hull_bin())
            .arg("--root")
            .arg(&state)
            .args(["delete", "--force"])
            .arg(e.file_name())
            .output();
    }
    for (point, _) in mounts_under(env.dir.path()).into_iter().rev() {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    // Deepest first; a cgroup whose last process is dying may need a moment.
    for _ in 0..20 {
        let left = cgroups_under(&env.cgroup_parent());
        for p in &left {
            let _ = fs::remove_dir(p);
        }
        for h in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(h.path().join(env.cgroup_parent().trim_start_matches('/')));
        }
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = Command::new("ip")
        .args(["link", "del", &env.bridge()])
        .output();
    let _ = fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(env.net_name()));
    remove_masquerade(&env.net_name());
}

/// Deletes the nat rules and chains the bridge plugin made for `net` (only after a daemon
/// failed to tear its pods down).
fn remove_masquerade(net: &str) {
    let tag = format!("\\\"{net}\\\"");
    let rules = run_out(&["iptables-save", "-t", "nat"]);
    let mut chains = Vec::new();
    for l in rules.lines().filter(|l| l.contains(&tag)) {
        let Some(rest) = l.strip_prefix("-A ") else {
            continue;
        };
        let mut args: Vec<String> = vec!["-t".into(), "nat".into(), "-D".into()];
        args.extend(shell_words(rest));
        let _ = Command::new("iptables").args(&args).output();
        if let Some(target) = rest.split(" -j ").nth(1) {
            let target = target.split(' ').next().unwrap_or_default();
            if target.starts_with("CNI-") {
                chains.push(target.to_string());
            }
        }
    }
    for c in chains {
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-F", &c])
            .output();
        let _ = Command::new("iptables")
            .args(["-t", "nat", "-X", &c])
            .output();
    }
}

/// Splits an iptables-save rule into arguments (double quotes with `\"` escapes).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => cur.extend(chars.next()),
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
