//! Store URLs → backends.

use std::sync::Arc;

use crate::backend::TaskStore;
use crate::error::{Error, Result};
use crate::folder::{FolderTaskStore, blocking};
use crate::memory::MemoryTaskStore;
use crate::postgres::PostgresTaskStore;
use crate::redis::RedisTaskStore;
use crate::sqlite::SqliteTaskStore;

/// The URL forms [`crate::FlowStore::open`] takes, for messages.
pub const FORMS: &str = "memory: (in this process only), a folder path (./flow-tasks or \
folder:PATH), sqlite:PATH or a path ending in .db/.sqlite/.sqlite3, \
postgres://USER@HOST[:PORT]/DATABASE[?schema=NAME], redis://HOST[:PORT][/DB]";

/// What a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// `memory:`.
    Memory,
    /// A folder.
    Folder(std::path::PathBuf),
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
    /// A Redis URL.
    Redis(String),
}

/// Reads a store URL: `memory:`; `sqlite:PATH`, `sqlite://PATH` or a bare path ending in
/// `.db`, `.sqlite`, `.sqlite3`; `postgres://…`/`postgresql://…`; `redis://…`; `folder:PATH`,
/// `file://PATH` or any other bare path (a folder).
pub fn parse_url(url: &str) -> Result<Location> {
    let bad = |expected: &str| Error::InvalidUrl {
        url: redact(url),
        expected: expected.to_string(),
    };
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(bad(FORMS));
    }
    let lower = trimmed.to_ascii_lowercase();
    let strip = |prefix_len: usize| {
        let rest = &trimmed[prefix_len..];
        rest.strip_prefix("//").unwrap_or(rest).to_string()
    };
    if lower == "memory:" || lower == "memory://" || lower == "memory" {
        return Ok(Location::Memory);
    }
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(Location::Postgres(trimmed.to_string()));
    }
    if lower.starts_with("redis://") {
        return Ok(Location::Redis(trimmed.to_string()));
    }
    let path_of = |s: String| {
        if s.is_empty() {
            Err(bad(
                "a path after the scheme (sqlite:./flow.db, folder:./flow-tasks)",
            ))
        } else {
            Ok(std::path::PathBuf::from(s))
        }
    };
    if lower.starts_with("sqlite:") {
        return path_of(strip("sqlite:".len())).map(Location::Sqlite);
    }
    if lower.starts_with("folder:") {
        return path_of(strip("folder:".len())).map(Location::Folder);
    }
    if lower.starts_with("file:") {
        return path_of(strip("file:".len())).map(Location::Folder);
    }
    if let Some((scheme, _)) = trimmed.split_once("://") {
        return Err(bad(&format!(
            "one of: {FORMS} (the scheme {scheme:?} is not one of them)"
        )));
    }
    if [".db", ".sqlite", ".sqlite3"]
        .iter()
        .any(|ext| lower.ends_with(ext))
    {
        return Ok(Location::Sqlite(trimmed.into()));
    }
    Ok(Location::Folder(trimmed.into()))
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    match auth.rsplit_once('@') {
        Some((cred, host)) => match cred.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Opens the backend `url` names; an unreachable server or unwritable path is
/// [`Error::Unreachable`] naming the URL.
pub async fn open_backend(url: &str) -> Result<Arc<dyn TaskStore>> {
    Ok(match parse_url(url)? {
        Location::Memory => Arc::new(MemoryTaskStore::new()),
        Location::Folder(path) => {
            let p = path.clone();
            Arc::new(blocking(url, move || FolderTaskStore::open(&p)).await?)
        }
        Location::Sqlite(path) => {
            let p = path.clone();
            Arc::new(blocking(url, move || SqliteTaskStore::open(&p)).await?)
        }
        Location::Postgres(u) => Arc::new(PostgresTaskStore::open(&u).await?),
        Location::Redis(u) => Arc::new(RedisTaskStore::open(&u).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(parse_url("memory:").unwrap(), Location::Memory);
        assert_eq!(
            parse_url("./flow.db").unwrap(),
            Location::Sqlite("./flow.db".into())
        );
        assert_eq!(
            parse_url("sqlite:///tmp/a.x").unwrap(),
            Location::Sqlite("/tmp/a.x".into())
        );
        assert_eq!(
            parse_url("sqlite:a.x").unwrap(),
            Location::Sqlite("a.x".into())
        );
        assert_eq!(
            parse_url("./tasks-store").unwrap(),
            Location::Folder("./tasks-store".into())
        );
        assert!(matches!(
            parse_url("postgresql://u@h/d").unwrap(),
            Location::Postgres(_)
        ));
        assert!(matches!(
            parse_url("redis://127.0.0.1:6379").unwrap(),
            Location::Redis(_)
        ));
        let e = parse_url("mysql://u:secret@h/d").unwrap_err().to_string();
        assert!(e.contains("mysql") && !e.contains("secret"), "{e}");
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://:***@h:1/0");
    }
}
