//! The `capstan` command: validate plugins, print their RBAC, and run the host.

/// mimalloc: the reconcile path allocates and frees per object on every worker thread, where
/// glibc's malloc was a third of the reconcile benchmark's profile (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use capstan::plugin::{CompileTiers, Limits, Runtime, RuntimeConfig};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Capstan: Kubernetes controllers as sandboxed WebAssembly components.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter, e.g. `info` or `capstan=debug` (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info")]
    log: String,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Sandbox limits applied to every plugin call (over the configuration file's `defaults`).
#[derive(clap::Args, Clone, Copy)]
struct LimitArgs {
    /// Wall-clock deadline of one plugin call, in milliseconds [default: 5000].
    #[arg(long)]
    call_timeout_ms: Option<u64>,
    /// Linear memory one plugin instance may grow to, in MiB [default: 64].
    #[arg(long)]
    memory_mib: Option<usize>,
    /// Largest JSON text, status or log record a call may hand the host, in KiB [default: 4096].
    #[arg(long)]
    max_value_kib: Option<usize>,
}

impl LimitArgs {
    fn over(self, base: Limits) -> Limits {
        let mut l = base;
        if let Some(ms) = self.call_timeout_ms {
            l = l.call_timeout(std::time::Duration::from_millis(ms));
        }
        if let Some(mib) = self.memory_mib {
            l = l.memory_bytes(mib << 20);
        }
        if let Some(kib) = self.max_value_kib {
            l = l.max_value_bytes(kib << 10);
        }
        l
    }

    fn limits(self) -> Limits {
        self.over(Limits::default())
    }
}

/// What `capstan run` takes.
#[derive(clap::Args)]
struct RunOpts {
    /// Directory of `*.wasm` plugins.
    #[arg(long)]
    plugins: PathBuf,
    /// Directory of YAML manifests applied at start (CRDs first).
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// Use the cluster of this kubeconfig.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// With the embedded API server: write its kubeconfig here, for kubectl (mode 0600: it
    /// holds the server's bearer token).
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// With the embedded API server: persist its state here.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// With the embedded API server: simulate workloads, as kube-controller-manager and a kubelet
    /// would: Deployments get ReplicaSets and Pods, and Pods become Running and Ready a second
    /// after their creation (so `kubectl rollout status` finishes).
    #[arg(long)]
    simulate_workloads: bool,
    /// Address of /healthz, /readyz and /plugins.
    #[arg(long, default_value = "127.0.0.1:9090")]
    http_listen: std::net::SocketAddr,
    /// Precompiled cache directory (default: $XDG_CACHE_HOME/capstan or ~/.cache/capstan).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Reconciles running at once per plugin.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Configuration file (YAML): default limits, and per plugin limits, WASI grants,
    /// Kubernetes access and reconcile settings. See docs/CONFIGURATION.md.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load the plugins once; do not watch the directory for changes.
    #[arg(long)]
    no_hot_reload: bool,
    /// Compile new plugins with the baseline compiler first, serving at once, and swap in the
    /// optimized version when it is ready (`tiered`); or compile once, optimized
    /// (`optimized-only`). Overrides the configuration file's `runtime.compileTiers`.
    #[arg(long, value_enum)]
    compile_tiers: Option<CompileTiers>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Namespace of the host's and the plugins' ServiceAccounts [default: the pod's namespace in a
    /// cluster, else capstan-system].
    #[arg(long)]
    namespace: Option<String>,
    /// Act for each plugin as its ServiceAccount `capstan-plugin-<name>` (Kubernetes
    /// impersonation), so the API server enforces each plugin's RBAC too. `auto`: on in a pod.
    #[arg(long, value_enum, default_value_t = Impersonate::Auto)]
    impersonate: Impersonate,
    /// Where the pod's ServiceAccount token, CA bundle and namespace are mounted (in a pod).
    #[arg(long, default_value = capstan::cluster::SERVICE_ACCOUNT_DIR)]
    service_account_dir: PathBuf,
    /// Seconds shutdown waits for reconciles in flight (keep it below the pod's
    /// terminationGracePeriodSeconds, 30 by default).
    #[arg(long, default_value_t = 20)]
    shutdown_timeout_seconds: u64,
    #[command(flatten)]
    leader: LeaderArgs,
    #[command(flatten)]
    shard: ShardArgs,
}

/// Sharding: several replicas, all serving, each on its share of the objects (docs/SCALING.md).
/// The Lease timings and the identity are the `--leader-elect-*` flags'.
#[derive(clap::Args)]
struct ShardArgs {
    /// Work only on this replica's shard of the objects: replicas holding shard Leases of one
    /// ring split the objects by a consistent hash of their uids (exclusive with --leader-elect).
    #[arg(long, conflicts_with = "leader_elect")]
    sharding: bool,
    /// Name of the ring (a DNS label); the shard Leases are labelled with it.
    #[arg(long, default_value = capstan::shard::DEFAULT_RING, requires = "sharding")]
    shard_ring: String,
    /// Namespace of the shard Leases [default: --namespace, else the pod's, else capstan-system].
    #[arg(long, requires = "sharding")]
    shard_lease_namespace: Option<String>,
    /// Append each reconcile's interval (`identity uid start end`, monotonic nanoseconds) and
    /// each handler event delivered (`identity event kind uid resourceVersion`) to this file:
    /// proof that no object was reconciled by two replicas at once, and no change lost.
    #[arg(long, requires = "sharding")]
    shard_audit_log: Option<PathBuf>,
}

/// Leader election: several replicas, one serving (docs/SCALING.md).
#[derive(clap::Args)]
struct LeaderArgs {
    /// Serve only while holding a Lease: of several replicas one reconciles and dispatches, the
    /// others stand by with their plugins loaded and take over when it stops renewing.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = capstan::leader::DEFAULT_LEASE_NAME)]
    leader_elect_lease_name: String,
    /// Namespace of the Lease [default: --namespace, else the pod's, else capstan-system].
    #[arg(long)]
    leader_elect_namespace: Option<String>,
    /// Seconds a standby waits, after it last saw the Lease renewed, before it takes it.
    #[arg(long, default_value_t = 15)]
    leader_elect_lease_duration_seconds: u32,
    /// Seconds the leader keeps trying to renew before it stops serving (and writing); below the
    /// lease duration.
    #[arg(long, default_value_t = 10.0)]
    leader_elect_renew_deadline_seconds: f64,
    /// Seconds between tries to take or renew the Lease.
    #[arg(long, default_value_t = 2.0)]
    leader_elect_retry_period_seconds: f64,
    /// This replica's identity in the Lease [default: $HOSTNAME_<random>].
    #[arg(long)]
    leader_elect_identity: Option<String>,
    /// Whether a standby keeps the informers of its plugins' kinds running (warm: faster
    /// takeover, the leader's memory and watches on every replica).
    #[arg(long, value_enum, default_value_t = StandbyInformers::Warm)]
    leader_elect_standby_informers: StandbyInformers,
}

/// Whether a standby's informers run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StandbyInformers {
    /// Running: the caches are full when the replica takes over.
    Warm,
    /// Started only when the replica takes over.
    Cold,
}

impl LeaderArgs {
    /// The election to run, if `--leader-elect`, with its Lease in `namespace` unless one is given.
    fn election(&self, namespace: &str) -> anyhow::Result<Option<capstan::leader::ElectionConfig>> {
        if !self.leader_elect {
            return Ok(None);
        }
        self.lease(namespace).map(Some)
    }

    /// The sharding to run, if `--sharding`: the ring's Leases in `namespace` unless one is given,
    /// with the leader election timings and identity.
    fn sharding(
        &self,
        shard: &ShardArgs,
        namespace: &str,
    ) -> anyhow::Result<Option<capstan::shard::ShardConfig>> {
        if !shard.sharding {
            return Ok(None);
        }
        let lease = self
            .lease(shard.shard_lease_namespace.as_deref().unwrap_or(namespace))?
            .name(&shard.shard_ring);
        let config = capstan::shard::ShardConfig { lease };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
        Ok(Some(config))
    }

    /// The Lease settings of the flags, in `namespace` unless `--leader-elect-namespace` is given.
    fn lease(&self, namespace: &str) -> anyhow::Result<capstan::leader::ElectionConfig> {
        let seconds = |flag: &str, s: f64| {
            std::time::Duration::try_from_secs_f64(s)
                .with_context(|| format!("--{flag} {s} is not a duration in seconds"))
        };
        let mut config = capstan::leader::ElectionConfig::new(
            self.leader_elect_namespace.as_deref().unwrap_or(namespace),
        )
        .name(&self.leader_elect_lease_name)
        .timing(
            std::time::Duration::from_secs(self.leader_elect_lease_duration_seconds.into()),
            seconds(
                "leader-elect-renew-deadline-seconds",
                self.leader_elect_renew_deadline_seconds,
            )?,
            seconds(
                "leader-elect-retry-period-seconds",
                self.leader_elect_retry_period_seconds,
            )?,
        );
        if let Some(identity) = &self.leader_elect_identity {
            config = config.identity(identity);
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
        Ok(config)
    }
}

/// Whether requests on a plugin's behalf impersonate the plugin's ServiceAccount.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Impersonate {
    /// On when running in a pod (in-cluster configuration), off otherwise.
    Auto,
    /// Always.
    On,
    /// Never: every request carries the host's identity.
    Off,
}

/// How log lines are written.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate plugins: print each one's world, contract version and manifest.
    ///
    /// Exits non-zero, with a one-line reason per rejected file, if any file is not a valid plugin.
    Check {
        /// Plugin files, or directories whose `*.wasm` files are checked.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Precompiled cache directory (default: $XDG_CACHE_HOME/capstan or ~/.cache/capstan).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Compile without reading or writing the precompiled cache.
        #[arg(long, conflicts_with = "cache_dir")]
        no_cache: bool,
        /// Print only the manifest each file carries in its `capstan:manifest` section, without
        /// compiling or running anything (see `capstan annotate`); cache options do not apply.
        #[arg(long)]
        embedded: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Embed a plugin's manifest in its `capstan:manifest` custom section, so that tools (and
    /// `capstan check --embedded`) read it without running the plugin.
    ///
    /// The plugin is loaded and validated first; the manifest embedded is what its `describe`
    /// returns. At load, a plugin whose embedded manifest differs from `describe` is refused.
    Annotate {
        /// The plugin file.
        input: PathBuf,
        /// Where to write the annotated plugin (default: replace the input).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Run the host: load plugins, reconcile and handle events until SIGINT or SIGTERM.
    ///
    /// With `--kubeconfig` (or in a pod) it uses that cluster; otherwise it starts the embedded API
    /// server on a free loopback port.
    Run(Box<RunOpts>),
    /// Print least-privilege RBAC for the host and its plugins, as a multi-document YAML stream
    /// for `kubectl apply -f -`: the host's ServiceAccount and roles, and per plugin a
    /// ServiceAccount with exactly what the host lets it do (docs/DEPLOY.md explains each rule).
    ///
    /// Fails, printing nothing, if a plugin file is rejected.
    Rbac {
        /// Directory of `*.wasm` plugins, as `capstan run --plugins` gets it; without it, only the
        /// host's base (what every install needs).
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// The configuration file `capstan run --config` gets: it narrows what plugins may do.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Namespace of the host's and the plugins' ServiceAccounts.
        #[arg(long, default_value = capstan::identity::DEFAULT_NAMESPACE)]
        namespace: String,
        /// Directory of YAML manifests whose CustomResourceDefinitions name custom kinds'
        /// resources (a kind named by none is guessed, and the output says so).
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Let the host apply the objects of `--manifests` (as `capstan run --manifests` does),
        /// each by name.
        #[arg(long, requires = "manifests")]
        apply_manifests: bool,
        /// Leave out the host's base (its ServiceAccount; Events; Leases), which deploy/base has.
        #[arg(long)]
        omit_base: bool,
        /// Precompiled cache directory (default: $XDG_CACHE_HOME/capstan or ~/.cache/capstan).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Compile without reading or writing the precompiled cache.
        #[arg(long, conflicts_with = "cache_dir")]
        no_cache: bool,
    },
    /// Write a new plugin project into ./NAME: a handler, a reconciler or both, in Rust, Python
    /// or JavaScript, buildable and with a unit test; prints the next three commands.
    New {
        /// The plugin's name (a DNS-1123 label), and the project directory's.
        name: String,
        /// What the plugin does.
        #[arg(long, value_enum)]
        kind: capstan::scaffold::Kind,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: capstan::scaffold::Lang,
        /// Rust: depend on the capstan-sdk at this path [default: the checkout this binary was
        /// built from, else the registry version].
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Run a reconciler (or a handler) once, offline, in the real sandbox: print the objects the
    /// host would apply, the status it would write and what it would refuse (docs/PLUGINS.md,
    /// "Testing a plugin offline").
    ///
    /// Exit codes: 0 rendered; 1 `--diff` found differences or `--check` a failing property; 2 the
    /// plugin failed; 3 the host would refuse the plan; 4 unreadable input.
    Render(Box<capstan::render::RenderArgs>),
    /// Run the embedded Kubernetes API server alone (no cluster needed).
    Apiserver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: std::net::SocketAddr,
        /// Write a kubeconfig for this server here (usable by `kubectl --kubeconfig FILE`; mode
        /// 0600: it holds the server's bearer token).
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
        /// Persist state here; without it, state is in memory.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// How requests are authorized: always-allow (every authenticated request) or rbac
        /// (Roles, ClusterRoles and their bindings, as kube-apiserver's RBAC authorizer).
        #[arg(long, default_value = "always-allow")]
        authorization: capstan_apiserver::authz::Mode,
        /// Also accept the static token users of this CSV file (token,user,uid,"group1,group2"),
        /// as kube-apiserver's --token-auth-file.
        #[arg(long)]
        token_auth_file: Option<PathBuf>,
        /// Simulate workloads, as kube-controller-manager and a kubelet would: Deployments get
        /// ReplicaSets and Pods, and Pods become Running and Ready a second after their creation.
        #[arg(long)]
        simulate_workloads: bool,
        /// Refuse creates and updates that would take the stored objects past this many bytes of
        /// JSON (500 "etcdserver: mvcc: database space exceeded", as etcd's quota); deletions pass.
        #[arg(long, default_value_t = capstan_apiserver::store::DEFAULT_QUOTA_BYTES)]
        quota_backend_bytes: u64,
    },
}

async fn run(args: RunOpts) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => capstan::config::Config::load(path)
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?,
        None => capstan::config::Config::default(),
    };
    let mut embedded = None;
    let mut pod_namespace = None;
    let base = if let Some(path) = &args.kubeconfig {
        let kc = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?
    } else if capstan::cluster::in_pod() {
        let cluster = capstan::cluster::InCluster::load(&args.service_account_dir)
            .await
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
        tracing::info!(url = %cluster.config.cluster_url, namespace = %cluster.namespace, "in-cluster configuration");
        pod_namespace = Some(cluster.namespace);
        cluster.config
    } else {
        let server = capstan_apiserver::ApiServer::builder()
            .state_dir(args.state_dir.clone())
            .simulate_workloads(
                args.simulate_workloads
                    .then_some(capstan_apiserver::workloads::DEFAULT_POD_READY_DELAY),
            )
            .build()?
            .start_loopback()
            .await?;
        tracing::info!(url = %server.url(), "no kubeconfig: embedded API server started");
        if let Some(path) = &args.kubeconfig_out {
            server.write_kubeconfig(path)?;
            tracing::info!(path = %path.display(), "kubeconfig written: kubectl --kubeconfig {}", path.display());
        }
        let config = server.kube_config()?;
        embedded = Some(server);
        config
    };
    let client = kube::Client::try_from(base.clone())?;
    let identities = capstan::identity::Identities::new(
        args.namespace
            .or_else(|| pod_namespace.clone())
            .unwrap_or_else(|| capstan::identity::DEFAULT_NAMESPACE.to_owned()),
    );
    let leader_election = args.leader.election(identities.namespace())?;
    let sharding = args.leader.sharding(&args.shard, identities.namespace())?;
    let impersonation = match args.impersonate {
        Impersonate::On => true,
        Impersonate::Off => false,
        Impersonate::Auto => pod_namespace.is_some(),
    }
    .then(|| {
        tracing::info!(
            namespace = identities.namespace(),
            "acting for each plugin as its ServiceAccount capstan-plugin-<name>"
        );
        capstan::identity::Impersonation::new(base, identities)
    });
    // Command-line limits win over the configuration file's defaults.
    let limits = args.limits.over(file.default_limits(&Limits::default()));
    let mut file = file;
    file.defaults = capstan::config::LimitsSection::default();
    if let Some(tiers) = args.compile_tiers {
        file.runtime.compile_tiers = tiers;
    }
    let config = capstan::runner::RunConfig {
        plugins: args.plugins,
        manifests: args.manifests,
        cache_dir: args.cache_dir.or_else(default_cache_dir),
        http_listen: Some(args.http_listen),
        limits,
        controller: capstan::reconcile::ControllerConfig {
            concurrency: args.concurrency,
            ..Default::default()
        },
        config: file,
        hot_reload: !args.no_hot_reload,
        impersonation,
        shutdown_timeout: std::time::Duration::from_secs(args.shutdown_timeout_seconds),
        leader_election,
        warm_standby: args.leader.leader_elect_standby_informers == StandbyInformers::Warm,
        sharding,
        shard_audit: args.shard.shard_audit_log.clone(),
    };
    let result = capstan::runner::run(config, client, shutdown_signal()).await;
    if let Some(server) = embedded {
        server.shutdown().await?;
    }
    result.map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
    Ok(ExitCode::SUCCESS)
}

