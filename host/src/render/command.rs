//! The `capstan render` command line: its arguments, reading its inputs, and its exit codes
//! ([`exit`]).

use super::check::{CheckOptions, check};
use super::output::{Section, diff, handled_yaml, to_yaml};
use super::{EventKind, Observed, RenderError, Settings, handle, reconcile};
use crate::config::{Config, ConfigError};
use crate::manifests::ManifestError;
use crate::plugin::{Limits, LoadError, Runtime, RuntimeConfig, RuntimeError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit codes of `capstan render`.
pub mod exit {
    /// Rendered; no refusal; with `--diff`, nothing differs; with `--check`, every property holds.
    pub const OK: u8 = 0;
    /// With `--diff`: something differs (as `kubectl diff`); with `--check`: a property fails.
    pub const DIFFERS: u8 = 1;
    /// The plugin failed: it was rejected at load, or a call trapped, timed out or returned what
    /// the host refuses.
    pub const PLUGIN: u8 = 2;
    /// The host would refuse the plan (nothing of it applied).
    pub const REFUSED: u8 = 3;
    /// The inputs could not be read (files, YAML, configuration).
    pub const INPUT: u8 = 4;
}

/// Run a reconciler (or a handler) once, offline, in the real sandbox, and print what the host
/// would do.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The plugin (a `.wasm` component).
    pub plugin: PathBuf,
    /// The object to reconcile (or to hand the handler): a YAML file with one object.
    #[arg(long)]
    pub object: PathBuf,
    /// What the cluster holds, served to the plugin's cache reads and to the host's checks: YAML
    /// files, or directories of them (`*.yaml`, `*.yml`); CustomResourceDefinitions among them
    /// make their kinds known.
    #[arg(long, num_args = 1..)]
    pub observed: Vec<PathBuf>,
    /// The configuration file `capstan run --config` gets (limits, grants, scope).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What to print: the objects (`plan`), the status report (`status`), or both (`all`: the
    /// report as YAML comments after the objects).
    #[arg(long, value_enum, default_value_t = Section::All)]
    pub output: Section,
    /// Print a unified diff per object between its observed state and the rendered one; exit 1
    /// when something differs (as `kubectl diff`).
    #[arg(long, conflicts_with = "check")]
    pub diff: bool,
    /// Check the plan contract (deterministic, idempotent, converges); exit 1 naming the property
    /// and the object when one fails.
    #[arg(long)]
    pub check: bool,
    /// Hand the object to the plugin's handler as this event (the default for a plugin that only
    /// handles: `added`).
    #[arg(long, value_enum)]
    pub event: Option<EventKind>,
    /// Precompiled cache directory; none: compile without a cache.
    #[arg(skip)]
    pub cache_dir: Option<PathBuf>,
    /// Compile without reading or writing the precompiled cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Why the inputs could not be read.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error("cannot read the configuration")]
    Config(#[source] ConfigError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}: expected exactly one object")]
    NotOne(PathBuf),
    #[error("cannot start the sandbox")]
    Runtime(#[source] RuntimeError),
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Output(#[from] super::OutputError),
}

fn objects_in(path: &Path) -> Result<Vec<Value>, ManifestError> {
    let objects = if path.is_dir() {
        crate::manifests::read_dir(path)?
    } else {
        crate::manifests::read_file(path)?
    };
    Ok(objects
        .into_iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

fn code(e: &InputError) -> u8 {
    match e {
        InputError::Rejected(_)
        | InputError::Render(RenderError::Plugin { .. } | RenderError::Role { .. }) => exit::PLUGIN,
        _ => exit::INPUT,
    }
}

/// `capstan render`: print the render (or diff, or check) to stdout, errors to stderr, and exit
/// with one of the [`exit`] codes. The plugin's logs go to the host's log (stderr).
pub async fn run(args: RenderArgs) -> ExitCode {
    match render(&args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            ExitCode::from(code(&e))
        }
    }
}

async fn render(args: &RenderArgs) -> Result<u8, InputError> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(InputError::Config)?,
        None => Config::default(),
    };
    let mut objects = objects_in(&args.object)?;
    let object = match (objects.pop(), objects.is_empty()) {
        (Some(o), true) => o,
        _ => return Err(InputError::NotOne(args.object.clone())),
    };
    let mut observed = Vec::new();
    for path in &args.observed {
        observed.extend(objects_in(path)?);
    }
    let observed = Observed::new(observed).map_err(RenderError::from)?;
    let limits = config.default_limits(&Limits::default());
    let mut rc = RuntimeConfig::one_shot().limits(limits.clone());
    if let Some(bytes) = config.max_plugin_bytes() {
        rc = rc.max_plugin_bytes(bytes);
    }
    for entry in config.grant_entries(&limits) {
        rc = rc.grant(entry);
    }
    if let (Some(dir), false) = (&args.cache_dir, args.no_cache) {
        rc = rc.cache_dir(dir);
    }
    let runtime = Runtime::new(rc).map_err(InputError::Runtime)?;
    let plugin = runtime
        .load(&args.plugin)
        .await
        .map_err(|e: LoadError| InputError::Rejected(format!("rejected {}", e.one_line())))?;
    let handles = plugin.info().world.handles();
    if args.event.is_some() || (handles && !plugin.info().world.reconciles()) {
        let event = args.event.unwrap_or(EventKind::Added);
        let handled = handle(&plugin, &object, event, &observed).await?;
        print!("{}", handled_yaml(&handled)?);
        return Ok(exit::OK);
    }
    let settings = Settings::of(&plugin, &config);
    if args.check {
        let report = check(
            &plugin,
            &object,
            &observed,
            &settings,
            CheckOptions::default(),
        )
        .await?;
        for v in &report.violations {
            println!("violation: {v}");
        }
        if report.passed() {
            println!(
                "check passed for {}: deterministic, idempotent, converges (Ready after {} reconcile(s) with ready children)",
                report.first.object,
                report.ready_after.unwrap_or_default()
            );
            return Ok(exit::OK);
        }
        return Ok(exit::DIFFERS);
    }
    let rendered = reconcile(&plugin, &object, &observed, &settings).await?;
    for r in &rendered.refusals {
        eprintln!("refused: {r}");
    }
    let refused = !rendered.refusals.is_empty();
    if args.diff {
        let mut with_object = observed.clone();
        let mut prepared = object.clone();
        prepared["metadata"]["uid"] = serde_json::json!(rendered.object.uid);
        with_object.insert(0, prepared).map_err(RenderError::from)?;
        let (text, differs) = diff(&rendered, &with_object)?;
        print!("{text}");
        return Ok(if refused {
            exit::REFUSED
        } else if differs {
            exit::DIFFERS
        } else {
            exit::OK
        });
    }
    print!("{}", to_yaml(&rendered, args.output)?);
    Ok(if refused { exit::REFUSED } else { exit::OK })
}
