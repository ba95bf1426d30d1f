//! [`Ctx`]: what every command needs (environment, output, tasks directory, storage), apart
//! from the commands themselves so that the modules commands share (`runs`) need not reach
//! back into `commands`.

use anyhow::Result;

use crate::output::Output;
use crate::rc::RcFile;
use crate::storage::{self, Choice, Env, Opened};
use crate::tasks::TasksDir;

/// What every command may need: the environment, the output, the tasks directory.
#[derive(Debug)]
pub struct Ctx {
    /// Environment variables the policy reads.
    pub env: Env,
    /// Text or JSON.
    pub out: Output,
    /// `--json` was given.
    pub json: bool,
    /// The task folders' directory.
    pub tasks: TasksDir,
}

impl Ctx {
    /// `.sequentialrc.json` in the current directory.
    pub fn rc(&self) -> Result<RcFile> {
        RcFile::load(std::path::Path::new("."))
    }

    /// The configured storage (or the one `flag` names), created if missing.
    pub async fn storage(&self, flag: Option<&str>) -> Result<Opened> {
        let rc = self.rc()?;
        storage::open(&self.env, &rc, flag).await
    }

    /// The configured storage if its location exists; `None` means nothing is stored yet.
    /// Read-only commands use this so they never create a folder, a database file or a
    /// PostgreSQL schema.
    pub async fn existing_storage(&self) -> Result<(Choice, Option<Opened>)> {
        let rc = self.rc()?;
        let choice = storage::choose(&self.env, &rc, None)?;
        Ok((choice.clone(), storage::open_existing(choice).await?))
    }
}
