//! Applying a directory of YAML manifests at start: CustomResourceDefinitions first, then the rest.

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors applying manifests; each names the file and, where known, the object.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A YAML document could not be parsed as a Kubernetes object.
    #[error("{path}: document {index} is not a Kubernetes object: {reason}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Document number, from 1.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The API server refused an object.
    #[error("{path}: cannot apply {object}")]
    Apply {
        /// File.
        path: PathBuf,
        /// `Kind namespace/name`.
        object: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
}

struct Doc {
    path: PathBuf,
    object: DynamicObject,
}

fn read_docs(dir: &Path) -> Result<Vec<Doc>, ManifestError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ManifestError::Read {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for path in files {
        let text = read(&path)?;
        docs.extend(parse_docs(&path, &text)?);
    }
    Ok(docs)
}

/// The objects of the YAML documents of `text` (read from `path`), empty documents skipped.
fn parse_docs(path: &Path, text: &str) -> Result<Vec<Doc>, ManifestError> {
    let mut docs = Vec::new();
    let mut bytes = text.as_bytes();
    for (i, doc) in serde_saphyr::read::<_, serde_json::Value>(&mut bytes).enumerate() {
        let value = doc.map_err(|e| ManifestError::Parse {
            path: path.to_owned(),
            index: i + 1,
            reason: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_json::from_value(value).map_err(|e| ManifestError::Parse {
                path: path.to_owned(),
                index: i + 1,
                reason: e.to_string(),
            })?;
        if object.types.is_none() || object.metadata.name.is_none() {
            return Err(ManifestError::Parse {
                path: path.to_owned(),
                index: i + 1,
                reason: "apiVersion, kind and metadata.name are required".into(),
            });
        }
        docs.push(Doc {
            path: path.to_owned(),
            object,
        });
    }
    Ok(docs)
}

/// The objects of every YAML document in one file (`capstan render` reads its inputs so).
///
/// # Errors
/// [`ManifestError::Read`] or [`ManifestError::Parse`], naming the file.
pub fn read_file(path: &Path) -> Result<Vec<DynamicObject>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(parse_docs(path, &text)?
        .into_iter()
        .map(|d| d.object)
        .collect())
}

/// The objects of every YAML document in `dir` (`*.yaml`, `*.yml`, by file name), as
/// [`apply_dir`] reads them.
///
/// # Errors
/// [`ManifestError::Read`] or [`ManifestError::Parse`], naming the file.
pub fn read_dir(dir: &Path) -> Result<Vec<DynamicObject>, ManifestError> {
    Ok(read_docs(dir)?.into_iter().map(|d| d.object).collect())
}

/// Apply every YAML document in `dir` with server-side apply, CRDs first (waiting until each is
/// served). Returns the number of objects applied.
pub async fn apply_dir(client: &kube::Client, dir: &Path) -> Result<usize, ManifestError> {
    let mut docs = read_docs(dir)?;
    docs.sort_by_key(|d| {
        d.object
            .types
            .as_ref()
            .is_none_or(|t| t.kind != "CustomResourceDefinition")
    });
    let params = PatchParams::apply("capstan-manifests").force();
    for doc in &docs {
        let Some(types) = doc.object.types.as_ref() else {
            continue;
        };
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let name = doc.object.metadata.name.clone().unwrap_or_default();
        let object = format!("{} {}", types.kind, name);
        let apply_err = |e: kube::Error| ManifestError::Apply {
            path: doc.path.clone(),
            object: object.clone(),
            source: Box::new(e),
        };
        let (ar, caps) = resolve(client, &gvk).await.map_err(apply_err)?;
        let api: Api<DynamicObject> = match (&caps.scope, doc.object.metadata.namespace.as_deref())
        {
            (kube::discovery::Scope::Namespaced, ns) => {
                Api::namespaced_with(client.clone(), ns.unwrap_or("default"), &ar)
            }
            (kube::discovery::Scope::Cluster, _) => Api::all_with(client.clone(), &ar),
        };
        api.patch(&name, &params, &Patch::Apply(&doc.object))
            .await
            .map_err(apply_err)?;
        tracing::info!(path = %doc.path.display(), object, "applied");
    }
    Ok(docs.len())
}

/// Resolve a kind, retrying for a few seconds (a CRD just applied takes a moment to be served).
async fn resolve(
    client: &kube::Client,
    gvk: &GroupVersionKind,
) -> Result<
    (
        kube::discovery::ApiResource,
        kube::discovery::ApiCapabilities,
    ),
    kube::Error,
> {
    let mut last = None;
    for _ in 0..50 {
        match kube::discovery::pinned_kind(client, gvk).await {
            Ok(found) => return Ok(found),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.unwrap_or_else(|| {
        kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(gvk.kind.clone()))
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A manifest as kubectl reads it: a stream of documents (an empty one skipped), and YAML 1.1
    /// booleans (`yes`, `on`, `off`, `no`, unquoted) that are booleans; quoted, they stay text.
    #[test]
    fn a_multi_document_stream_with_yaml_1_1_booleans_reads_as_kubectl_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("app.yaml"),
            r#"# two objects, one stream
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    quoted: "yes"
data:
  plain: "on"
---
---
apiVersion: examples.capstan.dev/v1alpha1
kind: WebApp
metadata:
  name: shop
spec:
  enabled: yes
  public: on
  paused: off
  legacy: no
  strict: true
  replicas: 2
"#,
        )
        .unwrap();
        let docs = read_docs(dir.path()).unwrap();
        let names: Vec<_> = docs
            .iter()
            .map(|d| d.object.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["settings", "shop"]);
        let settings = &docs[0].object;
        assert_eq!(settings.metadata.labels.as_ref().unwrap()["quoted"], "yes");
        assert_eq!(settings.data["data"]["plain"], "on");
        let spec = &docs[1].object.data["spec"];
        assert_eq!(
            spec,
            &serde_json::json!({
                "enabled": true, "public": true, "paused": false, "legacy": false,
                "strict": true, "replicas": 2
            })
        );
    }

    #[test]
    fn a_document_that_is_not_an_object_is_named_by_file_and_number() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n- a list\n",
        )
        .unwrap();
        let Err(err) = read_docs(dir.path()) else {
            panic!("a list is not an object")
        };
        assert!(
            matches!(&err, ManifestError::Parse { index: 2, .. }),
            "{err}"
        );
    }
}
