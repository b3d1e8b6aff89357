//! Builds every guest of the two guest workspaces (`guests/`, the examples, and `tests/guests/`,
//! the test-only guests) for `wasm32-wasip2` into `<target dir>/guests`, and writes `paths.rs`
//! into `OUT_DIR`: one constant a guest, with the absolute path of its component.
//!
//! The Python and JavaScript examples of `guests/` (a directory with `requirements.txt` and
//! `build.sh`, or with `package.json`) are built by their own build command, when their toolchain
//! is installed (`componentize-py` on the `PATH`; `node_modules/` of `npm ci` in the guest), and
//! only when a source is newer than the component. Without it they are listed in `SKIPPED` with
//! the reason, unless `CAPSTAN_REQUIRE_TOOLCHAINS=1` (set by `.ci/run`), which makes a missing
//! toolchain fail the build.
//!
//! Tests (a dev build) get the `guest` profile, dev-like (no LTO, no `codegen-units = 1`); a
//! release build (`cargo bench`) gets the guest workspaces' `release` profile, so benchmarks
//! measure guests built as they ship.
//!
//! Cargo runs this once per build of the crate, and again only when a guest source, `wit/` or
//! `guest-sdk/` changes (`cargo:rerun-if-changed`), so `cargo test` builds the guests once for all
//! test binaries, and a warm rerun does not build them at all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The guest workspaces, relative to the repository root.
const WORKSPACES: &[&str] = &["guests", "tests/guests"];

/// The target triple.
const TARGET: &str = "wasm32-wasip2";

/// Variables cargo (or the user) sets that would change what the inner cargo builds, or where:
/// the host's flags and wrappers are not for wasm, and the guests have their own target directory.
/// The jobserver (`CARGO_MAKEFLAGS`) is kept on purpose: the inner cargo takes its jobs from the
/// outer one's pool, so the two never run more compilers at once than `-j` allows.
const SCRUBBED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_INCREMENTAL",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_TARGET_TMPDIR",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];

/// Where the guests are built, when set (see [`guest_target_dir`]).
const GUEST_TARGET_DIR: &str = "CAPSTAN_GUEST_TARGET_DIR";

/// Set to `1`, a guest whose toolchain is missing fails the build instead of being skipped.
const REQUIRE_TOOLCHAINS: &str = "CAPSTAN_REQUIRE_TOOLCHAINS";

/// Entries never watched: build output, installed packages, generated bindings.
const UNWATCHED: &[&str] = &["target", "node_modules", ".bindings", "__pycache__"];

/// One guest: its package name and its workspace directory.
struct Guest {
    package: String,
    workspace: PathBuf,
}

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("tests/artifacts lies two levels below the repository root")
        .to_owned();
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let target_dir = guest_target_dir(&out_dir, &root);

    for dir in ["wit", "guest-sdk"] {
        watch_tree(&root.join(dir));
    }
    println!("cargo:rerun-if-env-changed={REQUIRE_TOOLCHAINS}");
    println!("cargo:rerun-if-env-changed=PATH");
    let mut guests = Vec::new();
    for ws in WORKSPACES {
        let workspace = root.join(ws);
        watch_tree(&workspace);
        guests.extend(guests_in(&workspace));
    }
    guests.sort_by(|a, b| a.package.cmp(&b.package));

    // The guest profile (defined in each guest workspace's `Cargo.toml`) for the tests; the
    // release profile when this crate is built for release (benchmarks).
    let profile = if env("PROFILE") == "release" {
        "release"
    } else {
        "guest"
    };
    check_target_installed();
    for ws in WORKSPACES {
        let workspace = root.join(ws);
        let packages: Vec<&str> = guests
            .iter()
            .filter(|g| g.workspace == workspace)
            .map(|g| g.package.as_str())
            .collect();
        build_guests(&workspace, &packages, profile, &target_dir);
    }

    let out = target_dir.join(TARGET).join(profile);
    let require = std::env::var(REQUIRE_TOOLCHAINS).is_ok_and(|v| v == "1");
    let mut skipped = Vec::new();
    for p in polyglot_in(&root.join("guests")) {
        match build_polyglot(&p, &root, &out, require) {
            Ok(()) => guests.push(Guest {
                package: p.package,
                workspace: p.dir,
            }),
            Err(reason) => {
                println!("cargo:warning=guest {} not built: {reason}", p.package);
                skipped.push((p.package, reason));
            }
        }
    }
    guests.sort_by(|a, b| a.package.cmp(&b.package));
    let mut paths = String::new();
    let mut all =
        String::from("/// Every guest: its package name and the path of its component.\n");
    all.push_str("pub const GUESTS: &[(&str, &str)] = &[\n");
    for g in &guests {
        let file = out.join(format!("{}.wasm", g.package.replace('-', "_")));
        assert!(
            file.is_file(),
            "guest {} was built but {} is missing",
            g.package,
            file.display()
        );
        let constant = g.package.replace('-', "_").to_uppercase();
        let _ = writeln!(
            paths,
            "/// The component of guest `{}` ({}).\npub const {constant}: &str = {:?};",
            g.package,
            g.workspace
                .strip_prefix(&root)
                .unwrap_or(&g.workspace)
                .display(),
            file.display().to_string(),
        );
        let _ = writeln!(all, "    ({:?}, {constant}),", g.package);
    }
    all.push_str("];\n");
    paths.push_str(&all);
    paths.push_str(
        "/// Guests in another language not built, their toolchain missing: package and reason.\n",
    );
    paths.push_str("pub const SKIPPED: &[(&str, &str)] = &[\n");
    for (package, reason) in &skipped {
        let _ = writeln!(paths, "    ({package:?}, {reason:?}),");
    }
    paths.push_str("];\n");
    std::fs::write(out_dir.join("paths.rs"), paths).expect("write paths.rs into OUT_DIR");
}

