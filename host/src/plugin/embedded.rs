//! The manifest a component carries in its `capstan:manifest` custom section, so that tools read
//! it without running the guest (as Kubewarden policies carry their metadata). `describe` stays
//! the source of truth: a component whose section disagrees with it is refused at load.

use crate::contract::Manifest;
use std::ops::Range;
use wasmparser::{Parser, Payload};

/// The name of the custom section.
pub const SECTION: &str = "capstan:manifest";

/// Why the embedded manifest cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The bytes are not a WebAssembly binary.
    #[error("not a WebAssembly binary")]
    Parse(#[source] wasmparser::BinaryReaderError),
    /// The section appears more than once at the top level.
    #[error("the {SECTION} section appears more than once")]
    Duplicate,
    /// The section is not a manifest in JSON.
    #[error("the {SECTION} section is not a manifest")]
    Json(#[source] serde_json::Error),
    /// The bytes are a core module, not a component.
    #[error("a core module, not a component")]
    NotAComponent,
}

/// The top-level sections of a component, with the `capstan:manifest` payload if there is one.
struct Sections {
    /// Every top-level section but `capstan:manifest`: id and byte range of its contents.
    others: Vec<(u8, Range<usize>)>,
    /// The manifest section's payload range.
    manifest: Option<Range<usize>>,
}

fn sections(bytes: &[u8]) -> Result<Sections, EmbeddedError> {
    let mut out = Sections {
        others: Vec::new(),
        manifest: None,
    };
    // Nested modules and components appear in the stream between their `Version` and `End`.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(EmbeddedError::Parse)?;
        match &payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && *encoding != wasmparser::Encoding::Component {
                    return Err(EmbeddedError::NotAComponent);
                }
                depth += 1;
                continue;
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            _ => {}
        }
        if depth != 1 {
            continue;
        }
        if let Payload::CustomSection(c) = &payload
            && c.name() == SECTION
        {
            if out.manifest.is_some() {
                return Err(EmbeddedError::Duplicate);
            }
            out.manifest = Some(c.data_offset()..c.data_offset() + c.data().len());
            continue;
        }
        if let Some(section) = payload.as_section() {
            out.others.push(section);
        }
    }
    Ok(out)
}

/// The manifest embedded in a component, if it carries one.
pub fn read(bytes: &[u8]) -> Result<Option<Manifest>, EmbeddedError> {
    let Some(range) = sections(bytes)?.manifest else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes[range])
        .map(Some)
        .map_err(EmbeddedError::Json)
}

/// The component with `manifest` embedded, replacing any manifest it carried.
pub fn embed(bytes: &[u8], manifest: &Manifest) -> Result<Vec<u8>, EmbeddedError> {
    let found = sections(bytes)?;
    let mut component = wasm_encoder::Component::new();
    for (id, range) in found.others {
        component.section(&wasm_encoder::RawSection {
            id,
            data: &bytes[range],
        });
    }
    let json = serde_json::to_vec(manifest).map_err(EmbeddedError::Json)?;
    component.section(&wasm_encoder::CustomSection {
        name: SECTION.into(),
        data: json.into(),
    });
    Ok(component.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Gvk;

    /// The smallest component: the header alone.
    fn empty_component() -> Vec<u8> {
        wasm_encoder::Component::new().finish()
    }

    #[test]
    fn a_manifest_round_trips_and_replaces_the_previous_one() {
        let mut m = Manifest::new("web", "1.0.0");
        m.watches.push(Gvk::new("apps", "v1", "Deployment"));
        let bytes = empty_component();
        assert!(read(&bytes).unwrap().is_none());
        let once = embed(&bytes, &m).unwrap();
        assert_eq!(read(&once).unwrap(), Some(m.clone()));
        m.version = "2.0.0".into();
        let twice = embed(&once, &m).unwrap();
        assert_eq!(read(&twice).unwrap(), Some(m), "replaced, not duplicated");
        wasmparser::Validator::new().validate_all(&twice).unwrap();
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(matches!(read(b"not wasm"), Err(EmbeddedError::Parse(_))));
        let module = wasm_encoder::Module::new().finish();
        assert!(matches!(read(&module), Err(EmbeddedError::NotAComponent)));
        let mut bytes = empty_component();
        let mut c = wasm_encoder::Component::new();
        c.section(&wasm_encoder::CustomSection {
            name: SECTION.into(),
            data: b"{not json".as_slice().into(),
        });
        bytes = [bytes, c.finish()[8..].to_vec()].concat();
        assert!(matches!(read(&bytes), Err(EmbeddedError::Json(_))));
        let doubled = [bytes.clone(), bytes[8..].to_vec()].concat();
        assert!(matches!(read(&doubled), Err(EmbeddedError::Duplicate)));
    }
}
