//! `capstan new` from the command line: a project of every kind in every language passes its own
//! unit tests, builds, and `capstan check` accepts the component.
//!
//! Rust projects are tested natively and built for wasm32-wasip2 in `<target>/scaffold`, in the
//! dev profile without debug info (the test guests' build cannot be reused: a scaffold's SDK has
//! no `crd` feature, so its dependencies' features differ). They are generated afresh and synced
//! into `<target>/scaffold-projects`, rewriting only what changed, so a rerun with an unchanged
//! template rebuilds nothing. Python and JavaScript projects need their
//! toolchain (as the Python and JavaScript examples do: missing, these tests say so and pass,
//! unless `CAPSTAN_REQUIRE_TOOLCHAINS=1`); each kind's unit tests run, and the controller kind,
//! whose code is the handler's and the reconciler's together, is built and checked.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::support;
use std::path::{Path, PathBuf};
use std::process::Command;

const KINDS: [&str; 3] = ["handler", "reconciler", "controller"];

/// `capstan new NAME --kind KIND --lang LANG` in `dir`: its stdout; fails the test on failure.
fn new(dir: &Path, name: &str, kind: &str, lang: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .current_dir(dir)
        .args(["new", name, "--kind", kind, "--lang", lang])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "capstan new {name}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `cmd`, failing the test with its output if it fails.
fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in [
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MANIFEST_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The target directory the tests run from.
fn target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `capstan check` accepts `component` as plugin `name` of `world`.
fn checks(component: &Path, name: &str, world: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("check")
        .arg("--cache-dir")
        .arg(support::precompiled_cache_dir())
        .arg(component)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("ok {name} 0.1.0")), "{stdout}");
    assert!(stdout.contains(&format!("world: {world}")), "{stdout}");
}

#[test]
fn rust_projects_pass_their_tests_build_and_check() {
    let dir = support::tempdir();
    let projects = target().join("scaffold-projects");
    for kind in KINDS {
        let name = format!("hello-{kind}");
        let stdout = new(dir.path(), &name, kind, "rust");
        let next: Vec<&str> = stdout.lines().skip(1).map(str::trim).collect();
        assert_eq!(
            next,
            [
                format!("cd {name} && cargo test").as_str(),
                "cargo build --release --target wasm32-wasip2",
                &format!("capstan check target/wasm32-wasip2/release/hello_{kind}.wasm"),
            ],
            "the next three commands"
        );
        let generated = dir.path().join(&name);
        // The versions the example guests are built and tested with.
        std::fs::copy(
            support::root().join("guests/Cargo.lock"),
            generated.join("Cargo.lock"),
        )
        .unwrap();
        let project = projects.join(&name);
        sync(&generated, &project);
        // Natively and for wasm32-wasip2 in one target directory with one profile (dev, no debug
        // info), so the host-side half (the proc macros and build scripts) is built once.
        let scaffold = target().join("scaffold");
        let profile = ["--config", "profile.dev.debug=false"];
        run(
            cargo()
                .current_dir(&project)
                .arg("test")
                .args(profile)
                .arg("--target-dir")
                .arg(&scaffold),
            &format!("cargo test of {name}"),
        );
        run(
            cargo()
                .current_dir(&project)
                .args(["build", "--target", "wasm32-wasip2"])
                .args(profile)
                .arg("--target-dir")
                .arg(&scaffold),
            &format!("cargo build of {name}"),
        );
        let component = scaffold.join(format!("wasm32-wasip2/debug/hello_{kind}.wasm"));
        checks(&component, &name, &format!("{kind}-plugin"));
    }
}

/// Make `to` hold exactly the files of `from` (beside its `target` directory), writing only the
/// files whose content differs, so that cargo finds an unchanged project fresh.
fn sync(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(to).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "target" && !from.join(name).exists() {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            sync(&entry.path(), &target);
        } else {
            let content = std::fs::read(entry.path()).unwrap();
            if std::fs::read(&target).ok().as_ref() != Some(&content) {
                std::fs::write(&target, content).unwrap();
            }
        }
    }
}

#[test]
fn python_projects_pass_their_tests_build_and_check() {
    // The Python example is built only when componentize-py is installed: the same toolchain.
    if support::polyglot_guest("py-webapp").is_none() {
        return;
    }
    let dir = support::tempdir();
    for kind in KINDS {
        let name = format!("py-{kind}");
        let stdout = new(dir.path(), &name, kind, "python");
        assert!(stdout.contains("./build.sh"), "{stdout}");
        let project = dir.path().join(&name);
        run(
            Command::new("sh").arg(project.join("test.sh")),
            &format!("test.sh of {name}"),
        );
        if kind == "controller" {
            let component = project.join("py_controller.wasm");
            run(
                Command::new("sh")
                    .arg(project.join("build.sh"))
                    .arg(&component),
                &format!("build.sh of {name}"),
            );
            checks(&component, &name, "controller-plugin");
        }
    }
}

#[test]
fn javascript_projects_pass_their_tests_build_and_check() {
    if support::polyglot_guest("js-deployment-handler").is_none() {
        return;
    }
    // The componentize-js the example installed (`npm ci`): the version the template pins.
    let modules = support::root().join("guests/js-deployment-handler/node_modules");
    let dir = support::tempdir();
    for kind in KINDS {
        let name = format!("js-{kind}");
        let stdout = new(dir.path(), &name, kind, "js");
        assert!(stdout.contains("npm run build"), "{stdout}");
        let project = dir.path().join(&name);
        std::os::unix::fs::symlink(&modules, project.join("node_modules")).unwrap();
        run(
            Command::new("npm").current_dir(&project).arg("test"),
            &format!("npm test of {name}"),
        );
        if kind == "controller" {
            let component = project.join("js_controller.wasm");
            run(
                Command::new("npm")
                    .current_dir(&project)
                    .args(["run", "--silent", "build"])
                    .env("OUT", &component),
                &format!("npm run build of {name}"),
            );
            checks(&component, &name, "controller-plugin");
        }
    }
}
