//! Root integration test: a real registry (Debian's docker-registry) on loopback, an image
//! pushed with skopeo, hull-cri on a temp socket, and the ImageService driven through a tonic
//! client. Skips with a reason when not root or a tool is missing. Cleans up everything.

// The shared helpers; this test uses only the process and port ones.
#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use common::{free_port, skip_reason_for, wait_for, Reaped};
use hull_cri::api::image_service_client::ImageServiceClient;
use hull_cri::api::runtime_service_client::RuntimeServiceClient;
use hull_cri::api::*;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn start_registry(dir: &Path, port: u16) -> Result<Reaped> {
    let storage = dir.join("registry-data");
    std::fs::create_dir_all(&storage)?;
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
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

fn push_busybox(dir: &Path, port: u16, tags: &[&str]) -> Result<()> {
    let tar = dir.join("busybox-oci.tar");
    let st = Command::new(repo_root().join("bundles/busybox/oci-image.sh"))
        .arg(&tar)
        .stderr(Stdio::null())
        .status()?;
    if !st.success() {
        bail!("oci-image.sh failed");
    }
    for tag in tags {
        let out = Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--quiet"])
            .arg(format!("oci-archive:{}", tar.display()))
            .arg(format!("docker://127.0.0.1:{port}/hull/busybox:{tag}"))
            .output()?;
        if !out.status.success() {
            bail!("skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

async fn connect(sock: PathBuf) -> Result<Channel> {
    let sock2 = sock.clone();
    // The socket file appears at bind, a moment before listen: wait until it accepts.
    wait_for(
        move || std::os::unix::net::UnixStream::connect(&sock2).is_ok(),
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
    Ok(ch)
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_list_status_remove_through_a_local_registry() -> Result<()> {
    if let Some(why) = skip_reason_for(&["docker-registry", "skopeo", "jq", "busybox"]) {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let _registry = start_registry(dir.path(), port)?;
    push_busybox(dir.path(), port, &["latest", "other"])?;

    // A mirror: registry.k8s.io is served by the local registry, names kept.
    let cfg = dir.path().join("cri.toml");
    std::fs::write(
        &cfg,
        format!("[registries.\"registry.k8s.io\"]\nmirrors = [\"http://127.0.0.1:{port}\"]\n"),
    )?;
    let sock = dir.path().join("run/cri.sock");
    let root = dir.path().join("state");
    let daemon = Reaped(
        Command::new(env!("CARGO_BIN_EXE_hull-cri"))
            .arg("--listen")
            .arg(&sock)
            .arg("--root")
            .arg(&root)
            .arg("--config")
            .arg(&cfg)
            .stderr(std::fs::File::create(dir.path().join("hull-cri.log"))?)
            .spawn()?,
    );
    let ch = connect(sock.clone()).await?;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let mut img = ImageServiceClient::new(ch);

    let v = rt.version(VersionRequest::default()).await?.into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("hull", "v1")
    );
    assert!(!v.version.is_empty() && !v.runtime_version.is_empty());
    // A request missing its command is refused, naming the RPC and the field.
    let e = rt.exec(ExecRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("Exec") && e.message().contains("cmd"),
        "{}",
        e.message()
    );

    // Concurrent pulls of one image: one id.
    let name = format!("127.0.0.1:{port}/hull/busybox:latest");
    let mut pulls = Vec::new();
    for _ in 0..4 {
        let mut c = img.clone();
        let req = PullImageRequest {
            image: spec(&name),
            ..Default::default()
        };
        pulls.push(tokio::spawn(async move {
            c.pull_image(req).await.map(|r| r.into_inner().image_ref)
        }));
    }
    let mut ids = Vec::new();
    for p in pulls {
        ids.push(p.await??);
    }
    assert!(
        ids.iter().all(|i| i == &ids[0] && i.starts_with("sha256:")),
        "{ids:?}"
    );
    let id = ids[0].clone();
    // The id is the config digest: the blob exists under that name.
    assert!(root.join("blobs/sha256").join(&id[7..]).is_file());
    // The layer was unpacked (once) before PullImage returned.
    let snapshots = std::fs::read_dir(root.join("snapshots"))?.collect::<Result<Vec<_>, _>>()?;
    assert_eq!(snapshots.len(), 1, "one snapshot for one layer");
    let busybox = snapshots[0].path().join("fs/bin/busybox");
    assert!(busybox.is_file(), "{} missing", busybox.display());
    let busybox_len = std::fs::metadata(&busybox)?.len();

    // Through the mirror, and by digest.
    let mirrored = img
        .pull_image(PullImageRequest {
            image: spec("registry.k8s.io/hull/busybox:other"),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(mirrored.image_ref, id);
    let st = img
        .image_status(ImageStatusRequest {
            image: spec(&id),
            verbose: true,
        })
        .await?
        .into_inner();
    let image = st.image.context("status of a pulled image")?;
    assert!(image.repo_tags.contains(&name), "{:?}", image.repo_tags);
    assert!(image
        .repo_tags
        .contains(&"registry.k8s.io/hull/busybox:other".to_string()));
    assert!(image
        .repo_digests
        .iter()
        .any(|d| d.starts_with("registry.k8s.io/hull/busybox@sha256:")));
    assert!(
        image.size > 1_000_000,
        "busybox is about 1-2 MB: {}",
        image.size
    );
    assert!(st.info.get("info").is_some_and(|i| i.contains("diff_id")));
    let by_digest = image
        .repo_digests
        .iter()
        .find(|d| d.starts_with("127.0.0.1"))
        .context("local digest")?;
    let again = img
        .pull_image(PullImageRequest {
            image: spec(by_digest),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(again.image_ref, id);

    // List, with and without a filter.
    let all = img
        .list_images(ListImagesRequest::default())
        .await?
        .into_inner()
        .images;
    assert_eq!(all.len(), 1);
    let filter = Some(ImageFilter {
        image: spec("registry.k8s.io/hull/busybox:other"),
    });
    assert_eq!(
        img.list_images(ListImagesRequest { filter })
            .await?
            .into_inner()
            .images
            .len(),
        1
    );
    let filter = Some(ImageFilter {
        image: spec("nothing/here:1"),
    });
    assert!(img
        .list_images(ListImagesRequest { filter })
        .await?
        .into_inner()
        .images
        .is_empty());

    // Errors: missing tag, bad reference, unreachable registry.
    let e = img
        .pull_image(PullImageRequest {
            image: spec(&format!("127.0.0.1:{port}/hull/busybox:nope")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{}", e.message());
    let e = img
        .pull_image(PullImageRequest {
            image: spec("Bad/Name"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let dead = free_port();
    let e = img
        .pull_image(PullImageRequest {
            image: spec(&format!("127.0.0.1:{dead}/x:1")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{}", e.message());

    // Filesystem usage is real.
    let fs = img
        .image_fs_info(ImageFsInfoRequest::default())
        .await?
        .into_inner();
    let u = &fs.image_filesystems[0];
    // Blobs and the unpacked snapshot (busybox's applet links are inodes of their own).
    assert!(u
        .used_bytes
        .as_ref()
        .is_some_and(|b| b.value >= image.size + busybox_len));
    assert!(u.inodes_used.as_ref().is_some_and(|n| n.value >= 50));

    // A restart keeps the image.
    drop(daemon);
    let _ = std::fs::remove_file(&sock);
    let _daemon = Reaped(
        Command::new(env!("CARGO_BIN_EXE_hull-cri"))
            .arg("--listen")
            .arg(&sock)
            .arg("--root")
            .arg(&root)
            .arg("--config")
            .arg(&cfg)
            .stderr(std::fs::File::create(dir.path().join("hull-cri-2.log"))?)
            .spawn()?,
    );
    let mut img = ImageServiceClient::new(connect(sock.clone()).await?);
    let st = img
        .image_status(ImageStatusRequest {
            image: spec(&name),
            verbose: false,
        })
        .await?
        .into_inner();
    assert_eq!(st.image.context("image survives restart")?.id, id);

    // Remove by tag removes the image and its blobs; removing again succeeds.
    img.remove_image(RemoveImageRequest { image: spec(&name) })
        .await?;
    assert!(img
        .image_status(ImageStatusRequest {
            image: spec(&id),
            verbose: false
        })
        .await?
        .into_inner()
        .image
        .is_none());
    img.remove_image(RemoveImageRequest { image: spec(&id) })
        .await?;
    let blobs = std::fs::read_dir(root.join("blobs/sha256"))?.count();
    assert_eq!(blobs, 0, "GC left blobs behind");
    let snapshots = std::fs::read_dir(root.join("snapshots"))?.count();
    assert_eq!(snapshots, 0, "GC left snapshots behind");
    Ok(())
}
