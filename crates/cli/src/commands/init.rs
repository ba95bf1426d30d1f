//! `init`: create the tasks directory and `.sequentialrc.json` (idempotent).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::Ctx;
use crate::files;
use crate::output::Render;
use crate::rc::{self, RcFile};

#[derive(Serialize)]
struct InitOutput {
    tasks_dir: Item,
    config_file: Item,
    storage: String,
}

#[derive(Serialize)]
struct Item {
    path: String,
    /// `created` or `kept`.
    action: &'static str,
}

impl Render for InitOutput {
    fn text(&self) -> String {
        let line = |item: &Item, what: &str| match item.action {
            "created" => format!("created {} ({what})\n", item.path),
            _ => format!("kept {} (already exists)\n", item.path),
        };
        format!(
            "{}{}storage: {}\nnext: sequential-ecosystem create-task hello\n",
            line(&self.tasks_dir, "task folders go here"),
            line(&self.config_file, "project settings"),
            self.storage
        )
    }
}

pub async fn run(ctx: &Ctx) -> Result<()> {
    let tasks_root = ctx.tasks.root();
    let tasks_action = if tasks_root.is_dir() {
        "kept"
    } else {
        std::fs::create_dir_all(tasks_root)
            .with_context(|| format!("creating {}", files::show(tasks_root)))?;
        "created"
    };
    // An existing file is validated (a malformed one is an error) and never rewritten.
    let existing = RcFile::load(Path::new("."))?;
    let rc_action = if existing.exists() {
        "kept"
    } else {
        files::write_atomic(
            existing.path(),
            files::pretty(&rc::default_content()).as_bytes(),
        )?;
        "created"
    };
    let rc = RcFile::load(Path::new("."))?;
    let storage = match crate::storage::choose(&ctx.env, &rc, None) {
        Ok(choice) => format!("{} (from {})", choice.url, choice.source.describe()),
        Err(e) => format!("not usable: {e:#}"),
    };
    ctx.out.print(&InitOutput {
        tasks_dir: Item {
            path: format!("{}/", files::show(tasks_root)),
            action: tasks_action,
        },
        config_file: Item {
            path: files::show(rc.path()),
            action: rc_action,
        },
        storage,
    })
}
