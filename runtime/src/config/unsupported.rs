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

/// Every hook list of the config with its JSON name.
fn hook_lists(spec: &Spec) -> Vec<(&'static str, &[oci_spec::runtime::Hook])> {
    let Some(h) = spec.hooks() else {
        return Vec::new();
    };
    [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ]
    .into_iter()
    .map(|(name, l)| (name, l.as_deref().unwrap_or_default()))
    .collect()
}

/// Refuses fields hull cannot honour.
pub fn check(spec: &Spec) -> Result<(), Invalid> {
    for (phase, list) in hook_lists(spec) {
        for (i, h) in list.iter().enumerate() {
            if h.timeout().is_some_and(|t| t <= 0) {
                return Err(Invalid {
                    field: format!("hooks.{phase}[{i}].timeout"),
                    reason: "must be a positive number of seconds".into(),
                });
            }
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
    // runc fails here too (its write to attr/exec gets EINVAL); say why instead.
    let profile = p.apparmor_profile().as_ref().is_some_and(|p| !p.is_empty());
    if profile && !crate::apparmor::is_enabled() {
        return Err(Invalid {
            field: "process.apparmorProfile".into(),
            reason: "AppArmor is not enabled on this host".into(),
        });
    }
    // An SELinux label on a host without SELinux is ignored, as runc's selinux package
    // does when SELinux is disabled.
    if p.selinux_label().is_some() && Path::new("/sys/fs/selinux/enforce").exists() {
        return Err(not_yet("process.selinuxLabel", "applying an SELinux label"));
    }
    Ok(())
}

fn check_linux(spec: &Spec) -> Result<(), Invalid> {
    let Some(l) = spec.linux() else { return Ok(()) };
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
            field(r#""linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}"#),
            None
        );
        assert_eq!(
            field(r#""hooks":{"prestart":[{"path":"/bin/true","timeout":0}]}"#).as_deref(),
            Some("hooks.prestart[0].timeout")
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