/// Builds every guest of the guest workspace `workspace` for wasm32-wasip2 in `profile` into
/// `target_dir`, in one cargo invocation: the SDK chooses each guest's world in the guest's own
/// crate, so no feature differs between guests built together.
fn build_guests(workspace: &Path, packages: &[&str], profile: &str, target_dir: &Path) {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--workspace",
        "--target",
        TARGET,
        "--profile",
        profile,
    ])
    .arg("--manifest-path")
    .arg(workspace.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir);
    run(cmd, &format!("guests {}", packages.join(", ")));
}

/// A `cargo` command with the build script's environment scrubbed.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("CARGO_CFG_")
            || var.starts_with("CARGO_FEATURE_")
            || var.starts_with("CARGO_PKG_")
            || var.starts_with("DEP_")
        {
            cmd.env_remove(&*var);
        }
    }
    cmd
}

fn run(mut cmd: Command, what: &str) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(status.success(), "building {what} failed: {status}");
}

/// Fails with the command to run when the wasm32-wasip2 standard library is not installed.
fn check_target_installed() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = libdir
        .as_deref()
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|mut entries| entries.next().is_some());
    if !installed {
        eprintln!(
            "error: the {TARGET} target is not installed; the tests run the guests as {TARGET} \
             components.\n  Install it with: rustup target add {TARGET}"
        );
        std::process::exit(1);
    }
}

/// Where the guests go: `$CAPSTAN_GUEST_TARGET_DIR` when set (so two builds of this crate in
/// different target directories share one build of the guests: `.ci/run` starts one beside the
/// host's), else `guests/` in the target directory this crate is built in (found above `OUT_DIR`
/// by cargo's `CACHEDIR.TAG`), else `target/guests` under the repository root.
fn guest_target_dir(out_dir: &Path, root: &Path) -> PathBuf {
    println!("cargo:rerun-if-env-changed={GUEST_TARGET_DIR}");
    if let Some(dir) = std::env::var_os(GUEST_TARGET_DIR).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| root.join("target"), Path::to_owned)
        .join("guests")
}

/// The guests of a workspace: each member directory whose `Cargo.toml` builds a `cdylib`.
fn guests_in(workspace: &Path) -> Vec<Guest> {
    let entries = std::fs::read_dir(workspace)
        .unwrap_or_else(|e| panic!("cannot read guest workspace {}: {e}", workspace.display()));
    let mut guests = Vec::new();
    for entry in entries.flatten() {
        let Ok(manifest) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else {
            continue;
        };
        if !manifest.contains("cdylib") {
            continue;
        }
        let package = package_name(&manifest).unwrap_or_else(|| {
            panic!(
                "no `name = \"...\"` in the [package] of {}",
                entry.path().display()
            )
        });
        guests.push(Guest {
            package,
            workspace: workspace.to_owned(),
        });
    }
    guests
}

/// The `name` of a manifest's `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(value) = line.strip_prefix("name") {
            let value = value.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_owned());
        }
    }
    None
}

