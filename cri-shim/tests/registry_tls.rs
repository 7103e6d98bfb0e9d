//! Root integration test of HTTPS pulls: a throwaway CA made with the `openssl` CLI, Debian's
//! docker-registry serving TLS on loopback and requiring a client certificate, busybox pushed
//! with skopeo, and hull-cri pulling with and without the CA, through an `https://` mirror,
//! with mTLS and with `skip_verify`. Skips with a reason when not root or a tool is missing.

// The shared helpers; this test uses only the process and port ones.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use common::{free_port, skip_reason_for, wait_for, Reaped};
use hull_cri::api::image_service_client::ImageServiceClient;
use hull_cri::api::*;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A P-256 key and a certificate signed by `ca` (`ca.pem`/`ca.key` in `dir`) with `ext`.
fn issue(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<()> {
    let (key, csr, pem, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext)?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extfile,
        ],
    )
}

/// A CA (`ca.pem`), a server certificate for 127.0.0.1 and localhost (`server.pem`) and a
/// client certificate (`client.pem`), each with its `.key`.
fn make_pki(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=hull test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?;
    issue(
        dir,
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
    )?;
    issue(
        dir,
        "client",
        "/CN=hull test client",
        "extendedKeyUsage=clientAuth\nbasicConstraints=critical,CA:FALSE\n",
    )
}

/// docker-registry on 127.0.0.1:`port` with TLS, requiring a client certificate of the CA.
fn start_registry(dir: &Path, pki: &Path, port: u16) -> Result<Reaped> {
    let storage = dir.join("registry-data");
    std::fs::create_dir_all(&storage)?;
    let cfg = dir.join("registry.yml");
    let p = |f: &str| pki.join(f).display().to_string();
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
            storage.display(),
            p("server.pem"),
            p("server.key"),
            p("ca.pem"),
        ),
    )?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log"))?)
        .spawn()
        .context("starting docker-registry")?;
    let reaped = Reaped(child);
    wait_for(
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "registry to listen",
    );
    Ok(reaped)
}

