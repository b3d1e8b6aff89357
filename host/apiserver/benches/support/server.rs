//! The embedded API server a benchmark talks to: in the benchmark's process (the default), or with
//! `CAPSTAN_BENCH_SERVER=process` a `capstan apiserver` process of its own, as a cluster's API
//! server is. Then the benchmark's CPU time is its client's alone, the server's is read apart, and
//! `CAPSTAN_BENCH_SERVER_BIN` names the `capstan` binary that serves, so that the servers of two
//! builds can be compared under the same client. `CAPSTAN_BENCH_SERVER_LOG` names a file for the
//! server process's log (with `RUST_LOG=capstan_apiserver::handler=debug`, every request).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use capstan_apiserver::RunningServer;

/// A running server and how to reach it.
pub enum Server {
    InProcess(RunningServer),
    Process(std::process::Child, tempfile::TempDir),
}

impl Server {
    /// Whether `CAPSTAN_BENCH_SERVER=process` asks for a server process of its own.
    pub fn wanted_as_process() -> bool {
        std::env::var("CAPSTAN_BENCH_SERVER").as_deref() == Ok("process")
    }

    /// Starts the server: on loopback in this process unless a process is wanted, which runs
    /// `CAPSTAN_BENCH_SERVER_BIN`, or `default_binary` when that is unset.
    pub async fn start(default_binary: Option<&str>) -> (Self, kube::Client) {
        if !Self::wanted_as_process() {
            let server = capstan_apiserver::ApiServer::builder()
                .build()
                .expect("the embedded server builds")
                .start_loopback()
                .await
                .expect("the embedded server starts");
            let client = server.client().expect("client of the embedded server");
            return (Self::InProcess(server), client);
        }
        let binary = std::env::var_os("CAPSTAN_BENCH_SERVER_BIN")
            .or_else(|| default_binary.map(OsString::from))
            .expect(
                "CAPSTAN_BENCH_SERVER=process needs CAPSTAN_BENCH_SERVER_BIN, a capstan binary",
            );
        let dir = tempfile::tempdir().expect("temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        let child = std::process::Command::new(&binary)
            .args(["apiserver", "--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(match std::env::var_os("CAPSTAN_BENCH_SERVER_LOG") {
                Some(path) => std::fs::File::create(path).expect("server log").into(),
                None => std::process::Stdio::null(),
            })
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.to_string_lossy()));
        let end = Instant::now() + Duration::from_secs(20);
        let config = loop {
            if let Ok(k) = kube::config::Kubeconfig::read_from(&kubeconfig)
                && let Ok(c) = kube::Config::from_custom_kubeconfig(
                    k,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
            {
                break c;
            }
            assert!(Instant::now() < end, "capstan apiserver did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let client = kube::Client::try_from(config).expect("client of the server process");
        (Self::Process(child, dir), client)
    }

    /// CPU time the server's process has used, when it is a process of its own.
    pub fn cpu_time(&self) -> Option<Duration> {
        match self {
            Self::InProcess(_) => None,
            Self::Process(child, _) => super::cpu::process_cpu_time(child.id()),
        }
    }

    /// The server process's resident set size, when it is a process of its own.
    pub fn rss_bytes(&self) -> Option<u64> {
        match self {
            Self::InProcess(_) => None,
            Self::Process(child, _) => super::memory::rss_bytes_of(&child.id().to_string()),
        }
    }

    pub async fn shutdown(self) {
        match self {
            Self::InProcess(server) => server.shutdown().await.expect("shutdown"),
            Self::Process(mut child, _dir) => {
                child.kill().expect("kill the server process");
                child.wait().expect("wait for the server process");
            }
        }
    }
}
