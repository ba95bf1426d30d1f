//! `migrate`: brings the configured storage's schema up to date — PostgreSQL's embedded
//! migrations, applied once under an advisory lock — or, for folder and SQLite storage (which
//! migrate whenever a writing command opens them), opens the storage so it is current.

use anyhow::Result;
use sequential_adaptor_postgres::PostgresStore;
use serde::Serialize;

use super::Ctx;
use crate::error::UserError;
use crate::output::Render;
use crate::storage::{self, Source};

#[derive(Serialize)]
struct MigrateOutput {
    /// The storage URL (password hidden).
    storage: String,
    /// Where the setting came from.
    source: Source,
    /// `postgres`, `sqlite`, `folder` or `memory`.
    backend: String,
    /// The schema version found (PostgreSQL only; 0 = no tables yet).
    from_version: Option<i64>,
    /// The schema version now (PostgreSQL only).
    to_version: Option<i64>,
    /// The steps this call applied (another process may have applied them first).
    applied: Vec<Step>,
}

#[derive(Serialize)]
struct Step {
    version: i64,
    description: String,
}

impl Render for MigrateOutput {
    fn text(&self) -> String {
        let mut s = String::new();
        match (self.from_version, self.to_version) {
            (Some(from), Some(to)) if self.applied.is_empty() => s.push_str(&format!(
                "{}: schema version {to} is current (found {from}); nothing to do\n",
                self.storage
            )),
            (Some(from), Some(to)) => {
                s.push_str(&format!(
                    "{}: schema version {from} -> {to}\n",
                    self.storage
                ));
                for step in &self.applied {
                    s.push_str(&format!(
                        "  applied {}: {}\n",
                        step.version, step.description
                    ));
                }
            }
            _ => s.push_str(&format!(
                "{}: {} storage is brought up to date whenever it is opened; it is current\n",
                self.storage, self.backend
            )),
        }
        s
    }
}

/// Runs `migrate` on the configured storage (or the one `--adaptor` names).
pub async fn run(ctx: &Ctx, adaptor: Option<&str>) -> Result<()> {
    let choice = storage::choose(&ctx.env, &ctx.rc()?, adaptor)?;
    let shown = choice.url.clone();
    let out = if storage::is_postgres(&choice.url) {
        let report = PostgresStore::migrate(choice.connect_url()).await.map_err(|e| {
            let hint = match &e {
                sequential_adaptor::Error::Unsupported { .. } => {
                    "the schema was written by a newer sequential-ecosystem; upgrade this binary \
                     (nothing was changed)"
                }
                _ => {
                    "check the server, user, password and database in the URL \
                     (postgres://USER:PASSWORD@HOST:PORT/DATABASE); nothing was changed"
                }
            };
            UserError::new(format!(
                "cannot migrate storage {shown} (from {}): {e}",
                choice.source.describe()
            ))
            .hint(hint)
        })?;
        MigrateOutput {
            storage: shown,
            source: choice.source,
            backend: "postgres".into(),
            from_version: Some(report.from),
            to_version: Some(report.to),
            applied: report
                .applied
                .into_iter()
                .map(|(version, description)| Step {
                    version,
                    description,
                })
                .collect(),
        }
    } else {
        let opened = storage::open_choice(choice).await?;
        opened.adapter.health().await?;
        MigrateOutput {
            storage: shown,
            source: opened.choice.source,
            backend: opened.adapter.scheme().to_string(),
            from_version: None,
            to_version: None,
            applied: Vec::new(),
        }
    };
    ctx.out.print(&out)
}
