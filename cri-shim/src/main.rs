//! `hull-cri`: the CRI v1 gRPC server of hull, on a unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use hull_cri::api::image_service_server::ImageServiceServer;
use hull_cri::api::runtime_service_server::RuntimeServiceServer;
use hull_cri::cni::Cni;
use hull_cri::config::Config;
use hull_cri::oci::Handlers;
use hull_cri::pull::Puller;
use hull_cri::server::{ImageServer, Paths, RuntimeServer};
use hull_cri::snapshot::Snapshots;
use hull_cri::store::Store;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

/// kubelet's message size limit.
const MAX_MESSAGE: usize = 16 << 20;

/// The CRI v1 server of hull.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Unix socket to serve on.
    #[arg(long, default_value = "/run/hull/cri.sock")]
    listen: PathBuf,
    /// State root: image store and records.
    #[arg(long, default_value = "/var/lib/hull-cri")]
    root: PathBuf,
    /// Config file (registries, mirrors, runtime handlers, CNI); missing means defaults.
    #[arg(long, default_value = "/etc/hull/cri.toml")]
    config: PathBuf,
    /// Volatile state: namespace pins, pod /dev/shm, OCI runtime state.
    #[arg(long, default_value = "/run/hull-cri")]
    run: PathBuf,
    /// The OCI runtime of the default handler ("" and "runc"); default: `hull` beside
    /// this binary, else on PATH.
    #[arg(long)]
    runtime: Option<PathBuf>,
}

/// A helper binary installed beside hull-cri (the monitor, pinns, hull), else `name` for
/// a PATH lookup.
fn beside_self(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hull_cri=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hull-cri: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hull-cri: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let store = Arc::new(Store::open(&args.root)?);
    let collected = store.gc()?;
    let snapshots = Arc::new(Snapshots::open(&args.root)?);
    // Before recovery: a registry's unreadable CA or client key stops the start here.
    let puller = Arc::new(Puller::new(
        store.clone(),
        snapshots.clone(),
        config.clone(),
    )?);
    let paths = Paths {
        root: args.root.clone(),
        run: args.run.clone(),
        monitor: beside_self("hull-cri-monitor"),
        pinns: beside_self("hull-cri-pinns"),
    };
    let handlers = Handlers::new(
        &config.runtimes,
        args.runtime.clone().unwrap_or_else(|| beside_self("hull")),
        Some(beside_self("hull-sandbox")).filter(|p| p.exists()),
        &args.run.join("runtime"),
    );
    // Before the runtime server reads the host's facts, so RuntimeDefault finds it loaded.
    let host = hull_cri::spec::HostFacts::detect();
    match hull_cri::apparmor::ensure_default(
        &host,
        std::path::Path::new(hull_cri::apparmor::PARSER),
    )
    .await
    {
        Ok(hull_cri::apparmor::Outcome::Loaded) => {
            tracing::info!("AppArmor profile hull-default loaded")
        }
        Ok(_) => {}
        // Not fatal: pods asking for RuntimeDefault then fail, saying the profile is missing.
        Err(e) => tracing::warn!("{}", hull_cri::monitor::chain(&e)),
    }
    let cni = Cni::new(
        config.cni.conf_dir.clone(),
        config.cni.bin_dirs.clone(),
        args.root.join("cni"),
    );
    let runtime = RuntimeServer::new(paths, store.clone(), snapshots.clone(), handlers, cni)
        .await
        .map_err(|s| anyhow::anyhow!("recovering pods and containers: {}", s.message()))?;
    let runtime = start_streaming(runtime, &config.streaming.address).await?;
    // Every snapshot neither an image nor a container names is garbage, including those of
    // pulls interrupted by a crash.
    let snapshots_collected = snapshots.gc(&store, &runtime.layers_in_use())?;
    tracing::info!(root = %args.root.display(), images = store.list().len(), collected, snapshots_collected, "image store open");

    let dir = args
        .listen
        .parent()
        .context("--listen has no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    match std::fs::remove_file(&args.listen) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing stale {}", args.listen.display()));
        }
        _ => {}
    }
    let listener = UnixListener::bind(&args.listen)
        .with_context(|| format!("binding {}", args.listen.display()))?;
    std::fs::set_permissions(&args.listen, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", args.listen.display()))?;
    tracing::info!(socket = %args.listen.display(), "serving CRI v1");

    let in_use = runtime.clone();
    let image_server = ImageServer::new(store, snapshots, puller)
        .keep_layers(Arc::new(move || in_use.layers_in_use()));
    let images = ImageServiceServer::new(image_server)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let runtime = RuntimeServiceServer::new(runtime)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let result = tonic::transport::Server::builder()
        .add_service(runtime)
        .add_service(images)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown())
        .await;
    let _ = std::fs::remove_file(&args.listen);
    result.context("gRPC server")
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Starts the streaming server (Exec, Attach, PortForward URLs) and hands its URL issuer to
/// the runtime service.
async fn start_streaming(
    runtime: RuntimeServer,
    address: &std::net::SocketAddr,
) -> anyhow::Result<RuntimeServer> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the streaming server on {address}"))?;
    let addr = listener.local_addr().context("streaming server address")?;
    let tokens = std::sync::Arc::new(hull_cri::stream::Tokens::default());
    let backend: std::sync::Arc<dyn hull_cri::stream::Backend> =
        std::sync::Arc::new(hull_cri::server::RuntimeBackend::new(&runtime));
    tokio::spawn(hull_cri::stream::serve(listener, tokens.clone(), backend));
    tracing::info!(address = %addr, "streaming server");
    let urls = hull_cri::stream::StreamUrls::new(addr, tokens);
    Ok(runtime.with_streaming(std::sync::Arc::new(urls)))
}
