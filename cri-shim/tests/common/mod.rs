//! Helpers of the RuntimeService integration test: a local registry serving busybox, one
//! hull-cri per test on its own root, run dir, CNI network (bridge `hulltst<N>`, subnet
//! 10.251.<N>.0/24) and cgroup parent (`/hull-rtest-<N>`), and a scan of everything a pod
//! or container can leave on the host. Dropping an [`Env`] removes its pods through the
//! daemon, kills it, then removes by force whatever is still there, also after a panic.

pub mod scan;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hull_cri::api::image_service_client::ImageServiceClient;
use hull_cri::api::runtime_service_client::RuntimeServiceClient;
use hull_cri::api::*;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

pub const PLUGINS: &str = "/usr/lib/cni";

/// Kills and reaps a child on drop, so no process outlives the test.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Why the RuntimeService tests cannot run here, if they cannot: the registry tools, `ip`
/// and Debian's CNI plugins.
pub fn skip_reason() -> Option<String> {
    skip_reason_for(&["docker-registry", "skopeo", "jq", "busybox", "ip"]).or_else(|| {
        ["bridge", "host-local", "portmap", "loopback"]
            .iter()
            .find(|p| !Path::new(PLUGINS).join(p).exists())
            .map(|p| format!("{PLUGINS}/{p} missing (containernetworking-plugins)"))
    })
}

/// Why a root test needing `tools` cannot run here, if it cannot.
pub fn skip_reason_for(tools: &[&str]) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not root".into());
    }
    tools
        .iter()
        .find(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|tool| format!("{tool} not installed (scripts/deps.sh)"))
}

/// `hull`, built into the same target dir as this test (`cargo build -p hull`).
pub fn hull_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> → target/<profile>/hull
    let hull = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("hull");
    assert!(
        hull.is_file(),
        "{} missing: build the runtime first (cargo build -p hull)",
        hull.display()
    );
    hull
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}")
}

/// Debian's docker-registry on a free loopback port, serving `hull/busybox:latest`
/// (bundles/busybox/oci-image.sh, pushed with skopeo). Shared by the tests running at one
/// time; the last one to drop it stops it.
pub struct Registry {
    _child: Reaped,
    _dir: tempfile::TempDir,
    pub port: u16,
}

static REGISTRY: Mutex<Weak<Registry>> = Mutex::new(Weak::new());

impl Registry {
    pub fn shared() -> Arc<Registry> {
        let mut slot = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.upgrade() {
            return r;
        }
        let r = Arc::new(Registry::start());
        *slot = Arc::downgrade(&r);
        r
    }

    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("registry.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Reaped(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
                .spawn()
                .expect("starting docker-registry"),
        );
        wait_for(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "the registry to listen",
        );
        let tar = dir.path().join("busybox-oci.tar");
        let st = Command::new(repo_root().join("bundles/busybox/oci-image.sh"))
            .arg(&tar)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "bundles/busybox/oci-image.sh failed");
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--quiet"])
            .arg(format!("oci-archive:{}", tar.display()))
            .arg(format!("docker://127.0.0.1:{port}/hull/busybox:latest"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Registry {
            _child: child,
            _dir: dir,
            port,
        }
    }

    pub fn busybox(&self) -> String {
        format!("127.0.0.1:{}/hull/busybox:latest", self.port)
    }
}

/// How a test's CNI config differs from the normal bridge + portmap + loopback.
#[derive(Default, Clone, Copy)]
pub struct NetOpts {
    /// A plugin type put between bridge and portmap.
    pub middle: Option<&'static str>,
}

/// One hull-cri with its own state, network and cgroup parent.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// `N` of the bridge, subnet and cgroup parent.
    pub n: u8,
    daemon: Option<Reaped>,
    starts: u32,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    pub registry: Arc<Registry>,
}

/// Per-process counter of networks; 10.251.1-2 belong to tests/podns.rs.
static NEXT_NET: AtomicU8 = AtomicU8::new(40);

fn pick_net() -> u8 {
    let routes = run_out(&["ip", "-4", "route"]);
    loop {
        let n = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        assert!(n < 250, "no free test network");
        let taken = routes.contains(&format!("10.251.{n}."))
            || Path::new("/sys/class/net")
                .join(format!("hulltst{n}"))
                .exists();
        if !taken {
            return n;
        }
    }
}

