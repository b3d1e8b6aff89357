//! Static token users from a CSV file, as kube-apiserver's `--token-auth-file` reads it: one line a
//! user, `token,user name,uid[,"group1,group2"]`.

use std::path::Path;

use k8s_openapi::api::authentication::v1::UserInfo;

use crate::auth::{BearerToken, TokenError};

/// A token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("reading the token file")]
    Read(#[source] std::io::Error),
    /// The file is not CSV.
    #[error("parsing the token file")]
    Csv(#[source] csv::Error),
    /// A record has fewer than three columns.
    #[error(
        "record {record} of the token file must have at least 3 columns (token, user name, user uid), found {found}"
    )]
    Columns {
        /// The record number, from 1.
        record: usize,
        /// The columns found.
        found: usize,
    },
    /// A record's token is not a usable bearer token.
    #[error("record {record} of the token file")]
    Token {
        /// The record number, from 1.
        record: usize,
        /// Why.
        #[source]
        source: TokenError,
    },
    /// A record has no user name.
    #[error("record {record} of the token file has no user name")]
    NoName {
        /// The record number, from 1.
        record: usize,
    },
}

/// The users of a token file's text. A record with an empty token is skipped (with a warning), as
/// kube-apiserver does; groups are the fourth column split on `,`.
///
/// # Errors
/// [`TokenFileError`] for malformed CSV, records with fewer than three columns, tokens that are
/// not RFC 6750 `b64token`s or an empty user name.
pub fn parse(text: &str) -> Result<Vec<(BearerToken, UserInfo)>, TokenFileError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut users = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record_number = index + 1;
        let record = record.map_err(TokenFileError::Csv)?;
        if record.len() < 3 {
            return Err(TokenFileError::Columns {
                record: record_number,
                found: record.len(),
            });
        }
        let token = record.get(0).unwrap_or_default();
        if token.is_empty() {
            tracing::warn!(
                record = record_number,
                "empty token in the token file; skipped"
            );
            continue;
        }
        let token = BearerToken::new(token).map_err(|source| TokenFileError::Token {
            record: record_number,
            source,
        })?;
        let name = record.get(1).unwrap_or_default();
        if name.is_empty() {
            return Err(TokenFileError::NoName {
                record: record_number,
            });
        }
        let uid = record.get(2).unwrap_or_default();
        let groups = record
            .get(3)
            .map(|g| g.split(',').map(str::to_owned).collect());
        users.push((
            token,
            UserInfo {
                username: Some(name.to_owned()),
                uid: (!uid.is_empty()).then(|| uid.to_owned()),
                groups,
                extra: None,
            },
        ));
    }
    Ok(users)
}

/// The users of the token file at `path` (see [`parse`]).
///
/// # Errors
/// [`TokenFileError::Read`] when it cannot be read, else as [`parse`].
pub fn read(path: &Path) -> Result<Vec<(BearerToken, UserInfo)>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(TokenFileError::Read)?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_users() {
        let users = parse(
            "t1,alice,u1,\"dev,ops\"\nt2,bob,u2\n,skipped,u3\nt4,system:serviceaccount:ns:sa,,\n",
        )
        .unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users[0].0.as_str(), "t1");
        assert_eq!(users[0].1.username.as_deref(), Some("alice"));
        assert_eq!(users[0].1.uid.as_deref(), Some("u1"));
        assert_eq!(
            users[0].1.groups.as_deref(),
            Some(&["dev".to_owned(), "ops".to_owned()][..])
        );
        assert_eq!(users[1].1.groups, None);
        assert_eq!(users[2].1.uid, None);
    }

    #[test]
    fn bad_records_are_refused() {
        assert!(matches!(
            parse("t1,alice\n"),
            Err(TokenFileError::Columns {
                record: 1,
                found: 2
            })
        ));
        assert!(matches!(
            parse("t1,alice,u\nt 2,bob,u\n"),
            Err(TokenFileError::Token { record: 2, .. })
        ));
        assert!(matches!(
            parse("t1,,u\n"),
            Err(TokenFileError::NoName { record: 1 })
        ));
        assert!(
            matches!(
                parse("t1,\"alice,u\n"),
                Err(TokenFileError::Columns {
                    record: 1,
                    found: 2
                })
            ),
            "an unterminated quote runs to the end"
        );
    }
}
