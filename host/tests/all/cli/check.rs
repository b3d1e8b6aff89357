//! `capstan check` from the command line: worlds and manifests printed, one-line reasons, exit codes.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::support;

use std::process::Command;

fn check(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("check")
        .arg("--no-cache")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_plugins_print_world_contract_and_manifest() {
    let (handler, webapp) = (
        support::guest("deployment-handler"),
        support::guest("webapp"),
    );
    let (ok, stdout, _) = check(&[handler.as_os_str(), webapp.as_os_str()]);
    assert!(ok);
    assert!(stdout.contains("ok deployment-handler 0.1.0"), "{stdout}");
    assert!(
        stdout.contains("world: handler-plugin  contract: capstan:controller@0.2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("world: reconciler-plugin"), "{stdout}");
    assert!(
        stdout.contains("owns: apps/v1/Deployment, v1/Service"),
        "{stdout}"
    );
}

#[test]
fn the_event_filter_is_printed() {
    let filtered = support::guest("filtered-controller");
    let (ok, stdout, _) = check(&[filtered.as_os_str()]);
    assert!(ok);
    assert!(
        stdout.contains("   events: namespaces prod; labels app=web,tier!=db; spec changes only"),
        "{stdout}"
    );
    let (ok, stdout, _) = check(&[support::guest("deployment-handler").as_os_str()]);
    assert!(ok);
    assert!(
        !stdout.contains("events:"),
        "no line for the default filter: {stdout}"
    );
}

#[test]
fn json_output_is_machine_readable() {
    let handler = support::guest("deployment-handler");
    let (ok, stdout, _) = check(&[std::ffi::OsStr::new("--json"), handler.as_os_str()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["plugin"]["world"], "handler-plugin");
    assert_eq!(v["manifest"]["watches"][0]["kind"], "Deployment");
}

#[test]
fn each_rejection_exits_non_zero_with_one_line() {
    let dir = support::tempdir();
    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let cases = [
        (not_wasm, "not a WebAssembly file"),
        (core, "a core WebAssembly module, not a component"),
        (support::guest("wrong-world"), "not a capstan plugin"),
        (support::guest("trap-describe"), "describe failed"),
        (
            support::guest("future-contract"),
            "built against contract 0.9.0",
        ),
        (
            support::guest("bad-selector"),
            "plugin bad-selector: invalid event filter: the label selector does not parse: invalid label selector \"app in (web\"",
        ),
    ];
    for (path, reason) in cases {
        let (ok, _, stderr) = check(&[path.as_os_str()]);
        assert!(!ok, "{} must fail", path.display());
        let lines: Vec<_> = stderr
            .lines()
            .filter(|l| l.starts_with("rejected "))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(reason) && lines[0].contains(&*path.to_string_lossy()),
            "{}",
            lines[0]
        );
    }
}

#[test]
fn limits_are_set_from_the_command_line() {
    let webapp = support::guest("webapp");
    let (ok, _, stderr) = check(&[
        std::ffi::OsStr::new("--memory-mib"),
        std::ffi::OsStr::new("1"),
        webapp.as_os_str(),
    ]);
    assert!(!ok, "a plugin needing more than 1 MiB is refused");
    assert!(stderr.contains("memory"), "{stderr}");
    let (ok, _, _) = check(&[
        std::ffi::OsStr::new("--memory-mib"),
        std::ffi::OsStr::new("64"),
        webapp.as_os_str(),
    ]);
    assert!(ok);
}

#[test]
fn run_refuses_a_bad_configuration_file_before_starting() {
    let dir = support::tempdir();
    let config = dir.path().join("capstan.yaml");
    // `capstan run` with this configuration must fail; its stderr.
    let refused = || {
        let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["run", "--plugins"])
            .arg(dir.path())
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    std::fs::write(&config, "defaults: { callTimeoutMS: 5 }\n").unwrap();
    let stderr = refused();
    assert!(
        stderr.contains("invalid configuration")
            && stderr.contains("capstan.yaml")
            && stderr.contains("callTimeoutMS"),
        "{stderr}"
    );
    let missing = dir.path().join("nowhere");
    std::fs::write(
        &config,
        format!(
            "plugins: {{ webapp: {{ file: webapp.wasm, wasi: {{ dirs: [{{ host: {}, guest: /c }}] }} }} }}\n",
            missing.display()
        ),
    )
    .unwrap();
    let stderr = refused();
    assert!(
        stderr.contains("plugin webapp") && stderr.contains("nowhere"),
        "{stderr}"
    );
    // An entry must say which file it is for: grants follow files, not claimed names.
    std::fs::write(
        &config,
        "plugins: { webapp: { wasi: { env: { A: b } } } }\n",
    )
    .unwrap();
    let stderr = refused();
    assert!(
        stderr.contains("plugins.webapp: the entry must be bound to its plugin"),
        "{stderr}"
    );
}

fn capstan(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_annotated_plugin_tells_its_manifest_without_running() {
    let dir = support::tempdir();
    let plain = support::guest("webapp");
    let annotated = dir.path().join("webapp.wasm");
    let os = std::ffi::OsStr::new;
    // Not annotated yet: nothing to read without running it.
    let (ok, stdout, _) = check(&[os("--embedded"), plain.as_os_str()]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("no embedded manifest"), "{stdout}");

    let (ok, stdout, stderr) = capstan(&[
        os("annotate"),
        plain.as_os_str(),
        os("--output"),
        annotated.as_os_str(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("annotated webapp 0.1.0"), "{stdout}");

    // Read from the custom section: no compile, no instance (a file that is not even valid
    // WebAssembly past its sections would do).
    let (ok, stdout, _) = check(&[os("--embedded"), os("--json"), annotated.as_os_str()]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["manifest"]["name"], "webapp");
    assert_eq!(v["manifest"]["owns"][0]["kind"], "Deployment");

    // And it still loads: the section agrees with describe.
    let (ok, stdout, stderr) = check(&[annotated.as_os_str()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ok webapp 0.1.0"), "{stdout}");
}

#[test]
fn an_embedded_manifest_that_disagrees_with_describe_is_refused() {
    let dir = support::tempdir();
    let annotated = dir.path().join("annotated.wasm");
    let os = std::ffi::OsStr::new;
    let plain = support::guest("webapp");
    let (ok, _, stderr) = capstan(&[
        os("annotate"),
        plain.as_os_str(),
        os("-o"),
        annotated.as_os_str(),
    ]);
    assert!(ok, "{stderr}");
    let bytes = std::fs::read(&annotated).unwrap();
    // The embedded manifest claims less than the plugin asks for: a tool reading it would be misled.
    let mut lie = capstan::plugin::embedded_manifest(&bytes).unwrap().unwrap();
    lie.owns.clear();
    let forged = dir.path().join("webapp.wasm");
    std::fs::write(
        &forged,
        capstan::plugin::embed_manifest(&bytes, &lie).unwrap(),
    )
    .unwrap();
    let (ok, _, stderr) = check(&[forged.as_os_str()]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "the embedded manifest (capstan:manifest section) does not match what describe returns"
        ),
        "{stderr}"
    );
}