/// Runs a command and returns its stdout (empty if it cannot run).
pub fn run_out(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Env {
    /// A running daemon with a fresh root, or `None` (with the reason printed) when the
    /// tests cannot run on this host.
    pub async fn start(opts: NetOpts) -> Option<Env> {
        if let Some(why) = skip_reason() {
            eprintln!("skipped: {why}");
            return None;
        }
        hull_bin();
        let registry = tokio::task::spawn_blocking(Registry::shared).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let n = pick_net();
        let env_dir = dir.path().to_path_buf();
        write_conf(&env_dir, n, opts);
        let mut env = Env {
            dir,
            n,
            daemon: None,
            starts: 0,
            // Replaced by the first connect; a lazy channel never dials by itself.
            rt: RuntimeServiceClient::new(Endpoint::from_static("http://[::]:1").connect_lazy()),
            img: ImageServiceClient::new(Endpoint::from_static("http://[::]:1").connect_lazy()),
            registry,
        };
        env.spawn_daemon().await;
        Some(env)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn root(&self) -> PathBuf {
        self.path("root")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.path("run")
    }
    pub fn bridge(&self) -> String {
        format!("hulltst{}", self.n)
    }
    pub fn net_name(&self) -> String {
        format!("hull-rtest-{}", self.n)
    }
    pub fn subnet_prefix(&self) -> String {
        format!("10.251.{}.", self.n)
    }
    pub fn cgroup_parent(&self) -> String {
        format!("/hull-rtest-{}", self.n)
    }
    pub fn log_dir(&self) -> PathBuf {
        self.path("logs")
    }

    async fn spawn_daemon(&mut self) {
        self.starts += 1;
        let sock = self.path("cri.sock");
        let log =
            std::fs::File::create(self.path(&format!("hull-cri-{}.log", self.starts))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hull-cri"))
            .arg("--listen")
            .arg(&sock)
            .arg("--root")
            .arg(self.root())
            .arg("--run")
            .arg(self.run_dir())
            .arg("--config")
            .arg(self.path("cri.toml"))
            .arg("--runtime")
            .arg(hull_bin())
            .env("RUST_LOG", "hull_cri=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting hull-cri");
        self.daemon = Some(Reaped(child));
        let ch = connect(&sock).await;
        self.rt = RuntimeServiceClient::new(ch.clone());
        self.img = ImageServiceClient::new(ch);
    }

    /// Kills the daemon with SIGKILL and starts it again on the same root.
    pub async fn restart_hard(&mut self) {
        let mut d = self.daemon.take().expect("a running daemon");
        d.0.kill().unwrap();
        d.0.wait().unwrap();
        drop(d);
        // The killed daemon's socket stays; the new one replaces it.
        self.spawn_daemon().await;
    }

    /// Pulls the registry's busybox; returns its name.
    pub async fn pull_busybox(&mut self) -> String {
        let name = self.registry.busybox();
        self.img
            .pull_image(PullImageRequest {
                image: Some(image(&name)),
                ..Default::default()
            })
            .await
            .expect("pulling busybox");
        name
    }

    /// A pod config on this test's network and cgroup parent, logging to `log_dir()`.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: "rtest".into(),
                uid: format!("uid-{name}"),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.log_dir().display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn run_pod(&mut self, config: PodSandboxConfig) -> Result<String, tonic::Status> {
        self.rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    pub async fn create(
        &mut self,
        pod_id: &str,
        pod: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn ctr_status(&mut self, id: &str) -> ContainerStatus {
        self.rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status")
    }
}

/// Removes every pod through the daemon on `sock`, each call bounded in time (best effort,
/// for drop).
async fn remove_all(sock: PathBuf) {
    let Ok(ch) = tokio::time::timeout(Duration::from_secs(2), connect(&sock)).await else {
        return;
    };
    let mut rt = RuntimeServiceClient::new(ch);
    let Ok(Ok(pods)) = tokio::time::timeout(
        Duration::from_secs(5),
        rt.list_pod_sandbox(ListPodSandboxRequest::default()),
    )
    .await
    else {
        return;
    };
    for p in pods.into_inner().items {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: p.id,
        };
        let _ = tokio::time::timeout(Duration::from_secs(15), rt.remove_pod_sandbox(req)).await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The drop may run on a runtime's thread (or while unwinding): a thread of its own,
        // with its own runtime and connection, drives the gRPC clean-up.
        if self.daemon.is_some() {
            let sock = self.path("cri.sock");
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|r| r.block_on(remove_all(sock)))
            })
            .join();
        }
        self.daemon.take();
        scan::force_clean(self);
    }
}

/// Writes the daemon's config and the test's CNI network config.
fn write_conf(dir: &Path, n: u8, opts: NetOpts) {
    let conf = dir.join("cni-conf");
    std::fs::create_dir_all(&conf).unwrap();
    let middle = opts
        .middle
        .map_or(String::new(), |t| format!(r#"{{"type": "{t}"}},"#));
    let conflist = format!(
        r#"{{"cniVersion": "1.0.0", "name": "hull-rtest-{n}", "plugins": [
          {{"type": "bridge", "bridge": "hulltst{n}", "isGateway": true, "ipMasq": true,
            "hairpinMode": true,
            "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.251.{n}.0/24"}}]],
                      "routes": [{{"dst": "0.0.0.0/0"}}]}}}},
          {middle}
          {{"type": "portmap", "capabilities": {{"portMappings": true}}}},
          {{"type": "loopback"}}]}}"#
    );
    std::fs::write(conf.join("10-rtest.conflist"), conflist).unwrap();
    std::fs::write(
        dir.join("cri.toml"),
        format!(
            "[cni]\nconf_dir = \"{}\"\nbin_dirs = [\"{PLUGINS}\"]\n",
            conf.display()
        ),
    )
    .unwrap();
}

/// Connects to the daemon on `sock`, retrying until it listens (up to 20 s).
async fn connect(sock: &Path) -> Channel {
    let start = Instant::now();
    loop {
        let path = sock.to_path_buf();
        let r = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await;
        match r {
            Ok(ch) => return ch,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                panic!("connecting to hull-cri on {}: {e:?}", sock.display())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

pub fn image(name: &str) -> ImageSpec {
    ImageSpec {
        image: name.to_string(),
        ..Default::default()
    }
}

/// A busybox container running `sh -c script`, logging to `<name>.log`.
pub fn sh_ctr(name: &str, image_name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(image(image_name)),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// Asserts the error's code and that its message names `object`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(
    r: Result<T, tonic::Status>,
    code: tonic::Code,
    object: &str,
) -> tonic::Status {
    let e = r.expect_err("the call should fail");
    eprintln!("  {:?}: {}", e.code(), e.message());
    assert_eq!(e.code(), code, "wrong code; message: {}", e.message());
    assert!(
        e.message().contains(object),
        "the message does not name {object:?}: {}",
        e.message()
    );
    e
}
