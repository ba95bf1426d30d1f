//! The storage policy, in one place: which backends are compiled in, which setting wins, and
//! what an unset `DATABASE_URL` means.
//!
//! Order: `--adaptor` (where a command offers it) › `DATABASE_URL` (alias `SUPABASE_DB_URL`) ›
//! `adaptor` in `.sequentialrc.json` › folder storage under `SEQUENTIAL_TASKS_DIR` (default
//! `./tasks`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use sequential_adaptor::{MemoryFactory, Registry, StorageAdapter, scheme_of};
use sequential_adaptor_folder::FolderFactory;
use sequential_adaptor_postgres::PostgresFactory;
use sequential_adaptor_sqlite::SqliteFactory;
use serde::Serialize;

use crate::error::{UserError, user};
use crate::rc::RcFile;

/// The SQLite database `--adaptor sqlite` means when `DATABASE_URL` is not SQLite.
pub const DEFAULT_SQLITE_URL: &str = "sqlite:./sequential.db";

/// The URL forms accepted, for messages.
const FORMS: &str = "folder:PATH (or a plain path), sqlite:PATH (or a plain path ending in .db, .sqlite or \
     .sqlite3), sqlite::memory:, \
     postgres://USER@HOST[:PORT]/DATABASE (or postgresql://), memory: (lives as long as the process)";

/// The environment the policy reads, captured once per process.
#[derive(Debug, Clone)]
pub struct Env {
    /// `DATABASE_URL`, if set and non-empty.
    pub database_url: Option<String>,
    /// `SUPABASE_DB_URL`, if set and non-empty.
    pub supabase_db_url: Option<String>,
    /// `SUPABASE_URL` or `SUPABASE_KEY` is set (the REST API, which is not a database URL).
    pub supabase_rest: bool,
    /// The task folders' directory: `SEQUENTIAL_TASKS_DIR`, default `./tasks`.
    pub tasks_dir: PathBuf,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Env {
            database_url: var("DATABASE_URL"),
            supabase_db_url: var("SUPABASE_DB_URL"),
            supabase_rest: var("SUPABASE_URL").is_some() || var("SUPABASE_KEY").is_some(),
            tasks_dir: var("SEQUENTIAL_TASKS_DIR")
                .map_or_else(|| PathBuf::from("tasks"), PathBuf::from),
        }
    }

    /// The folder-storage URL of the default: `folder:<tasks dir>`.
    pub fn default_folder_url(&self) -> String {
        format!("folder:{}", self.tasks_dir.display())
    }

    /// `DATABASE_URL`, or its alias `SUPABASE_DB_URL`, with the variable's name.
    fn database_url(&self) -> Option<(&str, Source)> {
        self.database_url
            .as_deref()
            .map(|u| (u, Source::DatabaseUrl))
            .or_else(|| {
                self.supabase_db_url
                    .as_deref()
                    .map(|u| (u, Source::SupabaseDbUrl))
            })
    }
}

/// Where the chosen storage came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The command's `--adaptor` flag.
    Flag,
    /// `DATABASE_URL`.
    DatabaseUrl,
    /// `SUPABASE_DB_URL` (alias of `DATABASE_URL`).
    SupabaseDbUrl,
    /// `adaptor` in `.sequentialrc.json`.
    RcFile,
    /// Nothing set: folder storage under the tasks directory.
    Default,
}

impl Source {
    /// For messages: where the setting came from.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Flag => "--adaptor",
            Source::DatabaseUrl => "DATABASE_URL",
            Source::SupabaseDbUrl => "SUPABASE_DB_URL",
            Source::RcFile => "\"adaptor\" in .sequentialrc.json",
            Source::Default => {
                "the default (DATABASE_URL unset, no \"adaptor\" in .sequentialrc.json)"
            }
        }
    }
}

/// A storage choice: the normalized URL and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// The normalized URL, e.g. `folder:tasks` or `sqlite:./sequential.db`, with any password
    /// replaced by `***`: safe to print.
    pub url: String,
    /// Where it came from.
    pub source: Source,
    /// The URL as given (password included), for opening only.
    #[serde(skip)]
    connect: String,
}

