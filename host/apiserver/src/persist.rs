//! Durable state: an append-only JSON-lines log, fsynced per write, replayed and compacted at start.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name of the log file inside the state directory.
pub const LOG_FILE: &str = "objects.jsonl";

/// A persistence failure.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing a file failed.
    #[error("i/o on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A record in the middle of the log is unreadable.
    #[error("corrupt record at line {line} of {path}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("encoding a record")]
    Encode(#[source] serde_json::Error),
}

/// One log record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Record {
    /// An object was created or replaced.
    Put {
        /// Resource version of the write.
        rv: u64,
        /// Storage key (`plural.group`).
        resource: String,
        /// Namespace, empty for cluster-scoped.
        namespace: String,
        /// Name.
        name: String,
        /// The stored object.
        object: Value,
    },
    /// An object was removed.
    Delete {
        /// Resource version of the write.
        rv: u64,
        /// Storage key.
        resource: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Keeps the resource version counter across compaction.
    Version {
        /// The counter.
        rv: u64,
    },
}

/// Objects by storage key, then by (namespace, name).
pub type Objects = HashMap<String, BTreeMap<(String, String), Value>>;

/// State read back from a log.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The resource version counter.
    pub rv: u64,
    /// The live objects.
    pub objects: Objects,
}

/// The open log.
#[derive(Debug)]
pub struct Log {
    file: File,
    path: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PersistError + '_ {
    move |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the log in `dir` (missing is empty). A torn last line (a crash mid-write, never acknowledged)
/// is dropped.
///
/// # Errors
/// [`PersistError`] on i/o failure or a corrupt record before the last line.
pub fn load(dir: &Path) -> Result<Loaded, PersistError> {
    let path = dir.join(LOG_FILE);
    let mut loaded = Loaded::default();
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(loaded),
        Err(e) => return Err(io(&path)(e)),
    };
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(io(&path))?;
    let count = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(source) if i + 1 == count => {
                tracing::warn!(error = %source, "dropping torn last record of the state log");
                break;
            }
            Err(source) => {
                return Err(PersistError::Corrupt {
                    path,
                    line: i + 1,
                    source,
                });
            }
        };
        match record {
            Record::Put {
                rv,
                resource,
                namespace,
                name,
                object,
            } => {
                loaded.rv = loaded.rv.max(rv);
                loaded
                    .objects
                    .entry(resource)
                    .or_default()
                    .insert((namespace, name), object);
            }
            Record::Delete {
                rv,
                resource,
                namespace,
                name,
            } => {
                loaded.rv = loaded.rv.max(rv);
                if let Some(map) = loaded.objects.get_mut(&resource) {
                    map.remove(&(namespace, name));
                }
            }
            Record::Version { rv } => loaded.rv = loaded.rv.max(rv),
        }
    }
    Ok(loaded)
}

fn encode(record: &Record) -> Result<Vec<u8>, PersistError> {
    let mut line = serde_json::to_vec(record).map_err(PersistError::Encode)?;
    line.push(b'\n');
    Ok(line)
}

impl Log {
    /// Rewrites the log in `dir` to hold exactly `loaded` (temp file, fsync, rename, fsync of the
    /// directory) and opens it for appending.
    ///
    /// # Errors
    /// [`PersistError`] on i/o failure.
    pub fn compact(dir: &Path, loaded: &Loaded) -> Result<Self, PersistError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOG_FILE);
        let tmp = dir.join(format!("{LOG_FILE}.tmp"));
        {
            let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(io(&tmp))?);
            out.write_all(&encode(&Record::Version { rv: loaded.rv })?)
                .map_err(io(&tmp))?;
            for (resource, objects) in &loaded.objects {
                for ((namespace, name), object) in objects {
                    let record = Record::Put {
                        rv: loaded.rv,
                        resource: resource.clone(),
                        namespace: namespace.clone(),
                        name: name.clone(),
                        object: object.clone(),
                    };
                    out.write_all(&encode(&record)?).map_err(io(&tmp))?;
                }
            }
            let file = out.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
            file.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Self { file, path })
    }

    /// Appends one record and waits until it is on disk.
    ///
    /// # Errors
    /// [`PersistError`] on i/o failure.
    pub fn append(&mut self, record: &Record) -> Result<(), PersistError> {
        let line = encode(record)?;
        self.file.write_all(&line).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}

/// Writes `bytes` to a new file at `path` readable by its owner only, through a temporary file
/// (`PATH.tmp`, made afresh: a leftover one is removed, never followed or reused) renamed into
/// place, the directory synced after, so a crash never leaves half a key.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replay_and_compact() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::compact(dir.path(), &Loaded::default()).unwrap();
        let put = |rv, name: &str| Record::Put {
            rv,
            resource: "configmaps".into(),
            namespace: "default".into(),
            name: name.into(),
            object: json!({"n": name}),
        };
        log.append(&put(1, "a")).unwrap();
        log.append(&put(2, "b")).unwrap();
        log.append(&Record::Delete {
            rv: 3,
            resource: "configmaps".into(),
            namespace: "default".into(),
            name: "a".into(),
        })
        .unwrap();
        drop(log);
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.rv, 3);
        assert_eq!(loaded.objects["configmaps"].len(), 1);
        Log::compact(dir.path(), &loaded).unwrap();
        let again = load(dir.path()).unwrap();
        assert_eq!(again.rv, 3);
        assert_eq!(again.objects["configmaps"].len(), 1);
    }

    #[test]
    fn torn_tail_is_dropped_but_corruption_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LOG_FILE),
            "{\"op\":\"version\",\"rv\":4}\n{\"op\":\"put\",",
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap().rv, 4);
        std::fs::write(
            dir.path().join(LOG_FILE),
            "garbage\n{\"op\":\"version\",\"rv\":4}\n",
        )
        .unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(PersistError::Corrupt { line: 1, .. })
        ));
    }
}
