//! CNI with Debian's plugins on a test-only bridge.

use super::*;

/// A test network: its own bridge, subnet, config dir, host-local data dir and cache dir.
/// Dropping it deletes the bridge.
struct TestNet {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bridge: String,
    name: String,
    subnet_prefix: String,
    cni: Cni,
}

impl TestNet {
    /// `n` keeps concurrently running tests apart; `middle` is put between bridge and portmap.
    fn new(n: u8, middle: Option<&str>) -> TestNet {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let bridge = format!("hulltst{n}");
        let name = format!("hull-test-{n}");
        let subnet_prefix = format!("10.251.{n}.");
        let routes = run(&["ip", "-4", "route"]);
        assert!(
            !routes.contains(&subnet_prefix),
            "10.251.{n}.0/24 is routed here"
        );
        let middle = middle.map_or(String::new(), |t| format!(r#"{{"type": "{t}"}},"#));
        let conflist = format!(
            r#"{{"cniVersion": "1.0.0", "name": "{name}", "plugins": [
              {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": true,
                "hairpinMode": true,
                "ipam": {{"type": "host-local", "dataDir": "{data}",
                          "ranges": [[{{"subnet": "10.251.{n}.0/24"}}]],
                          "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
              {middle}
              {{"type": "portmap", "capabilities": {{"portMappings": true}}}},
              {{"type": "loopback"}}]}}"#,
            data = root.join("ipam").display()
        );
        fs::create_dir(root.join("conf")).unwrap();
        fs::write(root.join("conf/10-test.conflist"), conflist).unwrap();
        let cni = Cni::new(
            root.join("conf"),
            vec![PathBuf::from(PLUGINS)],
            root.join("cache"),
        );
        TestNet {
            _tmp: tmp,
            root,
            bridge,
            name,
            subnet_prefix,
            cni,
        }
    }

    /// Addresses host-local holds (one file per address in its data dir).
    fn allocated(&self) -> Vec<String> {
        match fs::read_dir(self.root.join("ipam").join(&self.name)) {
            Ok(d) => d
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.starts_with(&self.subnet_prefix))
                .collect(),
            Err(_) => vec![],
        }
    }

    /// Host-side veths enslaved to the test bridge.
    fn ports(&self) -> usize {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // The bridge plugin creates the bridge and never deletes it.
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn attachment(id: &str, pinned: &Pinned, ports: Vec<PortMapping>) -> Attachment {
    Attachment {
        container_id: id.into(),
        netns: pinned.path("net").unwrap(),
        ifname: "eth0".into(),
        pod_namespace: "default".into(),
        pod_name: id.into(),
        pod_uid: format!("uid-{id}"),
        port_mappings: ports,
    }
}

/// iptables rules (nat and filter) that mention `id`: bridge's masquerade and portmap's DNAT
/// carry the container id in a comment.
fn rules_naming(id: &str) -> usize {
    ["nat", "filter"]
        .iter()
        .map(|t| {
            run(&["iptables-save", "-t", t])
                .lines()
                .filter(|l| l.contains(id))
                .count()
        })
        .sum()
}

/// Serves one connection inside the network namespace `netns` on `port`: a thread may enter
/// a network namespace alone (setns with CLONE_NEWNET changes only the calling thread).
fn serve_once_in(netns: PathBuf, port: u16) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let ns = fs::File::open(&netns).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello from the pod").unwrap();
    });
    rx.recv().unwrap();
    t
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn two_pods_ping_portmap_and_del() {
    skip_unless_able!();
    let net = TestNet::new(1, None);
    let pins = tempfile::tempdir().unwrap();
    let req = PinRequest {
        net: true,
        uts: true,
        pid: true,
        hostname: Some("pod-a".into()),
        ..PinRequest::default()
    };
    let host_port = free_port();
    let ports = vec![PortMapping {
        host_port,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: "127.0.0.1".into(),
    }];

    let t0 = Instant::now();
    let a = pin(&pins.path().join("a"), &req).await;
    let pinned_in = t0.elapsed();
    let att_a = attachment("hulltest-a", &a, ports);
    let res_a = net.cni.add(&att_a).await.unwrap();
    let total = t0.elapsed();
    eprintln!("pod a: pin {pinned_in:?}, pin + CNI ADD {total:?}");

    let b = pin(&pins.path().join("b"), &req).await;
    let att_b = attachment("hulltest-b", &b, vec![]);
    let res_b = net.cni.add(&att_b).await.unwrap();
    let (ip_a, ip_b) = (res_a.pod_ip().unwrap(), res_b.pod_ip().unwrap());
    for ip in [ip_a, ip_b] {
        assert!(matches!(ip, IpAddr::V4(_)) && ip.to_string().starts_with(&net.subnet_prefix));
    }
    assert_ne!(ip_a, ip_b);
    assert_eq!(net.ports(), 2);
    assert_eq!(net.allocated().len(), 2);

    // Addresses as the pod sees them; lo is up (loopback plugin).
    let in_a = format!("--net={}", a.path("net").unwrap().display());
    let addrs = run(&["nsenter", &in_a, "ip", "-o", "addr"]);
    assert!(
        addrs.contains(&format!("eth0    inet {ip_a}/24")),
        "{addrs}"
    );
    assert!(addrs.contains("lo    inet 127.0.0.1/8"), "{addrs}");
    // The pods reach each other over the bridge.
    run(&[
        "nsenter",
        &in_a,
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &ip_b.to_string(),
    ]);

    // 127.0.0.1:<host port> on the host reaches port 8080 in pod a (portmap).
    let server = serve_once_in(a.path("net").unwrap(), 8080);
    let mut conn = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello from the pod");
    server.join().unwrap();
    assert!(
        rules_naming("hulltest-a") > 0,
        "portmap/masquerade rules exist"
    );

    // DEL removes a's veth, address and rules; a second DEL is fine.
    net.cni.del(&att_a).await.unwrap();
    assert_eq!(net.ports(), 1);
    assert_eq!(net.allocated(), [ip_b.to_string()]);
    assert_eq!(rules_naming("hulltest-a"), 0);
    net.cni.del(&att_a).await.unwrap();
    assert!(TcpStream::connect(("127.0.0.1", host_port)).is_err());

    net.cni.del(&att_b).await.unwrap();
    assert_eq!((net.ports(), net.allocated().len()), (0, 0));
    for p in [a, b] {
        podns::unpin(&p.dir, p.holder_pid).unwrap();
        let pid = Pid::from_raw(p.holder_pid.unwrap());
        assert!(matches!(waitpid(pid, None), Ok(WaitStatus::Signaled(..))));
    }
    assert!(mounts_under(pins.path()).is_empty());
    assert_eq!(fs::read_dir(net.root.join("cache")).unwrap().count(), 0);
}

#[tokio::test]
async fn failing_plugin_mid_chain_leaves_nothing() {
    skip_unless_able!();
    let net = TestNet::new(2, Some("hull-no-such-plugin"));
    let pins = tempfile::tempdir().unwrap();
    let req = PinRequest {
        net: true,
        ..PinRequest::default()
    };
    let p = pin(&pins.path().join("p"), &req).await;
    let att = attachment("hulltest-fail", &p, vec![]);
    let err = net.cni.add(&att).await.unwrap_err();
    assert!(
        matches!(&err, CniError::PluginNotFound { plugin, .. } if plugin == "hull-no-such-plugin"),
        "{err:?}"
    );
    // bridge ran (the bridge exists) but its veth, address and rules are gone again.
    assert!(Path::new("/sys/class/net").join(&net.bridge).exists());
    assert_eq!(net.ports(), 0);
    assert!(net.allocated().is_empty(), "{:?}", net.allocated());
    assert_eq!(rules_naming("hulltest-fail"), 0);
    let in_p = format!("--net={}", p.path("net").unwrap().display());
    let links = run(&["nsenter", &in_p, "ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "{links}");
    assert!(!net.root.join("cache/hulltest-fail-eth0.json").exists());
    podns::unpin(&p.dir, None).unwrap();
    assert!(mounts_under(pins.path()).is_empty());
}