impl Choice {
    fn new(url: String, source: Source) -> Self {
        Choice {
            url: shown(&url),
            source,
            connect: url,
        }
    }

    /// The URL to connect with: [`Choice::url`] with its password, if it has one. Never print it.
    pub fn connect_url(&self) -> &str {
        &self.connect
    }
}

/// An opened storage backend.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The adapter.
    pub adapter: Arc<dyn StorageAdapter>,
    /// What was opened and why.
    pub choice: Choice,
}

/// THE storage policy: chooses a backend (`--adaptor` › `DATABASE_URL`/`SUPABASE_DB_URL` ›
/// `.sequentialrc.json` › folder default) and opens it through a [`Registry`] holding the
/// backends compiled into this binary.
pub async fn open(env: &Env, rc: &RcFile, flag: Option<&str>) -> Result<Opened> {
    open_choice(choose(env, rc, flag)?).await
}

/// Opens a [`Choice`] through the registry of compiled-in backends, creating the storage (or
/// migrating a PostgreSQL schema) when needed: for commands that write.
pub async fn open_choice(choice: Choice) -> Result<Opened> {
    open_with(choice, PostgresFactory::default()).await
}

/// Opens a [`Choice`] for a command that only reads: `None` when folder or SQLite storage does
/// not exist yet (nothing is created); a PostgreSQL database whose schema was never migrated is
/// an error that says to run `sequential-ecosystem migrate` (nothing is created either).
pub async fn open_existing(choice: Choice) -> Result<Option<Opened>> {
    if !location_exists(&choice) {
        tracing::debug!(url = %choice.url, "storage location does not exist yet");
        return Ok(None);
    }
    Ok(Some(open_with(choice, PostgresFactory::existing()).await?))
}

/// `true` for `postgres://` and `postgresql://` URLs.
pub fn is_postgres(url: &str) -> bool {
    matches!(scheme_of(url).as_deref(), Some("postgres" | "postgresql"))
}

async fn open_with(choice: Choice, postgres: PostgresFactory) -> Result<Opened> {
    let mut registry = Registry::new();
    registry
        .register("folder", "folder:PATH (or a plain path)", FolderFactory)
        .register("sqlite", SqliteFactory::FORM, SqliteFactory)
        .register("postgres", PostgresFactory::FORM, postgres)
        .register("postgresql", "postgresql://…", postgres)
        .register("memory", "memory:[NAME]", MemoryFactory::default());
    tracing::debug!(url = %choice.url, source = ?choice.source, "opening storage");
    let adapter = registry.open(&anchored(choice.connect_url())).await.map_err(|e| {
        let postgres = is_postgres(&choice.url);
        let hint = match &e {
            sequential_adaptor::Error::NotFound { .. } if postgres => format!(
                "run `sequential-ecosystem migrate` (with the same {}) to create the tables",
                choice.source.describe()
            ),
            sequential_adaptor::Error::Unsupported { .. } if postgres => {
                "run `sequential-ecosystem migrate` for an older schema; a newer one needs a newer \
                 sequential-ecosystem (nothing was changed)"
                    .to_string()
            }
            sequential_adaptor::Error::Unsupported { .. } => {
                "it was written by a newer sequential-ecosystem; upgrade this binary (the storage was not changed)".to_string()
            }
            _ if postgres => format!(
                "check the server, user, password and database in {} (postgres://USER:PASSWORD@HOST:PORT/DATABASE); nothing was changed",
                choice.source.describe()
            ),
            _ => format!(
                "check that {} is the storage you meant and that it is accessible \
                 (it was chosen by {}); nothing was changed",
                sequential_adaptor::strip_scheme(&choice.url),
                choice.source.describe()
            ),
        };
        UserError::new(format!(
            "cannot open storage {} (from {}): {e}",
            choice.url,
            choice.source.describe()
        ))
        .hint(hint)
    })?;
    Ok(Opened { adapter, choice })
}

