//! Driver tests with fake plugins (shell scripts recording their calls); no root needed.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    cni: Cni,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["conf", "bin", "cache", "calls"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        let cni = Cni::new(
            root.join("conf"),
            vec![root.join("bin")],
            root.join("cache"),
        );
        Fixture {
            _tmp: tmp,
            root,
            cni,
        }
    }

    /// A plugin that logs its command and saves its stdin, then prints `result` (ADD) or
    /// fails with CNI error 7 when `fail_add`.
    fn plugin(&self, name: &str, result: &str, fail_add: bool) {
        let calls = self.root.join("calls");
        let add = if fail_add {
            r#"echo '{"code":7,"msg":"boom","details":"bad"}'; exit 1"#.to_owned()
        } else {
            format!("echo '{result}'")
        };
        let script = format!(
            "#!/bin/sh\ncat > {calls}/{name}-$CNI_COMMAND.stdin\n\
             echo \"$CNI_COMMAND {name} $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS $CNI_ARGS\" >> {calls}/log\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then {add}; fi\n",
            calls = calls.display()
        );
        let path = self.root.join("bin").join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn conflist(&self, file: &str, plugins: &str) {
        let json = format!(r#"{{"cniVersion":"1.0.0","name":"t","plugins":[{plugins}]}}"#);
        fs::write(self.root.join("conf").join(file), json).unwrap();
    }

    fn log(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("calls/log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn stdin(&self, name: &str, cmd: &str) -> Value {
        let p = self.root.join(format!("calls/{name}-{cmd}.stdin"));
        serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
    }
}

fn attachment(ports: Vec<PortMapping>) -> Attachment {
    Attachment {
        container_id: "pod1".into(),
        netns: "/run/hull/pods/pod1/net".into(),
        ifname: "eth0".into(),
        pod_namespace: "default".into(),
        pod_name: "web".into(),
        pod_uid: "u-1".into(),
        port_mappings: ports,
    }
}

const RESULT_A: &str = r#"{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.2/24"}]}"#;
const RESULT_B: &str =
    r#"{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.2/24"},{"address":"fd09::2/64"}]}"#;

fn port() -> PortMapping {
    PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: "127.0.0.1".into(),
    }
}

#[tokio::test]
async fn add_chains_results_and_del_reverses() {
    let f = Fixture::new();
    f.plugin("a", RESULT_A, false);
    f.plugin("b", RESULT_B, false);
    f.conflist(
        "10-t.conflist",
        r#"{"type":"a","x":1},{"type":"b","capabilities":{"portMappings":true}}"#,
    );
    let att = attachment(vec![port()]);
    let r = f.cni.add(&att).await.unwrap();
    assert_eq!(r.pod_ip(), Some("10.9.0.2".parse().unwrap()));
    assert_eq!(
        r.additional_ips(),
        vec!["fd09::2".parse::<std::net::IpAddr>().unwrap()]
    );

    let a = f.stdin("a", "ADD");
    assert_eq!(a["name"], "t");
    assert_eq!(a["cniVersion"], "1.0.0");
    assert_eq!(a["x"], 1);
    assert!(a.get("prevResult").is_none() && a.get("runtimeConfig").is_none());
    let b = f.stdin("b", "ADD");
    assert_eq!(
        b["prevResult"],
        serde_json::from_str::<Value>(RESULT_A).unwrap()
    );
    assert_eq!(
        b["runtimeConfig"]["portMappings"],
        serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
    );
    let line = fs::read_to_string(f.root.join("calls/log")).unwrap();
    assert!(line.contains(
        "ADD a pod1 eth0 /run/hull/pods/pod1/net IgnoreUnknown=1;K8S_POD_NAMESPACE=default;\
         K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=u-1"
    ));

    // The config changes before DEL: DEL still uses the cached one, with the result.
    fs::remove_file(f.root.join("conf/10-t.conflist")).unwrap();
    f.cni.del(&attachment(vec![])).await.unwrap();
    assert_eq!(f.log(), ["ADD a", "ADD b", "DEL b", "DEL a"]);
    let del_b = f.stdin("b", "DEL");
    assert_eq!(
        del_b["prevResult"],
        serde_json::from_str::<Value>(RESULT_B).unwrap()
    );
    assert_eq!(del_b["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
    assert_eq!(fs::read_dir(f.root.join("cache")).unwrap().count(), 0);

    // Idempotent: no cache, no config → nothing to do, success.
    f.cni.del(&att).await.unwrap();
    assert_eq!(f.log().len(), 4);
}

#[tokio::test]
async fn failed_add_runs_del_for_every_plugin() {
    let f = Fixture::new();
    f.plugin("a", RESULT_A, false);
    f.plugin("bad", "", true);
    f.plugin("c", RESULT_A, false);
    f.conflist(
        "10-t.conflist",
        r#"{"type":"a"},{"type":"bad"},{"type":"c"}"#,
    );
    let err = f.cni.add(&attachment(vec![])).await.unwrap_err();
    assert!(
        matches!(&err, CniError::Plugin { plugin, code: 7, msg, .. } if plugin == "bad" && msg == "boom: bad"),
        "{err:?}"
    );
    assert_eq!(err.code(), tonic::Code::Internal);
    assert_eq!(f.log(), ["ADD a", "ADD bad", "DEL c", "DEL bad", "DEL a"]);
    assert_eq!(
        f.stdin("c", "DEL")["prevResult"],
        serde_json::from_str::<Value>(RESULT_A).unwrap()
    );
    assert_eq!(fs::read_dir(f.root.join("cache")).unwrap().count(), 0);
}

#[tokio::test]
async fn missing_plugin_and_status() {
    let f = Fixture::new();
    assert!(matches!(f.cni.status(), Err(CniError::NoConfig { .. })));
    f.plugin("a", RESULT_A, false);
    f.conflist("10-t.conflist", r#"{"type":"a"},{"type":"nonexistent"}"#);
    let err = f.cni.status().unwrap_err();
    assert!(matches!(&err, CniError::PluginNotFound { plugin, .. } if plugin == "nonexistent"));
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(f.cni.add(&attachment(vec![])).await.is_err());
    assert_eq!(f.log(), ["ADD a", "DEL a"]);
    f.conflist("10-t.conflist", r#"{"type":"a"}"#);
    assert_eq!(f.cni.status().unwrap().name, "t");
}

#[tokio::test]
async fn plain_del_reports_a_plugin_removed_after_add() {
    let f = Fixture::new();
    f.plugin("a", RESULT_A, false);
    f.plugin("b", RESULT_A, false);
    f.conflist("10-t.conflist", r#"{"type":"a"},{"type":"b"}"#);
    f.cni.add(&attachment(vec![])).await.unwrap();
    fs::remove_file(f.root.join("bin/b")).unwrap();
    let err = f.cni.del(&attachment(vec![])).await.unwrap_err();
    assert!(matches!(&err, CniError::PluginNotFound { plugin, .. } if plugin == "b"));
    // The other plugins still ran, and the cache stays for a retry.
    assert_eq!(f.log(), ["ADD a", "ADD b", "DEL a"]);
    assert_eq!(fs::read_dir(f.root.join("cache")).unwrap().count(), 1);
}

#[tokio::test]
async fn bad_attachments_refused_before_any_plugin() {
    let f = Fixture::new();
    f.plugin("a", RESULT_A, false);
    f.conflist("10-t.conflist", r#"{"type":"a"}"#);
    let mut bad = vec![];
    for edit in [
        (|a: &mut Attachment| a.container_id = "../x".into()) as fn(&mut Attachment),
        |a| a.pod_name = "a;b=c".into(),
        |a| a.ifname = "a-very-long-interface".into(),
        |a| {
            a.port_mappings = vec![PortMapping {
                protocol: "TCP".into(),
                ..port()
            }]
        },
    ] {
        let mut att = attachment(vec![]);
        edit(&mut att);
        bad.push(f.cni.add(&att).await.unwrap_err());
    }
    assert!(
        bad.iter().all(|e| e.code() == tonic::Code::InvalidArgument),
        "{bad:?}"
    );
    assert!(f.log().is_empty());
}
