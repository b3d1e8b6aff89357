//! A template: text with `{{key}}` placeholders, every one of which must be given a value.

/// A placeholder with no value, or one left open.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// `{{key}}` has no value.
    #[error("no value for placeholder {{{{{key}}}}}")]
    Unknown {
        /// The placeholder's key.
        key: String,
    },
    /// `{{` is never closed.
    #[error("placeholder opened at byte {at} is never closed")]
    Unclosed {
        /// Where it opens.
        at: usize,
    },
}

/// Template text.
#[derive(Debug, Clone, Copy)]
pub struct Template<'a>(&'a str);

impl<'a> Template<'a> {
    /// The template `text`.
    #[must_use]
    pub fn new(text: &'a str) -> Self {
        Self(text)
    }

    /// The text with each `{{key}}` replaced by its value in `values`.
    ///
    /// # Errors
    /// A placeholder with no value, or one never closed.
    pub fn render(self, values: &[(&str, &str)]) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or(TemplateError::Unclosed { at: offset + open })?;
            let key = &after[..close];
            let value = values
                .iter()
                .find(|(k, _)| *k == key)
                .ok_or_else(|| TemplateError::Unknown {
                    key: key.to_owned(),
                })?
                .1;
            out.push_str(value);
            let used = open + 2 + close + 2;
            offset += used;
            rest = &rest[used..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_and_unknown_ones_refused() {
        let t = Template::new("a {{x}} b {{y}}{{x}}");
        assert_eq!(t.render(&[("x", "1"), ("y", "2")]).unwrap(), "a 1 b 21");
        assert!(matches!(
            t.render(&[("x", "1")]),
            Err(TemplateError::Unknown { key }) if key == "y"
        ));
        assert!(matches!(
            Template::new("a {{x").render(&[]),
            Err(TemplateError::Unclosed { at: 2 })
        ));
    }
}
