//! The differential suite: kubectl and HTTP operations, each with the result Kubernetes documents
//! or its source shows (`tests/differential/*.yaml`, each case naming where its expectation comes
//! from), run in order against one embedded server per file. A failing case is reported with the
//! others of its file, so one run shows every difference.

use crate::common::{self, Kubectl};

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use capstan_apiserver::{ApiServer, RunningServer};
use serde::Deserialize;
use serde_json::Value;

/// One operation and what Kubernetes answers to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the operation is.
    case: String,
    /// Where the expected result comes from (a Kubernetes document, function or source file).
    source: String,
    /// kubectl's arguments (`${name}` is replaced by a captured value).
    #[serde(default)]
    kubectl: Option<Vec<String>>,
    /// kubectl's standard input.
    #[serde(default)]
    stdin: Option<String>,
    /// An HTTP request instead.
    #[serde(default)]
    http: Option<Http>,
    /// Retry until the expectation holds, for up to this many seconds (the namespace controller,
    /// the garbage collector, the simulated workloads).
    #[serde(default)]
    within: Option<f64>,
    /// Keep the trimmed output under this name for later cases.
    #[serde(default)]
    capture: Option<String>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Http {
    method: String,
    path: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    accept: Option<String>,
    /// A body given as YAML, sent as JSON.
    #[serde(default)]
    body: Option<Value>,
    /// A body sent as written.
    #[serde(default)]
    raw: Option<String>,
    /// `none` (no credentials) or `wrong` (a token the server does not know); the server's own
    /// token when absent.
    #[serde(default)]
    token: Option<String>,
}

/// What the answer must show. Every field given is checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// kubectl's exit code: 0 unless `stderr` is expected, then 1.
    #[serde(default)]
    exit: Option<i32>,
    /// The HTTP status code.
    #[serde(default)]
    code: Option<u16>,
    /// Texts the output (kubectl's standard output, or the HTTP body) contains.
    #[serde(default)]
    stdout: Vec<String>,
    /// The whole output, trimmed.
    #[serde(default)]
    stdout_is: Option<String>,
    /// Lines the output has, runs of spaces taken as one.
    #[serde(default)]
    stdout_lines: Vec<String>,
    /// Texts the output does not contain.
    #[serde(default)]
    stdout_lacks: Vec<String>,
    /// Texts kubectl's standard error contains.
    #[serde(default)]
    stderr: Vec<String>,
    /// The whole HTTP body, trimmed.
    #[serde(default)]
    body: Option<String>,
    /// A JSON value the output contains: objects by key, lists element by element.
    #[serde(default)]
    json: Option<Value>,
    /// JSON pointers that must resolve in the output.
    #[serde(default)]
    json_has: Vec<String>,
    /// JSON pointers that must not.
    #[serde(default)]
    json_lacks: Vec<String>,
    /// HTTP answer headers, by name (any case), with their exact values.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What an operation gave back.
struct Outcome {
    /// kubectl's exit code, or the HTTP status.
    status: i32,
    stdout: String,
    stderr: String,
    head: String,
}

fn load(file: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(file).expect("read the cases");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn cases_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential")
}

fn substitute(text: &str, vars: &BTreeMap<String, String>) -> String {
    vars.iter().fold(text.to_owned(), |t, (name, value)| {
        t.replace(&format!("${{{name}}}"), value)
    })
}

async fn perform(
    server: &RunningServer,
    kubectl: &Kubectl,
    case: &Case,
    vars: &BTreeMap<String, String>,
) -> Outcome {
    if let Some(args) = &case.kubectl {
        let args: Vec<String> = args.iter().map(|a| substitute(a, vars)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = kubectl.command(&args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stdin = case.stdin.as_deref().map(|s| substitute(s, vars));
        let out = tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("run kubectl");
            let mut pipe = child.stdin.take().expect("kubectl's stdin");
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes())
                    .expect("write kubectl's stdin");
            }
            drop(pipe);
            child.wait_with_output().expect("kubectl's output")
        })
        .await
        .expect("kubectl task");
        return Outcome {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            head: String::new(),
        };
    }
    let http = case
        .http
        .as_ref()
        .expect("a case runs kubectl or an HTTP request");
    let body = match (&http.body, &http.raw) {
        (Some(v), _) => substitute(&v.to_string(), vars),
        (None, Some(raw)) => substitute(raw, vars),
        (None, None) => String::new(),
    };
    let auth = match http.token.as_deref() {
        None => Some(common::bearer(server)),
        Some("none") => None,
        Some("wrong") => Some("Bearer not-a-token".to_owned()),
        Some(other) => panic!("{}: token is none or wrong, not {other}", case.case),
    };
    let content_type = http.content_type.clone().unwrap_or_else(|| {
        if body.is_empty() {
            String::new()
        } else {
            "application/json".to_owned()
        }
    });
    let mut headers = vec![(
        "Accept",
        http.accept.as_deref().unwrap_or("application/json"),
    )];
    if !content_type.is_empty() {
        headers.push(("Content-Type", &content_type));
    }
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let path = substitute(&http.path, vars);
    let (code, head, body) =
        common::exchange(server, &http.method, &path, &headers, body.as_bytes()).await;
    Outcome {
        status: i32::from(code),
        stdout: body,
        stderr: String::new(),
        head,
    }
}

/// Whether `actual` contains `expected`: an object each of its keys, a list the same number of
/// elements each containing its counterpart, anything else equality.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|got| contains(got, v))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(got, v)| contains(got, v))
        }
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        _ => actual == expected,
    }
}