/// Reruns the build script when anything below `dir` changes, except build output, installed
/// packages and generated bindings ([`UNWATCHED`], `*.wasm`). Cargo scans a watched directory
/// whole, its `target/` included (which the examples' own tests write to), so a directory holding
/// any of those is not watched itself: its other entries are, each by this rule. A file added
/// there goes unnoticed until a watched file names it (a workspace's members, a `mod`).
fn watch_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("cargo:rerun-if-changed={}", dir.display());
        return;
    };
    let entries: Vec<_> = entries.flatten().collect();
    let unwatched = |name: &str| UNWATCHED.contains(&name) || name.ends_with(".wasm");
    if !entries
        .iter()
        .any(|e| unwatched(&e.file_name().to_string_lossy()))
    {
        println!("cargo:rerun-if-changed={}", dir.display());
        return;
    }
    for entry in entries {
        if unwatched(&entry.file_name().to_string_lossy()) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            watch_tree(&entry.path());
        } else {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
}

/// A guest language other than Rust.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    /// componentize-py: `requirements.txt` and `build.sh [OUT]`.
    Python,
    /// componentize-js: `package.json` with a `build` script writing `$OUT`.
    JavaScript,
}

/// A Python or JavaScript guest: its package (directory) name, directory and language.
struct Polyglot {
    package: String,
    dir: PathBuf,
    lang: Lang,
}

/// The Python and JavaScript guests directly under `dir`.
fn polyglot_in(dir: &Path) -> Vec<Polyglot> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let lang = if path.join("requirements.txt").is_file() && path.join("build.sh").is_file() {
            Lang::Python
        } else if path.join("package.json").is_file() {
            Lang::JavaScript
        } else {
            continue;
        };
        found.push(Polyglot {
            package: entry.file_name().to_string_lossy().into_owned(),
            dir: path,
            lang,
        });
    }
    found.sort_by(|a, b| a.package.cmp(&b.package));
    found
}

/// Builds `guest` into `out` with its own build command, unless the component is newer than every
/// source (and `wit/`). `Err` with the reason when its toolchain is missing and not `required`.
fn build_polyglot(guest: &Polyglot, root: &Path, out: &Path, required: bool) -> Result<(), String> {
    let missing = match guest.lang {
        Lang::Python => (!runs("componentize-py", &["--version"])).then(|| {
            format!(
                "componentize-py is not on the PATH (pip install -r {}/requirements.txt)",
                guest.dir.display()
            )
        }),
        Lang::JavaScript => (!guest
            .dir
            .join("node_modules/.bin/componentize-js")
            .is_file()
            || !runs("npm", &["--version"]))
        .then(|| {
            format!(
                "componentize-js is not installed (npm ci --prefix {})",
                guest.dir.display()
            )
        }),
    };
    if let Some(reason) = missing {
        assert!(!required, "{REQUIRE_TOOLCHAINS}=1: {reason}");
        return Err(reason);
    }
    let file = out.join(format!("{}.wasm", guest.package.replace('-', "_")));
    let built = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    if built.is_some_and(|b| newest(&guest.dir).max(newest(&root.join("wit"))) < b) {
        return Ok(());
    }
    std::fs::create_dir_all(out).expect("create the guests' output directory");
    // Written aside and renamed into place, so another build of the guests running at the same
    // time never reads half a component.
    let partial = file.with_extension(format!("wasm.{}.partial", std::process::id()));
    let mut cmd = match guest.lang {
        Lang::Python => {
            let mut c = Command::new("sh");
            c.arg(guest.dir.join("build.sh")).arg(&partial);
            c
        }
        Lang::JavaScript => {
            let mut c = Command::new("npm");
            c.args(["run", "--silent", "build"]).env("OUT", &partial);
            c
        }
    };
    cmd.current_dir(&guest.dir)
        .env("CAPSTAN_WIT", root.join("wit"));
    run(cmd, &format!("guest {}", guest.package));
    std::fs::rename(&partial, &file).unwrap_or_else(|e| {
        panic!(
            "cannot move {} into place as {}: {e}",
            partial.display(),
            file.display()
        )
    });
    Ok(())
}

/// Whether `program args` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The newest modification time below `dir`, past [`UNWATCHED`] entries and components.
fn newest(dir: &Path) -> std::time::SystemTime {
    let mut latest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if UNWATCHED.contains(&&*name) || name.ends_with(".wasm") {
            continue;
        }
        let time = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            newest(&entry.path())
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        };
        latest = latest.max(time);
    }
    latest
}

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("cargo sets {var} for build scripts"))
}