/// Pushes busybox over verified TLS with a client certificate (skopeo's cert dir: `*.crt`
/// CAs, `*.cert`/`*.key` client pair).
fn push_busybox(dir: &Path, pki: &Path, port: u16, tags: &[&str]) -> Result<()> {
    let certs = dir.join("skopeo-certs");
    std::fs::create_dir_all(&certs)?;
    std::fs::copy(pki.join("ca.pem"), certs.join("ca.crt"))?;
    std::fs::copy(pki.join("client.pem"), certs.join("client.cert"))?;
    std::fs::copy(pki.join("client.key"), certs.join("client.key"))?;
    let tar = dir.join("busybox-oci.tar");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let st = Command::new(root.join("bundles/busybox/oci-image.sh"))
        .arg(&tar)
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("oci-image.sh failed");
    }
    for tag in tags {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-cert-dir"])
            .arg(&certs)
            .arg(format!("oci-archive:{}", tar.display()))
            .arg(format!("docker://127.0.0.1:{port}/hull/busybox:{tag}"))
            .output()?;
        if !out.status.success() {
            bail!("skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

/// A hull-cri with `config` on its own root and socket under `dir/name`.
async fn start_daemon(dir: &Path, name: &str, config: &str) -> Result<(Reaped, Channel)> {
    let base = dir.join(name);
    std::fs::create_dir_all(&base)?;
    let cfg = base.join("cri.toml");
    std::fs::write(&cfg, config)?;
    let sock = base.join("run/cri.sock");
    let daemon = Reaped(
        Command::new(env!("CARGO_BIN_EXE_hull-cri"))
            .arg("--listen")
            .arg(&sock)
            .arg("--root")
            .arg(base.join("state"))
            .arg("--config")
            .arg(&cfg)
            .stderr(std::fs::File::create(base.join("hull-cri.log"))?)
            .spawn()?,
    );
    let s = sock.clone();
    // The socket file appears at bind, a moment before listen: wait until it accepts.
    wait_for(
        move || std::os::unix::net::UnixStream::connect(&s).is_ok(),
        "hull-cri socket",
    );
    let ch = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await?;
    Ok((daemon, ch))
}

async fn pull(ch: &Channel, image: &str) -> Result<String, tonic::Status> {
    let req = PullImageRequest {
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = ImageServiceClient::new(ch.clone()).pull_image(req).await?;
    Ok(r.into_inner().image_ref)
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_tls_with_a_private_ca_and_client_certificate() -> Result<()> {
    if let Some(why) = skip_reason_for(&["docker-registry", "skopeo", "openssl", "jq", "busybox"]) {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    make_pki(&pki)?;
    let port = free_port();
    let _registry = start_registry(dir.path(), &pki, port)?;
    push_busybox(dir.path(), &pki, port, &["latest", "other"])?;
    let p = |f: &str| pki.join(f).display().to_string();
    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client.key"));

    // The CA and client certificate for 127.0.0.1:PORT, which is also registry.k8s.io's
    // mirror; localhost:PORT gets the CA but no client certificate.
    let config = format!(
        "[registries.\"127.0.0.1:{port}\"]\nca_file = \"{ca}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n\
         [registries.\"registry.k8s.io\"]\nmirrors = [\"https://127.0.0.1:{port}\"]\n\
         [registries.\"localhost:{port}\"]\nca_file = \"{ca}\"\n"
    );
    let (_a, ch) = start_daemon(dir.path(), "with-ca", &config).await?;
    let id = pull(&ch, &format!("127.0.0.1:{port}/hull/busybox:latest")).await?;
    assert!(id.starts_with("sha256:"), "{id}");
    let mirrored = pull(&ch, "registry.k8s.io/hull/busybox:other").await?;
    assert_eq!(mirrored, id, "the https mirror serves the same image");

    // The registry refuses a client without a certificate: Unavailable, naming the host.
    let e = pull(&ch, &format!("localhost:{port}/hull/busybox:latest"))
        .await
        .unwrap_err();
    eprintln!("refused without a client certificate: {}", e.message());
    assert_eq!(e.code(), tonic::Code::Unavailable, "{}", e.message());
    assert!(
        e.message()
            .contains(&format!("TLS handshake with registry localhost:{port}"))
            && e.message().contains("client_cert"),
        "{}",
        e.message()
    );
    without_the_ca(dir.path(), port, &cert, &key).await
}

/// Without the CA, a TLS registry on loopback (HTTPS by `insecure = false`) fails with
/// Unavailable naming the host and the certificate error, and leaves nothing in the store;
/// `skip_verify` gets through, with a warning in the log.
async fn without_the_ca(dir: &Path, port: u16, cert: &str, key: &str) -> Result<()> {
    let config = format!(
        "[registries.\"127.0.0.1:{port}\"]\ninsecure = false\n\
         [registries.\"localhost:{port}\"]\nskip_verify = true\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n"
    );
    let (_b, ch) = start_daemon(dir, "without-ca", &config).await?;
    let e = pull(&ch, &format!("127.0.0.1:{port}/hull/busybox:latest"))
        .await
        .unwrap_err();
    let msg = e.message();
    eprintln!("refused without the CA: {msg}");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{msg}");
    assert!(
        msg.contains(&format!(
            "TLS handshake with registry 127.0.0.1:{port} failed"
        )),
        "{msg}"
    );
    assert!(
        msg.contains("UnknownIssuer") && msg.contains("ca_file"),
        "{msg}"
    );
    let state = dir.join("without-ca/state");
    assert_eq!(
        entries(&state.join("blobs/sha256")),
        0,
        "failed pull left blobs"
    );
    assert_eq!(
        entries(&state.join("snapshots")),
        0,
        "failed pull left snapshots"
    );

    let id = pull(&ch, &format!("localhost:{port}/hull/busybox:latest")).await?;
    assert!(id.starts_with("sha256:"), "{id}");
    let log = std::fs::read_to_string(dir.join("without-ca/hull-cri.log"))?;
    let warned = log.lines().filter(|l| l.contains("skip_verify")).count();
    assert_eq!(warned, 1, "one warning for one pull:\n{log}");
    Ok(())
}

/// A bad CA path stops hull-cri at start with a message naming the section and the file.
#[test]
fn a_missing_ca_file_stops_the_daemon_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("cri.toml");
    std::fs::write(
        &cfg,
        "[registries.\"reg.example\"]\nca_file = \"/nonexistent/hull-ca.pem\"\n",
    )?;
    let out = Command::new(env!("CARGO_BIN_EXE_hull-cri"))
        .arg("--listen")
        .arg(dir.path().join("cri.sock"))
        .arg("--root")
        .arg(dir.path().join("state"))
        .arg("--run")
        .arg(dir.path().join("run"))
        .arg("--config")
        .arg(&cfg)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("registry reg.example") && err.contains("/nonexistent/hull-ca.pem"),
        "{err}"
    );
    assert!(!dir.path().join("cri.sock").exists());
    Ok(())
}
