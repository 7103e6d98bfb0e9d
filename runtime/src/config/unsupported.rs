//! Fields of config.json that hull does not implement yet. Each is refused with a clear
//! error instead of being ignored, so a container never runs with less isolation or
//! different behaviour than its config asked for.

use std::path::Path;

use oci_spec::runtime::Spec;

use super::validate::Invalid;

fn not_yet(field: &str, what: &str) -> Invalid {
    Invalid {
        field: field.into(),
        reason: format!("{what} is not supported by hull yet"),
    }
}

/// True when the host has a security module enabled, read from sysfs.
fn lsm_enabled(flag_file: &str) -> bool {
    std::fs::read_to_string(flag_file).is_ok_and(|s| matches!(s.trim(), "Y" | "1"))
}

/// Refuses fields hull cannot honour.
pub fn check(spec: &Spec) -> Result<(), Invalid> {
    if let Some(h) = spec.hooks() {
        let any = [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()));
        if any {
            return Err(not_yet("hooks", "running hooks"));
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(not_yet(
                &format!("mounts[{i}].uidMappings"),
                "an id-mapped mount",
            ));
        }
    }
    check_process(spec)?;
    check_linux(spec)
}

fn check_process(spec: &Spec) -> Result<(), Invalid> {
    let Some(p) = spec.process() else {
        return Ok(());
    };
    if p.scheduler().is_some() {
        return Err(not_yet("process.scheduler", "setting a scheduler policy"));
    }
    if p.exec_cpu_affinity().is_some() {
        return Err(not_yet("process.execCPUAffinity", "CPU affinity at exec"));
    }
    // Like runc: a label or profile for a security module the kernel does not run is
    // ignored, since there is nothing to apply it to.
    if p.apparmor_profile().is_some() && lsm_enabled("/sys/module/apparmor/parameters/enabled") {
        return Err(not_yet(
            "process.apparmorProfile",
            "applying an AppArmor profile",
        ));
    }
    if p.selinux_label().is_some() && Path::new("/sys/fs/selinux/enforce").exists() {
        return Err(not_yet("process.selinuxLabel", "applying an SELinux label"));
    }
    Ok(())
}

fn check_linux(spec: &Spec) -> Result<(), Invalid> {
    let Some(l) = spec.linux() else { return Ok(()) };
    if l.seccomp().is_some() {
        return Err(not_yet("linux.seccomp", "a seccomp filter"));
    }
    if l.intel_rdt().is_some() {
        return Err(not_yet("linux.intelRdt", "Intel RDT"));
    }
    if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(not_yet("linux.netDevices", "moving network devices"));
    }
    if l.memory_policy().is_some() {
        return Err(not_yet("linux.memoryPolicy", "a NUMA memory policy"));
    }
    if l.personality().is_some() {
        return Err(not_yet("linux.personality", "setting the execution domain"));
    }
    if l.mount_label().is_some() && Path::new("/sys/fs/selinux/enforce").exists() {
        return Err(not_yet("linux.mountLabel", "an SELinux mount label"));
    }
    if l.resources().as_ref().is_some_and(|r| r.rdma().is_some()) {
        return Err(not_yet(
            "linux.resources.rdma",
            "the rdma cgroup controller",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#;

    fn field(extra: &str) -> Option<String> {
        let s: Spec = serde_json::from_str(&format!("{{{BASE},{extra}}}")).unwrap();
        check(&s).err().map(|e| e.field)
    }

    #[test]
    fn refuses_what_is_not_implemented() {
        assert_eq!(
            field(r#""linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}"#).as_deref(),
            Some("linux.seccomp")
        );
        assert_eq!(
            field(r#""hooks":{"prestart":[{"path":"/bin/true"}]}"#).as_deref(),
            Some("hooks")
        );
        assert_eq!(
            field(r#""linux":{"personality":{"domain":"LINUX"}}"#).as_deref(),
            Some("linux.personality")
        );
    }

    #[test]
    fn empty_hooks_are_fine() {
        assert_eq!(field(r#""hooks":{"prestart":[]}"#), None);
    }
}
