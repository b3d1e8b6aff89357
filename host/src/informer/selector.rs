//! Kubernetes label selectors (`a=b,c!=d,e in (f,g),!h`): parsing and matching against labels.

use std::collections::BTreeMap;

use super::InformerError;

/// A parsed label selector: every requirement must hold (an empty selector matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key=v`, `key==v`, `key in (v, ...)`.
    In(Vec<String>),
    /// `key!=v`, `key notin (v, ...)`: also holds when the label is absent.
    NotIn(Vec<String>),
    /// `key>n`.
    Gt(i64),
    /// `key<n`.
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Not,
    Eq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

fn lex(input: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | '<' | '>' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    ',' => Token::Comma,
                    '<' => Token::Lt,
                    _ => Token::Gt,
                });
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                }
                out.push(Token::Eq);
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    out.push(Token::NotEq);
                } else {
                    out.push(Token::Not);
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()<>,=!".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    out
}

fn is_name(s: &str, max: usize) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= max
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || "-_.".contains(c))
}

fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let dns = |label: &str| {
            is_name(label, 63)
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if prefix.len() > 253 || !prefix.split('.').all(dns) {
            return Err(format!("invalid label key prefix {prefix:?}"));
        }
    }
    if !is_name(name, 63) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name(value, 63) {
        Ok(())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn key(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(key)) => {
                check_key(&key)?;
                Ok(key)
            }
            other => Err(format!("expected a label key, found {other:?}")),
        }
    }

    /// A single value; empty when the requirement ends right after the operator.
    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Token::Word(_)) => match self.next() {
                Some(Token::Word(v)) => {
                    check_value(&v)?;
                    Ok(v)
                }
                _ => Err("expected a value".into()),
            },
            None | Some(Token::Comma) => Ok(String::new()),
            Some(other) => Err(format!("expected a value, found {other:?}")),
        }
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Token::Open) {
            return Err("expected '(' after in/notin".into());
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token::Word(v)) => {
                    check_value(&v)?;
                    values.push(v);
                    match self.next() {
                        Some(Token::Comma) => {}
                        Some(Token::Close) => break,
                        other => return Err(format!("expected ',' or ')', found {other:?}")),
                    }
                }
                Some(Token::Close) if values.is_empty() => {
                    return Err("in/notin needs at least one value".into());
                }
                other => return Err(format!("expected a value, found {other:?}")),
            }
        }
        Ok(values)
    }

    fn number(&mut self) -> Result<i64, String> {
        match self.next() {
            Some(Token::Word(v)) => v
                .parse()
                .map_err(|_| format!("expected an integer, found {v:?}")),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Token::Not) {
            self.next();
            let key = self.key()?;
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
            });
        }
        let key = self.key()?;
        let op = match self.peek() {
            None | Some(Token::Comma) => Op::Exists,
            Some(Token::Eq) => {
                self.next();
                Op::In(vec![self.value()?])
            }
            Some(Token::NotEq) => {
                self.next();
                Op::NotIn(vec![self.value()?])
            }
            Some(Token::Gt) => {
                self.next();
                Op::Gt(self.number()?)
            }
            Some(Token::Lt) => {
                self.next();
                Op::Lt(self.number()?)
            }
            Some(Token::Word(w)) if w == "in" => {
                self.next();
                Op::In(self.set()?)
            }
            Some(Token::Word(w)) if w == "notin" => {
                self.next();
                Op::NotIn(self.set()?)
            }
            Some(other) => return Err(format!("unexpected {other:?} after key {key:?}")),
        };
        Ok(Requirement { key, op })
    }
}

impl LabelSelector {
    /// Parses a selector in Kubernetes syntax: comma-separated `k=v`, `k==v`, `k!=v`,
    /// `k in (v1,v2)`, `k notin (v1,v2)`, `k` (exists), `!k` (absent), `k>n`, `k<n`.
    ///
    /// # Errors
    /// [`InformerError::InvalidSelector`] when the text is not a valid selector.
    pub fn parse(input: &str) -> Result<Self, InformerError> {
        Self::parse_inner(input).map_err(|reason| InformerError::InvalidSelector {
            selector: input.to_owned(),
            reason,
        })
    }

    fn parse_inner(input: &str) -> Result<Self, String> {
        let mut parser = Parser {
            tokens: lex(input),
            pos: 0,
        };
        let mut requirements = Vec::new();
        if parser.tokens.is_empty() {
            return Ok(Self { requirements });
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some(Token::Comma) => {}
                Some(other) => return Err(format!("expected ',' found {other:?}")),
            }
        }
        Ok(Self { requirements })
    }

    /// Whether the selector matches everything.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` (absent: no labels) satisfy every requirement.
    #[must_use]
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key));
            match &r.op {
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::In(values) => value.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => !value.is_some_and(|v| values.contains(v)),
                Op::Gt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                Op::Lt(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn matches(selector: &str, pairs: &[(&str, &str)]) -> bool {
        LabelSelector::parse(selector)
            .unwrap()
            .matches(Some(&labels(pairs)))
    }

    #[test]
    fn equality_and_inequality() {
        assert!(matches("app=web", &[("app", "web")]));
        assert!(matches("app==web", &[("app", "web")]));
        assert!(!matches("app=web", &[("app", "db")]));
        assert!(!matches("app=web", &[]));
        assert!(matches("app!=web", &[("app", "db")]));
        assert!(matches("app!=web", &[]));
        assert!(!matches("app!=web", &[("app", "web")]));
        assert!(matches("app=", &[("app", "")]));
    }

    #[test]
    fn sets_existence_and_conjunction() {
        let l = [("app", "web"), ("tier", "front"), ("example.com/team", "a")];
        assert!(matches("app in (web, db)", &l));
        assert!(!matches("app in (db)", &l));
        assert!(matches("app notin (db,cache)", &l));
        assert!(matches("missing notin (x)", &l));
        assert!(matches("tier", &l));
        assert!(matches("!missing", &l));
        assert!(!matches("!tier", &l));
        assert!(matches(
            "app=web, tier in (front,back),!x,example.com/team",
            &l
        ));
        assert!(!matches("app=web,tier=back", &l));
        assert!(matches("", &l));
        assert!(LabelSelector::parse("  ").unwrap().is_empty());
        assert!(
            LabelSelector::parse("a")
                .unwrap()
                .matches(Some(&labels(&[("a", "")])))
        );
        assert!(!LabelSelector::parse("a").unwrap().matches(None));
    }

    #[test]
    fn numeric_comparisons() {
        assert!(matches("replicas>2", &[("replicas", "3")]));
        assert!(!matches("replicas>2", &[("replicas", "x")]));
        assert!(matches("replicas<2", &[("replicas", "1")]));
    }

    #[test]
    fn invalid_selectors_are_errors() {
        for bad in [
            "app in (web",
            "app in ()",
            "app in web",
            "=web",
            "app=web=x",
            "app=-bad",
            "!",
            "app=web,",
            "a b",
            "Bad_Prefix.com/x=y",
            "app>x",
            "(app)",
        ] {
            let err = LabelSelector::parse(bad).unwrap_err();
            assert!(
                matches!(err, InformerError::InvalidSelector { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("invalid label selector"), "{err}");
        }
    }
}