/// `url` with a password replaced by `***`, for messages and output.
fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Chooses the storage URL without opening it (also used by `config show`).
pub fn choose(env: &Env, rc: &RcFile, flag: Option<&str>) -> Result<Choice> {
    let (spec, source) = if let Some(flag) = flag {
        (flag.to_string(), Source::Flag)
    } else if let Some((url, source)) = env.database_url() {
        (url.to_string(), source)
    } else if env.supabase_rest {
        return Err(user(
            "SUPABASE_URL/SUPABASE_KEY name Supabase's REST API, which is not a storage backend",
            "put Supabase's direct PostgreSQL connection string (Project Settings → Database, \
             postgres://postgres:…@db.<project>.supabase.co:5432/postgres) in DATABASE_URL",
        ));
    } else if let Some(adaptor) = rc.adaptor() {
        (adaptor.to_string(), Source::RcFile)
    } else {
        return Ok(Choice::new(env.default_folder_url(), Source::Default));
    };
    let url = normalize(env, &spec).with_context(|| source.describe().to_string())?;
    Ok(Choice::new(url, source))
}

/// Turns a name (`folder`, `sqlite`), a plain path or a URL into a URL the registry knows.
fn normalize(env: &Env, spec: &str) -> Result<String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(user(
            "the storage setting is empty",
            format!("use one of: {FORMS}"),
        ));
    }
    let db_url_scheme = env
        .database_url()
        .and_then(|(u, _)| scheme_of(u).map(|s| (u, s)));
    match spec.to_ascii_lowercase().as_str() {
        "folder" | "default" => return Ok(env.default_folder_url()),
        "sqlite" => {
            return Ok(match db_url_scheme {
                Some((url, scheme)) if scheme == "sqlite" => url.to_string(),
                _ => DEFAULT_SQLITE_URL.to_string(),
            });
        }
        "postgres" | "postgresql" | "supabase" => {
            return match db_url_scheme {
                Some((url, _)) if is_postgres(url) => Ok(url.to_string()),
                _ => Err(user(
                    format!("storage {spec:?} names PostgreSQL but not which database"),
                    "give the connection URL instead, e.g. --adaptor postgres://postgres@127.0.0.1:5432/app, \
                     or set DATABASE_URL (alias SUPABASE_DB_URL) to it",
                )),
            };
        }
        _ => {}
    }
    match scheme_of(spec).as_deref() {
        None if is_sqlite_file(spec) => Ok(format!("sqlite:{spec}")),
        None => Ok(format!("folder:{spec}")),
        Some(_) => Ok(spec.to_string()),
    }
}

/// A plain path naming a SQLite file: it ends in `.db`, `.sqlite` or `.sqlite3`
/// (`DATABASE_URL=./workflow.db`). Any other plain path is a folder.
fn is_sqlite_file(path: &str) -> bool {
    let ext = Path::new(path)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    matches!(ext.as_deref(), Some("db" | "sqlite" | "sqlite3"))
}

/// `folder:tasks` → `folder:./tasks`: a relative folder path gets an explicit `./` so the
/// backend's parent directory (which it creates and fsyncs) is `.` rather than empty.
fn anchored(url: &str) -> String {
    let rest = sequential_adaptor::strip_scheme(url);
    let bare = Path::new(rest)
        .parent()
        .is_some_and(|p| p.as_os_str().is_empty());
    if scheme_of(url).as_deref() == Some("folder") && bare {
        format!("folder:./{rest}")
    } else {
        url.to_string()
    }
}

/// Whether the location `choice` names exists already. Folder and SQLite storage create
/// their location when opened; read-only commands check this first so they never do.
pub fn location_exists(choice: &Choice) -> bool {
    let rest = sequential_adaptor::strip_scheme(&choice.url);
    match scheme_of(&choice.url).as_deref() {
        Some("folder") => folder_store_exists(Path::new(rest)),
        Some("sqlite") => rest == ":memory:" || Path::new(rest).exists(),
        Some("memory") => true,
        _ => true,
    }
}

/// Whether folder storage at `root` holds anything: its bookkeeping (`.sequential/`) or a
/// task's stored versions or runs (a copied folder). A tasks directory with only task folders
/// (code.js, config.json) stores nothing yet, and opening it would create `.sequential/`.
fn folder_store_exists(root: &Path) -> bool {
    if root.join(".sequential").exists() {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return false;
    };
    entries
        .filter_map(|e| e.ok())
        .any(|e| e.path().join("versions").is_dir() || e.path().join("runs").is_dir())
}