/// Appends every string in `value`, a line each.
fn strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push('\n');
            out.push_str(s);
        }
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every way `outcome` differs from `expect`.
fn differences(case: &Case, outcome: &Outcome) -> Vec<String> {
    let expect = &case.expect;
    let mut out = Vec::new();
    if case.kubectl.is_some() {
        let want = expect
            .exit
            .unwrap_or(if expect.stderr.is_empty() { 0 } else { 1 });
        if outcome.status != want {
            out.push(format!("exit code {} (expected {want})", outcome.status));
        }
    }
    if let Some(code) = expect.code
        && outcome.status != i32::from(code)
    {
        out.push(format!("HTTP {} (expected {code})", outcome.status));
    }
    // An HTTP body's JSON strings are searched unescaped too (a message as a client shows it).
    let mut haystack = outcome.stdout.clone();
    if case.http.is_some()
        && let Ok(doc) = serde_json::from_str::<Value>(&outcome.stdout)
    {
        strings(&doc, &mut haystack);
    }
    for text in &expect.stdout {
        if !haystack.contains(text.as_str()) {
            out.push(format!("output lacks {text:?}"));
        }
    }
    for text in &expect.stdout_lacks {
        if haystack.contains(text.as_str()) {
            out.push(format!("output has {text:?}"));
        }
    }
    if let Some(whole) = &expect.stdout_is
        && outcome.stdout.trim() != whole.trim()
    {
        out.push(format!("output is not {whole:?}"));
    }
    if !expect.stdout_lines.is_empty() {
        let lines: Vec<String> = outcome.stdout.lines().map(squeeze).collect();
        for line in &expect.stdout_lines {
            if !lines.contains(&squeeze(line)) {
                out.push(format!("output has no line {line:?}"));
            }
        }
    }
    for text in &expect.stderr {
        if !outcome.stderr.contains(text.as_str()) {
            out.push(format!("standard error lacks {text:?}"));
        }
    }
    if let Some(body) = &expect.body
        && outcome.stdout.trim() != body.trim()
    {
        out.push(format!("body is not {body:?}"));
    }
    if expect.json.is_some() || !expect.json_has.is_empty() || !expect.json_lacks.is_empty() {
        match serde_json::from_str::<Value>(&outcome.stdout) {
            Err(e) => out.push(format!("output is not JSON ({e})")),
            Ok(doc) => {
                if let Some(want) = &expect.json
                    && !contains(&doc, want)
                {
                    out.push(format!("JSON does not contain {want}"));
                }
                for pointer in &expect.json_has {
                    if doc.pointer(pointer).is_none() {
                        out.push(format!("JSON has nothing at {pointer}"));
                    }
                }
                for pointer in &expect.json_lacks {
                    if let Some(v) = doc.pointer(pointer) {
                        out.push(format!("JSON has {v} at {pointer}"));
                    }
                }
            }
        }
    }
    for (name, value) in &expect.headers {
        if common::header(&outcome.head, name) != Some(value.as_str()) {
            out.push(format!("header {name} is not {value:?}"));
        }
    }
    out
}

/// Runs one file of cases against a fresh server; panics listing every case that differs.
async fn run(file: &str) {
    let path = cases_dir().join(file);
    let cases = load(&path);
    let (server, _client) = common::start_with(
        ApiServer::builder().simulate_workloads(Some(Duration::from_millis(200))),
    )
    .await;
    let kubectl = Kubectl::for_server(&server);
    let mut vars = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let deadline = Instant::now() + Duration::from_secs_f64(case.within.unwrap_or(0.0));
        let (outcome, diffs) = loop {
            let outcome = perform(&server, &kubectl, case, &vars).await;
            let diffs = differences(case, &outcome);
            if diffs.is_empty() || Instant::now() >= deadline {
                break (outcome, diffs);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Some(name) = &case.capture {
            vars.insert(name.clone(), outcome.stdout.trim().to_owned());
        }
        if !diffs.is_empty() {
            failures.push(format!(
                "{file}: {} ({})\n  - {}\n  output: {}\n  stderr: {}",
                case.case,
                case.source,
                diffs.join("\n  - "),
                outcome.stdout.trim(),
                outcome.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Kubernetes:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The files of cases, each run by the test of its name below.
const FILES: &[&str] = &[
    "admission_policies.yaml",
    "certificates.yaml",
    "core.yaml",
    "crds.yaml",
    "discovery.yaml",
    "lifecycle.yaml",
    "lists.yaml",
    "namespaces.yaml",
    "networking.yaml",
    "quotas.yaml",
    "requests.yaml",
    "scheduling.yaml",
    "storage.yaml",
    "workloads.yaml",
];

#[test]
fn every_file_runs_and_the_suite_holds_at_least_120_operations() {
    let mut files: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("the cases' directory")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert_eq!(files, FILES, "a file of cases without its test");
    let count: usize = FILES.iter().map(|f| load(&cases_dir().join(f)).len()).sum();
    assert!(count >= 120, "{count} cases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates() {
    run("certificates.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_policies() {
    run("admission_policies.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery() {
    run("discovery.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces() {
    run("namespaces.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_kinds() {
    run("core.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads() {
    run("workloads.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources() {
    run("crds.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_watches() {
    run("lists.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle() {
    run("lifecycle.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests() {
    run("requests.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas() {
    run("quotas.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage() {
    run("storage.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networking() {
    run("networking.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_classes() {
    run("scheduling.yaml").await;
}