struct RbacArgs {
    plugins: Option<PathBuf>,
    config: Option<PathBuf>,
    namespace: String,
    manifests: Option<PathBuf>,
    apply_manifests: bool,
    omit_base: bool,
    cache_dir: Option<PathBuf>,
}

/// `capstan rbac`: load the plugins as `capstan run` would (with the configuration's grants),
/// derive their RBAC, print it.
async fn rbac(args: RbacArgs) -> anyhow::Result<ExitCode> {
    use capstan::rbac::{Rbac, Resources};
    capstan_apiserver::validation::dns1123_label(&args.namespace)
        .with_context(|| format!("--namespace {:?} is not a namespace name", args.namespace))?;
    // The configuration is the pod's: its WASI directories need not exist here, and WASI grants
    // have nothing to do with RBAC.
    let config = match &args.config {
        Some(path) => capstan::config::Config::load_for_access(path)
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?,
        None => capstan::config::Config::default(),
    };
    let mut resources = Resources::new();
    let mut applied = Vec::new();
    if let Some(dir) = &args.manifests {
        let objects = capstan::manifests::read_dir(dir)
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
        resources = resources
            .with_crds_in(&objects)
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
        if args.apply_manifests {
            applied = objects;
        }
    }
    let mut builder = Rbac::builder(capstan::identity::Identities::new(&args.namespace))
        .resources(resources)
        .base(!args.omit_base)
        .applies(applied);
    if let Some(dir) = &args.plugins {
        let plugins = capstan::rbac::plugins_in(dir, &config, args.cache_dir.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
        for plugin in plugins {
            builder = builder.plugin(plugin);
        }
    }
    print!("{}", builder.build().to_yaml()?);
    Ok(ExitCode::SUCCESS)
}

async fn apiserver(
    listen: std::net::SocketAddr,
    kubeconfig_out: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    authorization: capstan_apiserver::authz::Mode,
    token_auth_file: Option<PathBuf>,
    simulate_workloads: bool,
    quota_backend_bytes: u64,
) -> anyhow::Result<ExitCode> {
    let server = capstan_apiserver::ApiServer::builder()
        .state_dir(state_dir)
        .quota_bytes(quota_backend_bytes)
        .simulate_workloads(
            simulate_workloads.then_some(capstan_apiserver::workloads::DEFAULT_POD_READY_DELAY),
        )
        .authorization(authorization)
        .token_auth_file(token_auth_file)
        .build()?
        .start(listen)
        .await?;
    tracing::info!(url = %server.url(), "embedded API server listening");
    if let Some(path) = kubeconfig_out {
        server.write_kubeconfig(&path)?;
        tracing::info!(path = %path.display(), "kubeconfig written");
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// `capstan new`: write the project into the current directory and print what to run next.
fn new_project(
    name: String,
    kind: capstan::scaffold::Kind,
    lang: capstan::scaffold::Lang,
    sdk_path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use capstan::scaffold::{Options, Sdk};
    let mut options = Options::new(name, kind).lang(lang);
    if let Some(path) = sdk_path {
        let path = path
            .canonicalize()
            .with_context(|| format!("--sdk-path {}", path.display()))?;
        options = options.sdk(Sdk::Path(path));
    }
    let project = capstan::scaffold::create(Path::new("."), &options)
        .map_err(|e| anyhow::anyhow!(capstan::error_chain(&e)))?;
    println!(
        "created {} ({} files, world {}); next:",
        project.dir.display(),
        project.files.len(),
        kind.world()
    );
    for command in &project.next {
        println!("  {command}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("capstan").join("precompiled"))
}

fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(
                capstan::plugin::wasm_files(p)
                    .with_context(|| format!("cannot read directory {}", p.display()))?,
            );
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// `capstan check --embedded`: the manifests the files carry, read without running them.
fn check_embedded(paths: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in expand(paths)? {
        let read = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(capstan::plugin::embedded_manifest(&bytes)?));
        match read {
            Ok(manifest) if json => println!(
                "{}",
                serde_json::json!({ "path": path, "manifest": manifest })
            ),
            Ok(Some(m)) => println!(
                "{}: {} {} (embedded)\n{}",
                path.display(),
                m.name,
                m.version,
                serde_json::to_string_pretty(&m)?
            ),
            Ok(None) => println!(
                "{}: no embedded manifest (embed one with `capstan annotate`)",
                path.display()
            ),
            Err(e) => {
                failed = true;
                eprintln!("rejected {}: {}", path.display(), capstan::error_chain(&*e));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `capstan annotate`: load the plugin, then write it with its manifest embedded.
async fn annotate(input: &Path, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(RuntimeConfig::one_shot())?;
    let plugin = match runtime.load(input).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rejected {}", e.one_line());
            return Ok(ExitCode::FAILURE);
        }
    };
    let bytes = std::fs::read(input)?;
    let annotated = capstan::plugin::embed_manifest(&bytes, plugin.declared_manifest())?;
    let output = output.unwrap_or(input);
    let tmp = output.with_extension("wasm.tmp");
    std::fs::write(&tmp, &annotated)?;
    std::fs::rename(&tmp, output)?;
    println!(
        "annotated {} {} -> {}",
        plugin.name(),
        plugin.info().version,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(
    paths: &[PathBuf],
    json: bool,
    cache_dir: Option<PathBuf>,
    limits: Limits,
) -> anyhow::Result<ExitCode> {
    let mut config = RuntimeConfig::one_shot().limits(limits);
    if let Some(dir) = cache_dir {
        config = config.cache_dir(dir);
    }
    let runtime = Runtime::new(config)?;
    let mut failed = false;
    for path in expand(paths)? {
        match runtime.load(Path::new(&path)).await {
            Ok(plugin) => print_plugin(&plugin, json)?,
            Err(e) => {
                failed = true;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({ "path": path, "error": e.one_line() })
                    );
                } else {
                    eprintln!("rejected {}", e.one_line());
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_plugin(plugin: &capstan::plugin::Plugin, json: bool) -> anyhow::Result<()> {
    let (info, m) = (plugin.info(), plugin.manifest());
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "plugin": info, "manifest": m }))?
        );
        return Ok(());
    }
    let kinds = |ks: &[capstan::contract::Gvk]| {
        ks.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "ok {} {} ({})",
        info.name,
        info.version,
        info.path.display()
    );
    println!(
        "   world: {}  contract: capstan:controller@{}  {:?}",
        info.world, info.contract, info.origin
    );
    println!("   sha256: {}", info.hash);
    println!("   watches: {}", kinds(&m.watches));
    if !m.owns.is_empty() {
        println!("   owns: {}", kinds(&m.owns));
    }
    if !m.events.is_everything() {
        println!("   events: {}", m.events);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check {
                paths,
                json,
                cache_dir,
                no_cache,
                embedded,
                limits,
            } => {
                if embedded {
                    return check_embedded(&paths, json);
                }
                let cache = if no_cache {
                    None
                } else {
                    cache_dir.or_else(default_cache_dir)
                };
                check(&paths, json, cache, limits.limits()).await
            }
            Command::Annotate { input, output } => annotate(&input, output.as_deref()).await,
            Command::Run(opts) => run(*opts).await,
            Command::Render(mut args) => {
                args.cache_dir = default_cache_dir();
                Ok(capstan::render::run(*args).await)
            }
            Command::Rbac {
                plugins,
                config,
                namespace,
                manifests,
                apply_manifests,
                omit_base,
                cache_dir,
                no_cache,
            } => {
                let cache_dir = if no_cache {
                    None
                } else {
                    cache_dir.or_else(default_cache_dir)
                };
                rbac(RbacArgs {
                    plugins,
                    config,
                    namespace,
                    manifests,
                    apply_manifests,
                    omit_base,
                    cache_dir,
                })
                .await
            }
            Command::Apiserver {
                listen,
                kubeconfig_out,
                state_dir,
                authorization,
                token_auth_file,
                simulate_workloads,
                quota_backend_bytes,
            } => {
                apiserver(
                    listen,
                    kubeconfig_out,
                    state_dir,
                    authorization,
                    token_auth_file,
                    simulate_workloads,
                    quota_backend_bytes,
                )
                .await
            }
            Command::New {
                name,
                kind,
                lang,
                sdk_path,
            } => new_project(name, kind, lang, sdk_path),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
