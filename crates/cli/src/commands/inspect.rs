//! Inspecting runs: `show [<task>] <run> [--journal] [--follow]` and `history <task>`.

use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use sequential_adaptor::{Order, Page, Run, RunFilter, RunId, RunStatus, TaskName};
use serde::Serialize;

use super::Ctx;
use crate::cli::ShowArgs;
use crate::error::user;
use crate::output::{Render, table};
use crate::runs::{self, RunDoc};
use crate::tasks;
use crate::time::rfc3339;

impl Render for RunDoc {
    fn text(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("run", self.run.clone()),
            ("task", format!("{} v{}", self.task, self.version)),
            ("status", self.status.to_string()),
            ("input", runs::short_json(&self.input, 200)),
        ];
        if let Some(o) = &self.output {
            rows.push(("output", runs::short_json(o, 200)));
        }
        if let Some(e) = &self.error {
            rows.push(("error", runs::short_json(e, 200)));
        }
        if let Some(w) = &self.waiting_for {
            rows.push(("waiting for", w.clone()));
        }
        if let Some(w) = &self.wake_at {
            rows.push(("wakes at", w.clone()));
        }
        if let Some(p) = &self.parent {
            rows.push(("parent", p.clone()));
        }
        if let Some(k) = &self.idempotency_key {
            rows.push(("idempotency", k.clone()));
        }
        rows.push(("created", self.created_at.clone()));
        if let Some(e) = &self.ended_at {
            rows.push(("ended", e.clone()));
        }
        rows.push(("storage", self.storage.clone()));
        if let Some(n) = &self.next {
            rows.push(("next", n.clone()));
        }
        let mut s: String = rows
            .iter()
            .map(|(k, v)| format!("{:13}{v}\n", format!("{k}:")))
            .collect();
        if let Some(journal) = &self.journal {
            s.push_str(&format!("journal ({} records):\n", journal.len()));
            let start = self.created_ms;
            for r in journal {
                let rec = sequential_adaptor::JournalRecord {
                    run: self
                        .run
                        .parse()
                        .expect("the run id was printed from a RunId"),
                    seq: r.seq,
                    kind: r.kind.clone(),
                    at: r.at_ms,
                    data: r.data.clone(),
                };
                s.push_str("  ");
                s.push_str(&runs::record_line(&rec, start));
                s.push('\n');
            }
        }
        s
    }
}

/// `show`'s `[TASK] RUN`: the task, when given, and the run id.
pub(crate) fn show_target(args: &ShowArgs) -> Result<(Option<TaskName>, RunId)> {
    let (task, raw_run) = match args.args.as_slice() {
        [run] => (None, run.as_str()),
        [task, run] => (Some(tasks::task_name(task)?), run.as_str()),
        _ => unreachable!("clap allows 1 or 2 arguments"),
    };
    Ok((task, runs::run_id(raw_run)?))
}

/// An error when `show TASK RUN` names a task the run does not belong to.
pub(crate) fn check_task(task: Option<&TaskName>, run: &Run) -> Result<()> {
    if let Some(task) = task
        && task != &run.task
    {
        let id = run.id;
        return Err(user(
            format!("run {id} belongs to task {}, not {task}", run.task),
            format!("`sequential-ecosystem show {} {id}`", run.task),
        ));
    }
    Ok(())
}

pub async fn show(ctx: &Ctx, args: ShowArgs) -> Result<()> {
    let (task, id) = show_target(&args)?;
    let storage = match ctx.existing_storage().await? {
        (_, Some(s)) => s,
        (choice, None) => return Err(runs::run_not_found(id, &choice.url)),
    };
    let run = runs::get_run(&storage, id).await?;
    check_task(task.as_ref(), &run)?;
    if args.follow && !ctx.json {
        return follow(&storage, run).await;
    }
    let run = if args.follow {
        follow_quietly(&storage, run).await?
    } else {
        run
    };
    let journal = if args.journal || args.follow {
        Some(runs::journal(&storage.adapter, id).await?)
    } else {
        None
    };
    ctx.out
        .print(&RunDoc::new(&run, &storage.choice.url, journal.as_deref()))
}

/// Whether `show --follow` stops: the run ended, is paused, or waits for an event (someone
/// must act). Through sleeps and child runs it keeps following.
pub(crate) fn settled(run: &Run) -> bool {
    run.status.is_terminal()
        || run.status == RunStatus::Paused
        || (run.status == RunStatus::Waiting
            && run
                .waiting_for
                .as_deref()
                .is_some_and(|w| !w.starts_with("child:")))
}

/// Prints the journal, then each new record, until the run settles; then its summary.
async fn follow(storage: &crate::storage::Opened, mut run: Run) -> Result<()> {
    let start = run.created_at;
    let mut after = None;
    loop {
        let recs = runs::journal_after(&storage.adapter, run.id, after).await?;
        if let Some(last) = recs.last() {
            after = Some(last.seq);
            let mut out = std::io::stdout().lock();
            for r in &recs {
                if writeln!(out, "{}", runs::record_line(r, start)).is_err() {
                    return Ok(());
                }
            }
            let _ = out.flush();
        }
        if settled(&run) && recs.is_empty() {
            break;
        }
        if !settled(&run) {
            storage
                .adapter
                .wait_for_change(Duration::from_millis(100))
                .await;
        }
        run = runs::get_run(storage, run.id).await?;
    }
    let doc = RunDoc::new(&run, &storage.choice.url, None);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "---");
    let _ = out.write_all(doc.text().as_bytes());
    Ok(())
}

