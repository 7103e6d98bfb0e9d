//! `hull-checker facts`: everything the process can see about itself.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::json::Json;
use crate::{mountinfo, sys};

const NAMESPACES: [&str; 8] = ["pid", "net", "ipc", "uts", "mnt", "user", "cgroup", "time"];

const RLIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

/// Collects all facts into one JSON object.
pub fn collect() -> Json {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let st = |key: &str| Json::from(status_field(&status, key).map(Json::str));
    let names = sys::uname().ok();
    let ids = sys::ids();
    let mut pairs: Vec<(&str, Json)> = vec![
        (
            "hostname",
            Json::from(names.as_ref().map(|n| Json::str(&n.nodename))),
        ),
        (
            "domainname",
            Json::from(names.as_ref().map(|n| Json::str(&n.domainname))),
        ),
        ("uid", Json::UInt(ids.uid.into())),
        ("gid", Json::UInt(ids.gid.into())),
        ("euid", Json::UInt(ids.euid.into())),
        ("egid", Json::UInt(ids.egid.into())),
        ("groups", groups()),
        ("cap_inh", st("CapInh")),
        ("cap_prm", st("CapPrm")),
        ("cap_eff", st("CapEff")),
        ("cap_bnd", st("CapBnd")),
        ("cap_amb", st("CapAmb")),
        ("no_new_privs", status_int(&status, "NoNewPrivs")),
        ("umask", st("Umask")),
        ("seccomp", status_int(&status, "Seccomp")),
        ("cwd", cwd()),
    ];
    pairs.extend([
        ("ns", namespaces()),
        ("rlimits", rlimits()),
        ("mounts", mounts()),
        ("fds", fds()),
        ("oom_score_adj", oom_score_adj()),
        ("pid", Json::UInt(std::process::id().into())),
        ("ppid", Json::Int(sys::getppid().into())),
        ("env", env()),
    ]);
    Json::obj(pairs)
}

/// Returns the value of `Key:\tvalue` in a /proc/<pid>/status text.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

fn status_int(status: &str, key: &str) -> Json {
    status_field(status, key)
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(Json::Null, Json::Int)
}

fn groups() -> Json {
    match sys::getgroups() {
        Ok(g) => Json::Arr(g.into_iter().map(|g| Json::UInt(g.into())).collect()),
        Err(_) => Json::Null,
    }
}

fn cwd() -> Json {
    std::env::current_dir()
        .map(|p| Json::str(p.to_string_lossy()))
        .unwrap_or(Json::Null)
}

fn namespaces() -> Json {
    Json::obj(NAMESPACES.iter().map(|ns| {
        let ino = fs::metadata(format!("/proc/self/ns/{ns}")).map(|m| m.ino());
        (*ns, ino.map_or(Json::Null, Json::UInt))
    }))
}

fn rlimits() -> Json {
    Json::obj(RLIMITS.iter().map(|(name, res)| {
        let v = sys::getrlimit(*res)
            .map(|(soft, hard)| Json::Arr(vec![Json::UInt(soft), Json::UInt(hard)]));
        (*name, v.unwrap_or(Json::Null))
    }))
}

fn mounts() -> Json {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let list = mountinfo::parse(&text).into_iter().map(|m| {
        Json::obj([
            ("target", Json::str(m.target)),
            ("root", Json::str(m.root)),
            ("fstype", Json::str(m.fstype)),
            ("source", Json::str(m.source)),
            ("options", Json::str(m.options)),
        ])
    });
    Json::Arr(list.collect())
}

/// Lists /proc/self/fd. The directory's own descriptor is closed once the
/// listing is done, so any entry no longer open afterwards was that one.
fn fds() -> Json {
    let listed: Vec<i32> = match fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return Json::Null,
    };
    let mut open: Vec<i32> = listed
        .into_iter()
        .filter(|fd| sys::fd_is_open(*fd))
        .collect();
    open.sort_unstable();
    Json::Arr(open.into_iter().map(|fd| Json::Int(fd.into())).collect())
}

fn oom_score_adj() -> Json {
    fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map_or(Json::Null, Json::Int)
}

fn env() -> Json {
    let vars = std::env::vars_os()
        .map(|(k, v)| Json::str(format!("{}={}", k.to_string_lossy(), v.to_string_lossy())));
    Json::Arr(vars.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_status_fields() {
        let status = "Name:\tx\nUmask:\t0022\nCapEff:\t000001ffffffffff\nNoNewPrivs:\t1\n";
        assert_eq!(status_field(status, "Umask"), Some("0022"));
        assert_eq!(status_field(status, "CapEff"), Some("000001ffffffffff"));
        assert_eq!(status_field(status, "Cap"), None);
        assert_eq!(status_int(status, "NoNewPrivs"), Json::Int(1));
    }

    #[test]
    fn listed_fds_are_all_open() {
        let Json::Arr(fds) = fds() else {
            panic!("fds is not an array")
        };
        let fds: Vec<i64> = fds
            .into_iter()
            .map(|v| match v {
                Json::Int(n) => n,
                other => panic!("not an int: {other:?}"),
            })
            .collect();
        assert!(fds.iter().all(|fd| sys::fd_is_open(*fd as i32)));
    }
}
