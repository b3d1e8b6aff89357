//! `capstan new`: a new plugin project, buildable and tested, in Rust (a crate on `capstan-sdk`),
//! Python (componentize-py) or JavaScript (componentize-js), as a handler, a reconciler or both.
//!
//! Every template is a file under `templates/`, compiled in with `include_str!`; the Python and
//! JavaScript defaults helpers and test fakes are the examples' own files (`guests/py-webapp`,
//! `guests/js-deployment-handler`), and the WIT files are `wit/`'s, so a project gets the contract
//! this host speaks. The example a template writes takes ConfigMaps: a handler reports each
//! one's keys on its status channel, a reconciler mirrors each labelled one into `<name>-mirror`.

mod template;

use std::path::{Path, PathBuf};
use template::{Template, TemplateError};

/// The roles of the plugin, and so its world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Handles events (`handler-plugin`).
    Handler,
    /// Reconciles objects (`reconciler-plugin`).
    Reconciler,
    /// Both (`controller-plugin`).
    Controller,
}

impl Kind {
    /// The WIT world a plugin of this kind targets.
    #[must_use]
    pub fn world(self) -> &'static str {
        match self {
            Self::Handler => "handler-plugin",
            Self::Reconciler => "reconciler-plugin",
            Self::Controller => "controller-plugin",
        }
    }

    fn handles(self) -> bool {
        matches!(self, Self::Handler | Self::Controller)
    }

    fn reconciles(self) -> bool {
        matches!(self, Self::Reconciler | Self::Controller)
    }

    fn description(self) -> &'static str {
        match self {
            Self::Handler => "a handler that reports the keys of every ConfigMap",
            Self::Reconciler => "a reconciler that mirrors labelled ConfigMaps",
            Self::Controller => {
                "a handler that reports the keys of labelled ConfigMaps and a reconciler that mirrors them"
            }
        }
    }
}

/// The language of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lang {
    /// A crate depending on `capstan-sdk`, built for `wasm32-wasip2`.
    #[default]
    Rust,
    /// A componentize-py app.
    Python,
    /// A componentize-js module.
    Js,
}

/// The componentize-py the Python template pins (the version the Python example is tested with).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// The componentize-js the JavaScript template pins (the version the JavaScript example is tested
/// with).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// Where a Rust project's `capstan-sdk` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// A path dependency on a checkout's `guest-sdk/`.
    Path(PathBuf),
    /// A registry version requirement.
    Version(String),
}

impl Sdk {
    /// The SDK of the checkout this binary was built from, when it is still there; else the
    /// registry version of this host's own version.
    #[must_use]
    pub fn local_or_registry() -> Self {
        let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
        match local.canonicalize() {
            Ok(path) if path.join("Cargo.toml").is_file() => Self::Path(path),
            _ => Self::Version(env!("CARGO_PKG_VERSION").to_owned()),
        }
    }

    fn dependency(&self) -> String {
        match self {
            Self::Path(p) => format!("{{ path = {:?} }}", p.display().to_string()),
            Self::Version(v) => format!("{v:?}"),
        }
    }
}

/// Why a project could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a plugin name.
    #[error(
        "{name:?} is not a plugin name: it must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters, starting with a letter)"
    )]
    Name {
        /// The name given.
        name: String,
    },
    /// The directory exists and is not empty.
    #[error("{} exists and is not empty", path.display())]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A template is broken (a bug in this binary).
    #[error("template {name}")]
    Template {
        /// The template's file name.
        name: &'static str,
        /// The cause.
        #[source]
        source: TemplateError,
    },
}

/// What `capstan new` is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    name: String,
    kind: Kind,
    lang: Lang,
    sdk: Sdk,
}

impl Options {
    /// A project named `name` (the plugin's name, and the directory's) of `kind`, in Rust, on
    /// [`Sdk::local_or_registry`].
    #[must_use]
    pub fn new(name: impl Into<String>, kind: Kind) -> Self {
        Self {
            name: name.into(),
            kind,
            lang: Lang::Rust,
            sdk: Sdk::local_or_registry(),
        }
    }

    /// The language.
    #[must_use]
    pub fn lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
        self
    }

    /// Where a Rust project's SDK comes from.
    #[must_use]
    pub fn sdk(mut self, sdk: Sdk) -> Self {
        self.sdk = sdk;
        self
    }
}

/// A project written by [`create`].
#[derive(Debug, Clone)]
pub struct Project {
    /// Its directory.
    pub dir: PathBuf,
    /// Its files, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// The component its build writes, relative to `dir`.
    pub component: PathBuf,
    /// The next three commands: test, build, check (run from `dir`'s parent).
    pub next: [String; 3],
}

