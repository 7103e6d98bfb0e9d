//! Unit tests of `stats` against fake cgroup v1 and v2 trees in temp dirs (no root).

use super::*;

/// This host's cgroup lines (hybrid: separate cpu and cpuacct, controller-less cgroup2).
const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A fake v1 tree (cpu and cpuacct co-mounted) and its mountinfo.
fn fake_v1(root: &Path) -> CgroupLayout {
    let mi = format!(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
         2 1 0:2 / {r}/cpu,cpuacct rw shared:5 - cgroup cgroup rw,cpu,cpuacct\n\
         3 1 0:3 / {r}/memory rw - cgroup cgroup rw,memory\n\
         4 1 0:4 / {r}/pids rw - cgroup cgroup rw,pids\n",
        r = root.display()
    );
    CgroupLayout::from_mountinfo(&mi).unwrap()
}

fn populate_v1(root: &Path, cg: &str, limit: &str) {
    let d = |c: &str, f: &str| root.join(c).join(cg).join(f);
    write(&d("cpu,cpuacct", "cpuacct.usage"), "123456789\n");
    write(&d("memory", "memory.usage_in_bytes"), "10000\n");
    write(
        &d("memory", "memory.stat"),
        "cache 1\nrss 2\ninactive_file 9999\ntotal_rss 5000\ntotal_inactive_file 3000\n\
         total_pgfault 77\ntotal_pgmajfault 3\n",
    );
    write(&d("memory", "memory.limit_in_bytes"), limit);
    write(
        &d("memory", "memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    write(&d("pids", "pids.current"), "3\n");
    write(&d("pids", "pids.max"), "max\n");
}

fn fake_v2(root: &Path) -> CgroupLayout {
    let mi = format!(
        "30 23 0:26 / {}/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        root.display()
    );
    CgroupLayout::from_mountinfo(&mi).unwrap()
}

fn populate_v2(dir: &Path, memory: bool) {
    write(
        &dir.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
    );
    write(&dir.join("pids.current"), "4\n");
    write(&dir.join("pids.max"), "100\n");
    if memory {
        write(&dir.join("memory.current"), "8192\n");
        write(
            &dir.join("memory.stat"),
            "anon 4096\nfile 4096\ninactive_file 1024\npgfault 10\npgmajfault 1\n",
        );
        write(&dir.join("memory.max"), "max\n");
        write(
            &dir.join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
    }
}

#[test]
fn detects_this_hosts_hybrid_layout() {
    let layout = CgroupLayout::from_mountinfo(HYBRID).unwrap();
    let m = |s: &str| Some(PathBuf::from(s));
    assert_eq!(
        layout,
        CgroupLayout::V1(V1Mounts {
            cpu: m("/sys/fs/cgroup/cpu"),
            cpuacct: m("/sys/fs/cgroup/cpuacct"),
            memory: m("/sys/fs/cgroup/memory"),
            pids: m("/sys/fs/cgroup/pids"),
        })
    );
    let dirs = layout.dirs(Path::new("/kubepods/pod1/hull-c")).unwrap();
    assert_eq!(dirs.len(), 4);
    assert_eq!(
        dirs[2],
        Path::new("/sys/fs/cgroup/memory/kubepods/pod1/hull-c")
    );
}

#[test]
fn co_mounted_controllers_share_a_directory() {
    let layout = fake_v1(Path::new("/x"));
    let CgroupLayout::V1(m) = &layout else {
        panic!("{layout:?}")
    };
    assert_eq!(m.cpu, m.cpuacct);
    assert_eq!(m.cpu.as_deref(), Some(Path::new("/x/cpu,cpuacct")));
    assert_eq!(layout.dirs(Path::new("a")).unwrap().len(), 3);
}

#[test]
fn detects_pure_v2_and_rejects_no_cgroups() {
    let mi = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
              40 23 0:37 / /run/named rw - cgroup cgroup rw,name=systemd\n";
    assert_eq!(
        CgroupLayout::from_mountinfo(mi).unwrap(),
        CgroupLayout::V2 {
            mount: "/sys/fs/cgroup".into()
        }
    );
    let none = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\ngarbage line\n";
    assert!(matches!(
        CgroupLayout::from_mountinfo(none),
        Err(StatsError::NoCgroupFs)
    ));
}

#[test]
fn mount_points_are_unescaped() {
    let mi = "2 1 0:2 / /tmp/a\\040b\\134c rw - cgroup2 cgroup2 rw\n";
    assert_eq!(
        CgroupLayout::from_mountinfo(mi).unwrap(),
        CgroupLayout::V2 {
            mount: "/tmp/a b\\c".into()
        }
    );
    assert_eq!(unescape("\\04x\\"), PathBuf::from("\\04x\\"));
}

#[test]
fn reads_v1_stats() {
    let t = tempfile::tempdir().unwrap();
    populate_v1(t.path(), "kubepods/pod1/c1", "50000\n");
    let before = now_ns();
    let s = fake_v1(t.path())
        .read(Path::new("/kubepods/pod1/c1"))
        .unwrap();
    assert!(s.timestamp_ns >= before && s.timestamp_ns <= now_ns());
    let want = CgroupStats {
        timestamp_ns: s.timestamp_ns,
        cpu_usage_core_nanos: Some(123_456_789),
        cpu_usage_nano_cores: None,
        memory_usage_bytes: Some(10_000),
        memory_working_set_bytes: Some(7000),
        memory_rss_bytes: Some(5000),
        memory_limit_bytes: Some(50_000),
        page_faults: Some(77),
        major_page_faults: Some(3),
        available_bytes: Some(43_000),
        oom_kill: Some(2),
        pids_current: Some(3),
        pids_limit: None,
    };
    assert_eq!(s, want);
}

#[test]
fn v1_unlimited_memory_and_working_set_floor() {
    let t = tempfile::tempdir().unwrap();
    populate_v1(t.path(), "c", "9223372036854771712\n");
    let usage = t.path().join("memory/c/memory.usage_in_bytes");
    fs::write(&usage, "2000\n").unwrap(); // below total_inactive_file (3000)
    let s = fake_v1(t.path()).read(Path::new("c")).unwrap();
    assert_eq!(s.memory_limit_bytes, None);
    assert_eq!(s.available_bytes, None);
    assert_eq!(s.memory_working_set_bytes, Some(0));
}

#[test]
fn v1_missing_controllers_leave_fields_empty() {
    let t = tempfile::tempdir().unwrap();
    populate_v1(t.path(), "c", "50000\n");
    fs::remove_dir_all(t.path().join("memory/c")).unwrap();
    let mi = format!(
        "2 1 0:2 / {}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
         3 1 0:3 / {}/memory rw - cgroup cgroup rw,memory\n",
        t.path().display(),
        t.path().display()
    );
    let s = CgroupLayout::from_mountinfo(&mi)
        .unwrap()
        .read(Path::new("c"))
        .unwrap();
    assert_eq!(s.cpu_usage_core_nanos, Some(123_456_789));
    assert_eq!((s.memory_usage_bytes, s.oom_kill), (None, None));
    assert_eq!(s.pids_current, None, "pids not mounted");
    assert!(s.memory_usage().is_none());
    assert!(s.cpu_usage().is_some());
}

#[test]
fn missing_cgroup_is_not_found() {
    let t = tempfile::tempdir().unwrap();
    populate_v1(t.path(), "c", "50000\n");
    let err = fake_v1(t.path()).read(Path::new("/gone")).unwrap_err();
    assert!(matches!(&err, StatsError::NotFound { path } if path == Path::new("/gone")));
    assert_eq!(err.to_string(), "cgroup /gone does not exist");
    let err = fake_v2(t.path()).read(Path::new("/gone")).unwrap_err();
    assert!(matches!(err, StatsError::NotFound { .. }));
}

#[test]
fn reads_v2_stats() {
    let t = tempfile::tempdir().unwrap();
    populate_v2(&t.path().join("unified/kubepods/c"), true);
    let s = fake_v2(t.path()).read(Path::new("/kubepods/c")).unwrap();
    let want = CgroupStats {
        timestamp_ns: s.timestamp_ns,
        cpu_usage_core_nanos: Some(1_500_000),
        cpu_usage_nano_cores: None,
        memory_usage_bytes: Some(8192),
        memory_working_set_bytes: Some(7168),
        memory_rss_bytes: Some(4096),
        memory_limit_bytes: None,
        page_faults: Some(10),
        major_page_faults: Some(1),
        available_bytes: None,
        oom_kill: Some(1),
        pids_current: Some(4),
        pids_limit: Some(100),
    };
    assert_eq!(s, want);
    let dir = t.path().join("unified/kubepods/c");
    fs::write(dir.join("memory.max"), "10000\n").unwrap();
    let s = fake_v2(t.path()).read(Path::new("kubepods/c")).unwrap();
    assert_eq!(s.memory_limit_bytes, Some(10_000));
    assert_eq!(s.available_bytes, Some(10_000 - 7168));
}

#[test]
fn v2_without_memory_controller() {
    let t = tempfile::tempdir().unwrap();
    populate_v2(&t.path().join("unified/c"), false);
    let s = fake_v2(t.path()).read(Path::new("/c")).unwrap();
    assert_eq!(s.cpu_usage_core_nanos, Some(1_500_000));
    assert_eq!(s.memory_usage_bytes, None);
    assert_eq!(s.memory_working_set_bytes, None);
}

#[test]
fn bad_content_and_unreadable_files_name_the_file() {
    let t = tempfile::tempdir().unwrap();
    populate_v1(t.path(), "c", "50000\n");
    let usage = t.path().join("memory/c/memory.usage_in_bytes");
    fs::write(&usage, "lots\n").unwrap();
    let err = fake_v1(t.path()).read(Path::new("c")).unwrap_err();
    assert!(
        matches!(&err, StatsError::Parse { path, .. } if *path == usage),
        "{err}"
    );
    assert!(err.to_string().contains("memory.usage_in_bytes"));

    let dir = t.path().join("unified/c");
    populate_v2(&dir, true);
    fs::remove_file(dir.join("memory.stat")).unwrap();
    fs::create_dir(dir.join("memory.stat")).unwrap();
    let err = fake_v2(t.path()).read(Path::new("c")).unwrap_err();
    assert!(matches!(&err, StatsError::Read { path, .. } if path.ends_with("c/memory.stat")));
    fs::write(dir.join("cpu.stat"), "user_usec 1\n").unwrap();
    let err = fake_v2(t.path()).read(Path::new("c")).unwrap_err();
    assert!(matches!(&err, StatsError::Parse { path, .. } if path.ends_with("cpu.stat")));
}

#[test]
fn cgroups_paths_may_not_climb_out() {
    let layout = fake_v1(Path::new("/x"));
    for bad in ["", "../etc", "/kubepods/../../etc"] {
        assert!(
            matches!(
                layout.read(Path::new(bad)),
                Err(StatsError::InvalidPath { .. })
            ),
            "{bad:?}"
        );
        assert!(layout.dirs(Path::new(bad)).is_err());
    }
    assert_eq!(relative(Path::new("/a/./b")).unwrap(), Path::new("a/b"));
    assert_eq!(relative(Path::new("/")).unwrap(), Path::new(""));
}

fn sample(ts_ms: i64, usage: u64) -> CgroupStats {
    CgroupStats {
        timestamp_ns: ts_ms * 1_000_000,
        cpu_usage_core_nanos: Some(usage),
        ..CgroupStats::default()
    }
}

#[test]
fn cpu_sampler_derives_a_rate() {
    let mut cs = CpuSampler::new();
    let key = Path::new("/kubepods/c");
    let mut s = sample(1000, 1_000_000_000);
    cs.update(key, &mut s);
    assert_eq!(s.cpu_usage_nano_cores, None, "first sample has no rate");
    let mut s = sample(3000, 2_000_000_000); // 1 s of CPU in 2 s
    cs.update(key, &mut s);
    assert_eq!(s.cpu_usage_nano_cores, Some(500_000_000));
    let mut s = sample(3050, 2_100_000_000); // too close: previous rate, not kept
    cs.update(key, &mut s);
    assert_eq!(s.cpu_usage_nano_cores, Some(500_000_000));
    let mut s = sample(4000, 4_000_000_000); // measured from the 3000 ms sample
    cs.update(key, &mut s);
    assert_eq!(s.cpu_usage_nano_cores, Some(2_000_000_000));
    let mut other = sample(4000, 5);
    cs.update(Path::new("/other"), &mut other);
    assert_eq!(other.cpu_usage_nano_cores, None, "keys are separate");
}

#[test]
fn cpu_sampler_resets_and_forgets() {
    let mut cs = CpuSampler::new();
    let key = Path::new("/c");
    cs.update(key, &mut sample(0, 5_000));
    let mut s = sample(1000, 10); // counter went back: cgroup recreated
    cs.update(key, &mut s);
    assert_eq!(s.cpu_usage_nano_cores, None);
    let mut s = sample(2000, 1_000_000_010);
    cs.update(key, &mut s);
    assert_eq!(s.cpu_usage_nano_cores, Some(1_000_000_000));
    cs.forget(key);
    let mut s = sample(3000, 2_000_000_000);
    cs.update(key, &mut s);
    assert_eq!(s.cpu_usage_nano_cores, None);
    cs.retain(|k| k != key);
    assert!(cs.last.is_empty());
    cs.update(key, &mut sample(4000, 1));
    cs.update(key, &mut CgroupStats::default()); // no cpu controller: sample dropped
    assert!(cs.last.is_empty());
}

#[test]
fn converts_to_cri_messages() {
    let t = tempfile::tempdir().unwrap();
    populate_v1(t.path(), "pod/c", "50000\n");
    populate_v1(t.path(), "pod", "50000\n");
    let layout = fake_v1(t.path());
    let mut s = layout.read(Path::new("/pod/c")).unwrap();
    s.cpu_usage_nano_cores = Some(42);
    let attrs = api::ContainerAttributes {
        id: "c".into(),
        ..Default::default()
    };
    let fs = filesystem_usage(s.timestamp_ns, Path::new("/var/lib/hull-cri"), 8192, 3);
    let c = s.container_stats(attrs.clone(), Some(fs.clone()));
    assert_eq!(c.attributes, Some(attrs));
    let cpu = c.cpu.unwrap();
    assert_eq!(cpu.timestamp, s.timestamp_ns);
    assert_eq!(cpu.usage_core_nano_seconds, Some(value(123_456_789)));
    assert_eq!(cpu.usage_nano_cores, Some(value(42)));
    let mem = c.memory.unwrap();
    assert_eq!(mem.working_set_bytes, Some(value(7000)));
    assert_eq!(mem.available_bytes, Some(value(43_000)));
    assert_eq!(mem.usage_bytes, Some(value(10_000)));
    assert_eq!(mem.rss_bytes, Some(value(5000)));
    assert_eq!(mem.page_faults, Some(value(77)));
    assert_eq!(mem.major_page_faults, Some(value(3)));
    assert_eq!(c.writable_layer, Some(fs.clone()));
    assert_eq!(fs.used_bytes, Some(value(8192)));
    assert_eq!(fs.inodes_used, Some(value(3)));
    assert_eq!(fs.fs_id.unwrap().mountpoint, "/var/lib/hull-cri");

    let pod = layout.read(Path::new("/pod")).unwrap();
    let p = pod.pod_sandbox_stats(Default::default(), vec![c.clone()]);
    let linux = p.linux.unwrap();
    assert_eq!(linux.containers, vec![c]);
    assert_eq!(linux.process.unwrap().process_count, Some(value(3)));
    assert_eq!(linux.memory.unwrap().usage_bytes, Some(value(10_000)));
    assert!(p.windows.is_none());
}

#[test]
fn writable_layer_usage_counts_the_upper_dir() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("f"), vec![7u8; 5000]).unwrap();
    let (bytes, inodes) = writable_layer_usage(t.path()).unwrap();
    assert_eq!(inodes, 2);
    assert!(bytes >= 5000, "{bytes}");
    let err = writable_layer_usage(&t.path().join("missing")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}
