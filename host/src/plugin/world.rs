//! Telling which world a component implements, and against which contract version, from its exports.

use crate::contract::{CONTRACT_VERSION, ContractVersion, PACKAGE, World};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Why a component is not a plugin this host can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// No export of the `capstan:controller` package.
    #[error("not a capstan plugin: it exports [{0}], none from {PACKAGE}")]
    NotAPlugin(String),
    /// Exports of the package, but not a known world.
    #[error(
        "unknown world: it exports [{0}]; a plugin exports `plugin` and `handler`, `reconciler` or both"
    )]
    UnknownWorld(String),
    /// Exports from several contract versions.
    #[error("exports from several contract versions: [{0}]")]
    MixedVersions(String),
    /// Built against a contract this host does not accept.
    #[error(
        "built against contract {plugin}, this host implements {host} and loads {host_line} up to it"
    )]
    IncompatibleContract {
        /// The plugin's contract version.
        plugin: String,
        /// The host's.
        host: ContractVersion,
        /// The accepted line, e.g. `0.1.x`.
        host_line: String,
    },
}

/// The world and contract version of a component.
pub fn detect(
    component: &Component,
    engine: &Engine,
) -> Result<(World, ContractVersion), WorldError> {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let prefix = format!("{PACKAGE}/");
    let ours: Vec<(&str, Option<&str>)> = names
        .iter()
        .filter_map(|n| n.strip_prefix(&prefix))
        .map(|rest| match rest.split_once('@') {
            Some((iface, version)) => (iface, Some(version)),
            None => (rest, None),
        })
        .collect();
    if ours.is_empty() {
        return Err(WorldError::NotAPlugin(names.join(", ")));
    }
    let mut versions: Vec<Option<&str>> = ours.iter().map(|(_, v)| *v).collect();
    versions.dedup();
    if versions.len() > 1 {
        return Err(WorldError::MixedVersions(names.join(", ")));
    }
    let raw = versions[0].unwrap_or("unversioned");
    let version = ContractVersion::parse(raw)
        .filter(|v| CONTRACT_VERSION.accepts(v))
        .ok_or_else(|| WorldError::IncompatibleContract {
            plugin: raw.to_owned(),
            host: CONTRACT_VERSION,
            host_line: format!("{}.{}.x", CONTRACT_VERSION.major, CONTRACT_VERSION.minor),
        })?;
    let has = |iface: &str| ours.iter().any(|(i, _)| *i == iface);
    let world = match (has("plugin"), has("handler"), has("reconciler")) {
        (true, true, true) => World::ControllerPlugin,
        (true, true, false) => World::HandlerPlugin,
        (true, false, true) => World::ReconcilerPlugin,
        _ => return Err(WorldError::UnknownWorld(names.join(", "))),
    };
    Ok((world, version))
}