/// `--follow --json`: waits until the run settles, then prints it once.
async fn follow_quietly(storage: &crate::storage::Opened, mut run: Run) -> Result<Run> {
    while !settled(&run) {
        storage
            .adapter
            .wait_for_change(Duration::from_millis(100))
            .await;
        run = runs::get_run(storage, run.id).await?;
    }
    Ok(run)
}

/// What `history` prints.
#[derive(Serialize)]
pub(crate) struct History {
    task: String,
    storage: String,
    runs: Vec<HistoryRun>,
    /// More runs exist beyond `--limit`.
    more: bool,
}

#[derive(Serialize)]
struct HistoryRun {
    run: String,
    version: u32,
    status: RunStatus,
    created_at: String,
    ended_at: Option<String>,
    duration_ms: Option<i64>,
    /// The error's name, what a waiting run waits for, or the output (short).
    summary: String,
}

impl Render for History {
    fn text(&self) -> String {
        if self.runs.is_empty() {
            return format!(
                "no runs of task {} in {}\nnext: sequential-ecosystem run {}\n",
                self.task, self.storage, self.task
            );
        }
        let mut rows = vec![vec![
            "RUN".to_string(),
            "STATUS".into(),
            "VERSION".into(),
            "STARTED".into(),
            "DURATION".into(),
            "SUMMARY".into(),
        ]];
        for r in &self.runs {
            rows.push(vec![
                r.run.clone(),
                r.status.to_string(),
                format!("v{}", r.version),
                r.created_at.clone(),
                r.duration_ms.map_or_else(|| "-".into(), runs::human_ms),
                r.summary.clone(),
            ]);
        }
        let mut s = table(&rows);
        if self.more {
            s.push_str(&format!(
                "(newest {} shown; --limit N shows more)\n",
                self.runs.len()
            ));
        }
        s
    }
}

pub async fn history(ctx: &Ctx, raw: &str, limit: usize) -> Result<()> {
    let name = tasks::task_name(raw)?;
    let (choice, storage) = ctx.existing_storage().await?;
    let page = match &storage {
        Some(s) => Some(
            s.adapter
                .list_runs(
                    &RunFilter {
                        task: Some(name.clone()),
                        statuses: Vec::new(),
                    },
                    Page {
                        after: None,
                        limit: limit.max(1),
                        order: Order::NewestFirst,
                    },
                )
                .await?,
        ),
        None => None,
    };
    let known = ctx.tasks.has_folder(&name)
        || match &storage {
            Some(s) => super::latest_version(s.adapter.as_ref(), &name)
                .await?
                .is_some(),
            None => false,
        };
    if !known && page.as_ref().is_none_or(|p| p.runs.is_empty()) {
        return Err(tasks::not_found(&name, ctx.tasks.root()));
    }
    let (runs_list, more) = match page {
        Some(p) => (p.runs, p.next.is_some()),
        None => (Vec::new(), false),
    };
    ctx.out
        .print(&History::new(&name, choice.url, &runs_list, limit, more))
}

impl History {
    /// The newest `limit` of `runs` (newest first) of task `task` in `storage`; `more`: the
    /// storage has more.
    pub(crate) fn new(
        task: &TaskName,
        storage: String,
        runs: &[Run],
        limit: usize,
        more: bool,
    ) -> Self {
        History {
            task: task.to_string(),
            storage,
            runs: runs
                .iter()
                .take(limit.max(1))
                .map(|r| HistoryRun {
                    run: r.id.to_string(),
                    version: r.version,
                    status: r.status,
                    created_at: rfc3339(r.created_at),
                    ended_at: r.ended_at.map(rfc3339),
                    duration_ms: r.ended_at.map(|e| e - r.created_at),
                    summary: summary(r),
                })
                .collect(),
            more,
        }
    }
}

fn summary(r: &Run) -> String {
    match r.status {
        RunStatus::Succeeded => {
            runs::short_json(r.output.as_ref().unwrap_or(&serde_json::Value::Null), 50)
        }
        RunStatus::Failed | RunStatus::Cancelled => r
            .error
            .as_ref()
            .map(|e| {
                format!(
                    "{}: {}",
                    e["name"].as_str().unwrap_or("Error"),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .map(|s| s.chars().take(60).collect())
            .unwrap_or_default(),
        RunStatus::Waiting => r
            .waiting_for
            .as_ref()
            .map(|w| format!("waits for {w}"))
            .or_else(|| r.wake_at.map(|w| format!("sleeps until {}", rfc3339(w))))
            .unwrap_or_default(),
        RunStatus::Paused => "paused: resume --retry".into(),
        _ => String::new(),
    }
}