/// Write the project `options` asks for into `parent/<name>`, which must not exist or be empty.
///
/// # Errors
/// A name that is not a DNS-1123 label, a non-empty directory, or a file that cannot be written.
pub fn create(parent: &Path, options: &Options) -> Result<Project, ScaffoldError> {
    let name = &options.name;
    if capstan_apiserver::validation::dns1123_label(name).is_err()
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(ScaffoldError::Name { name: name.clone() });
    }
    let dir = parent.join(name);
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ScaffoldError::Exists { path: dir });
    }
    let files = files(options)?;
    for (path, contents) in &files {
        let path = dir.join(path);
        let write = |p: &Path| -> std::io::Result<()> {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(p, contents)?;
            if p.extension().is_some_and(|e| e == "sh") {
                set_executable(p)?;
            }
            Ok(())
        };
        write(&path).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    let snake = name.replace('-', "_");
    let (component, next) = match options.lang {
        Lang::Rust => {
            let component = format!("target/wasm32-wasip2/release/{snake}.wasm");
            (
                component.clone(),
                [
                    format!("cd {name} && cargo test"),
                    "cargo build --release --target wasm32-wasip2".to_owned(),
                    format!("capstan check {component}"),
                ],
            )
        }
        Lang::Python => (
            format!("{snake}.wasm"),
            [
                format!(
                    "cd {name} && python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && ./test.sh"
                ),
                "./build.sh".to_owned(),
                format!("capstan check {snake}.wasm"),
            ],
        ),
        Lang::Js => (
            format!("{snake}.wasm"),
            [
                format!("cd {name} && npm install && npm test"),
                "npm run build".to_owned(),
                format!("capstan check {snake}.wasm"),
            ],
        ),
    };
    Ok(Project {
        dir,
        files: files.into_iter().map(|(p, _)| PathBuf::from(p)).collect(),
        component: component.into(),
        next,
    })
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The contract's WIT files, for Python and JavaScript projects (`wit/`).
const WIT: &[(&str, &str)] = &[
    ("wit/plugin.wit", include_str!("../../../wit/plugin.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
];

/// The relative path and contents of every file of the project.
fn files(o: &Options) -> Result<Vec<(String, String)>, ScaffoldError> {
    let (h, r) = (o.kind.handles(), o.kind.reconciles());
    let snake = o.name.replace('-', "_");
    let camel: String = o
        .name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let roles = match o.kind {
        Kind::Handler => "Handler",
        Kind::Reconciler => "Reconciler",
        Kind::Controller => "Handler + Reconciler",
    };
    let manifest_extra = match (o.lang, r) {
        (_, false) => String::new(),
        (Lang::Rust, true) => "\n            .owns::<ConfigMap>()\n            .with_label_selector(&format!(\"{MIRROR_LABEL}=true\"))".to_owned(),
        (Lang::Python, true) => "\n            owns=[CONFIG_MAP],\n            events=types.EventFilter(\n                namespaces=[], label_selector=f\"{MIRROR_LABEL}=true\", changes=types.ChangeFilter.ALL\n            ),".to_owned(),
        (Lang::Js, true) => "\n      owns: [CONFIG_MAP],\n      events: { namespaces: [], labelSelector: `${MIRROR_LABEL}=true`, changes: \"all\" },".to_owned(),
    };
    let sdk = o.sdk.dependency();
    let values: &[(&str, &str)] = &[
        ("name", &o.name),
        ("snake", &snake),
        ("Type", &camel),
        ("kind_description", o.kind.description()),
        ("world", o.kind.world()),
        ("roles", roles),
        ("manifest_extra", &manifest_extra),
        ("sdk_dependency", &sdk),
        ("componentize_js_version", COMPONENTIZE_JS_VERSION),
    ];
    let render = |name: &'static str, text: &'static str| {
        Template::new(text)
            .render(values)
            .map_err(|source| ScaffoldError::Template { name, source })
    };
    // Parts of one file, in order, each kept when its flag is set.
    let join = |parts: &[(bool, &'static str, &'static str)]| -> Result<String, ScaffoldError> {
        let mut out = String::new();
        for (keep, name, text) in parts {
            if *keep {
                out.push_str(&render(name, text)?);
            }
        }
        Ok(out)
    };
    macro_rules! t {
        ($path:literal) => {
            ($path, include_str!(concat!("templates/", $path)))
        };
    }
    let mut files = Vec::new();
    match o.lang {
        Lang::Rust => {
            let (n, s) = t!("rust/Cargo.toml.tmpl");
            files.push(("Cargo.toml".to_owned(), render(n, s)?));
            files.push((".gitignore".to_owned(), t!("rust/gitignore").1.to_owned()));
            let (head, handler, reconciler, plugin) = (
                t!("rust/head.rs"),
                t!("rust/handler.rs"),
                t!("rust/reconciler.rs"),
                t!("rust/plugin.rs"),
            );
            let (th, thh, thr, tt) = (
                t!("rust/tests_head.rs"),
                t!("rust/tests_handler.rs"),
                t!("rust/tests_reconciler.rs"),
                t!("rust/tests_tail.rs"),
            );
            let lib = join(&[
                (true, head.0, head.1),
                (h, handler.0, handler.1),
                (r, reconciler.0, reconciler.1),
                (true, plugin.0, plugin.1),
                (true, th.0, th.1),
                (h, thh.0, thh.1),
                (r, thr.0, thr.1),
                (true, tt.0, tt.1),
            ])?;
            files.push(("src/lib.rs".to_owned(), lib));
        }
        Lang::Python => {
            let (head, handler) = (t!("python/app_head.py"), t!("python/app_handler.py"));
            files.push((
                "app.py".to_owned(),
                join(&[(true, head.0, head.1), (h, handler.0, handler.1)])?,
            ));
            if r {
                let (n, s) = t!("python/reconciler.py");
                files.push(("reconciler.py".to_owned(), render(n, s)?));
            }
            files.push((
                "capstan_plugin.py".to_owned(),
                include_str!("../../../guests/py-webapp/capstan_plugin.py").to_owned(),
            ));
            files.push((
                "requirements.txt".to_owned(),
                include_str!("../../../guests/py-webapp/requirements.txt").to_owned(),
            ));
            for (path, t) in [
                ("build.sh", t!("python/build.sh")),
                ("test.sh", t!("python/test.sh")),
            ] {
                files.push((path.to_owned(), render(t.0, t.1)?));
            }
            files.push((".gitignore".to_owned(), t!("python/gitignore").1.to_owned()));
            let (th, thh, thr, tt) = (
                t!("python/test_head.py"),
                t!("python/test_handler.py"),
                t!("python/test_reconciler.py"),
                t!("python/test_tail.py"),
            );
            files.push((
                "test_app.py".to_owned(),
                join(&[
                    (true, th.0, th.1),
                    (h, thh.0, thh.1),
                    (r, thr.0, thr.1),
                    (true, tt.0, tt.1),
                ])?,
            ));
        }
        Lang::Js => {
            let (head, handler, reconciler) = (
                t!("js/app_head.js"),
                t!("js/app_handler.js"),
                t!("js/app_reconciler.js"),
            );
            files.push((
                "app.js".to_owned(),
                join(&[
                    (true, head.0, head.1),
                    (h, handler.0, handler.1),
                    (r, reconciler.0, reconciler.1),
                ])?,
            ));
            files.push((
                "capstan-plugin.js".to_owned(),
                include_str!("../../../guests/js-deployment-handler/capstan-plugin.js").to_owned(),
            ));
            let (n, s) = t!("js/package.json");
            files.push(("package.json".to_owned(), render(n, s)?));
            files.push((".gitignore".to_owned(), t!("js/gitignore").1.to_owned()));
            files.push((
                "test/host.mjs".to_owned(),
                include_str!("../../../guests/js-deployment-handler/test/host.mjs").to_owned(),
            ));
            files.push((
                "test/register.mjs".to_owned(),
                include_str!("../../../guests/js-deployment-handler/test/register.mjs").to_owned(),
            ));
            let (th, thh, thr) = (
                t!("js/test_head.js"),
                t!("js/test_handler.js"),
                t!("js/test_reconciler.js"),
            );
            files.push((
                "test/app.test.js".to_owned(),
                join(&[(true, th.0, th.1), (h, thh.0, thh.1), (r, thr.0, thr.1)])?,
            ));
        }
    }
    if o.lang != Lang::Rust {
        files.extend(WIT.iter().map(|(p, s)| ((*p).to_owned(), (*s).to_owned())));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_for_every_kind_and_language() {
        for kind in [Kind::Handler, Kind::Reconciler, Kind::Controller] {
            for lang in [Lang::Rust, Lang::Python, Lang::Js] {
                let files = files(&Options::new("hello-world", kind).lang(lang)).unwrap();
                for (path, text) in &files {
                    assert!(!text.contains("{{"), "{path} of {kind:?} {lang:?}");
                }
            }
        }
    }

    #[test]
    fn names_are_dns_labels() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["Hello", "a_b", "-a", "1abc", ""] {
            let err = create(dir.path(), &Options::new(bad, Kind::Handler)).unwrap_err();
            assert!(matches!(err, ScaffoldError::Name { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn a_non_empty_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        std::fs::write(dir.path().join("taken/file"), "x").unwrap();
        let err = create(dir.path(), &Options::new("taken", Kind::Handler)).unwrap_err();
        assert!(matches!(err, ScaffoldError::Exists { .. }), "{err}");
    }

    #[test]
    fn the_rust_world_follows_the_kind() {
        let lib = |kind| {
            files(&Options::new("x", kind))
                .unwrap()
                .into_iter()
                .find(|(p, _)| p == "src/lib.rs")
                .unwrap()
                .1
        };
        assert!(lib(Kind::Handler).contains("export!(X: Handler)"));
        assert!(lib(Kind::Reconciler).contains("export!(X: Reconciler)"));
        assert!(lib(Kind::Controller).contains("export!(X: Handler + Reconciler)"));
    }
}
