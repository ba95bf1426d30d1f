//! Controlling runs: `resume`, `signal`, `cancel`, `kill`, `rerun`.

use anyhow::Result;
use sequential_adaptor::{RunStatus, now_millis};
use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use crate::cli::{RerunArgs, ResumeArgs};
use crate::error::{UserError, user};
use crate::output::Render;
use crate::progress::{self, Watch};
use crate::runs::{self, RunDoc, engine_error};
use crate::storage::Opened;

/// The configured storage; a run command on storage that does not exist yet names the run.
async fn storage_for(ctx: &Ctx, raw_run: &str) -> Result<(sequential_adaptor::RunId, Opened)> {
    let id = runs::run_id(raw_run)?;
    match ctx.existing_storage().await? {
        (_, Some(s)) => Ok((id, s)),
        (choice, None) => Err(runs::run_not_found(id, &choice.url)),
    }
}

/// "already succeeded" / "already failed" / "was cancelled".
fn ended(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "already succeeded",
        RunStatus::Failed => "already failed",
        _ => "was cancelled",
    }
}

pub async fn resume(ctx: &Ctx, args: ResumeArgs) -> Result<()> {
    let wait = args
        .wait
        .as_deref()
        .map(|w| runs::duration("--wait", w))
        .transpose()?;
    let (id, storage) = storage_for(ctx, &args.run).await?;
    let run = runs::get_run(&storage, id).await?;
    if run.status.is_terminal() {
        return Err(user(
            format!(
                "run {id} of task {} {}; only a queued, waiting or paused run can be resumed",
                run.task,
                ended(run.status)
            ),
            format!(
                "`sequential-ecosystem show {id}` shows its result; `sequential-ecosystem rerun {id} --from-seq 0` runs it again"
            ),
        ));
    }
    let engine = runs::engine(ctx, &storage, None)?;
    if run.status == RunStatus::Paused {
        if !args.retry {
            let why = runs::next_step(&run).map(|(_, w)| w).unwrap_or_default();
            return Err(user(
                format!("run {id} of task {} is paused: {why}", run.task),
                format!("`sequential-ecosystem resume {id} --retry` performs that call again"),
            ));
        }
        engine.retry(id).await.map_err(engine_error)?;
    }
    let after = runs::journal(engine.store(), id)
        .await?
        .last()
        .map(|r| r.seq);
    let watch = Watch {
        verbose: args.verbose && !ctx.json,
        spinner: runs::progress_enabled(),
        start: run.created_at,
    };
    let wait_until = wait.map(|d| now_millis() + d.as_millis() as i64);
    let settled = progress::drive(&engine, id, wait_until, after, watch).await?;
    let journal = if args.verbose {
        Some(runs::journal(engine.store(), id).await?)
    } else {
        None
    };
    let doc = RunDoc::new(&settled, &storage.choice.url, journal.as_deref());
    runs::report_settled(ctx, &settled, &doc)
}

#[derive(Serialize)]
struct Signalled {
    run: String,
    event: String,
    /// The signal's number in the run's inbox (0, 1, 2 …).
    signal: u64,
    /// The run's status after delivery.
    status: RunStatus,
}

impl Render for Signalled {
    fn text(&self) -> String {
        let next = match self.status {
            RunStatus::Waiting | RunStatus::Queued => format!(
                "next: sequential-ecosystem resume {} (or let a running worker continue it)\n",
                self.run
            ),
            _ => String::new(),
        };
        format!(
            "delivered event {:?} to run {} (signal #{}; the run is {})\n{next}",
            self.event, self.run, self.signal, self.status
        )
    }
}

pub async fn signal(ctx: &Ctx, raw_run: &str, event: &str, payload: Option<&str>) -> Result<()> {
    if event.trim().is_empty() {
        return Err(user(
            "the event name is empty",
            "name the event the task waits for, e.g. `signal <run> approved '{\"by\": \"ann\"}'`",
        ));
    }
    let payload = match payload {
        Some(raw) => runs::read_json_arg("the payload", raw)?,
        None => Value::Null,
    };
    let (id, storage) = storage_for(ctx, raw_run).await?;
    let run = runs::get_run(&storage, id).await?;
    if run.status.is_terminal() {
        return Err(user(
            format!(
                "cannot deliver event {event:?}: run {id} of task {} {}",
                run.task,
                ended(run.status)
            ),
            format!("`sequential-ecosystem show {id}` shows its result; signals go to active runs"),
        ));
    }
    let seq = match storage.adapter.send_signal(id, event, payload).await {
        Ok(seq) => seq,
        Err(sequential_adaptor::Error::Conflict { what }) => {
            return Err(
                UserError::new(format!("cannot deliver event {event:?}: {what}"))
                    .hint(format!(
                        "`sequential-ecosystem show {id}` shows the run's state"
                    ))
                    .into(),
            );
        }
        Err(e) => return Err(runs::storage_error(e)),
    };
    let status = runs::get_run(&storage, id).await?.status;
    ctx.out.print(&Signalled {
        run: id.to_string(),
        event: event.to_string(),
        signal: seq,
        status,
    })
}

#[derive(Serialize)]
struct Stopped {
    run: String,
    task: String,
    status: RunStatus,
    /// The status before the command.
    was: RunStatus,
}

impl Render for Stopped {
    fn text(&self) -> String {
        format!(
            "{} run {} of task {} (it was {})\n",
            self.status, self.run, self.task, self.was
        )
    }
}

pub async fn cancel(ctx: &Ctx, raw_run: &str, grace: &str) -> Result<()> {
    let grace = runs::duration("--grace", grace)?;
    stop(ctx, raw_run, Some(grace)).await
}

pub async fn kill(ctx: &Ctx, raw_run: &str) -> Result<()> {
    stop(ctx, raw_run, None).await
}

async fn stop(ctx: &Ctx, raw_run: &str, grace: Option<std::time::Duration>) -> Result<()> {
    let (id, storage) = storage_for(ctx, raw_run).await?;
    let before = runs::get_run(&storage, id).await?;
    if before.status.is_terminal() {
        return Err(user(
            format!(
                "run {id} of task {} {}; only an active run can be {}",
                before.task,
                ended(before.status),
                if grace.is_some() {
                    "cancelled"
                } else {
                    "killed"
                }
            ),
            format!("`sequential-ecosystem show {id}` shows its result"),
        ));
    }
    let engine = runs::engine(ctx, &storage, None)?;
    let run = match grace {
        Some(g) => engine.cancel(id, g).await,
        None => engine.kill(id).await,
    }
    .map_err(engine_error)?;
    ctx.out.print(&Stopped {
        run: id.to_string(),
        task: run.task.to_string(),
        status: run.status,
        was: before.status,
    })
}

#[derive(Serialize)]
struct Rerun {
    run: String,
    from: String,
    from_seq: u64,
    task: String,
    version: u32,
    status: RunStatus,
}

impl Render for Rerun {
    fn text(&self) -> String {
        format!("{}\n", self.run)
    }
}

pub async fn rerun(ctx: &Ctx, args: RerunArgs) -> Result<()> {
    let wait = args
        .wait
        .as_deref()
        .map(|w| runs::duration("--wait", w))
        .transpose()?;
    let (id, storage) = storage_for(ctx, &args.run).await?;
    runs::get_run(&storage, id).await?;
    let engine = runs::engine(ctx, &storage, None)?;
    let new = engine
        .rerun(id, args.from_seq)
        .await
        .map_err(engine_error)?;
    if args.detach {
        return ctx.out.print(&Rerun {
            run: new.id.to_string(),
            from: id.to_string(),
            from_seq: args.from_seq,
            task: new.task.to_string(),
            version: new.version,
            status: new.status,
        });
    }
    if !ctx.json {
        eprintln!(
            "rerun of {id} from seq {}: new run {}",
            args.from_seq, new.id
        );
    }
    let watch = Watch {
        verbose: args.verbose && !ctx.json,
        spinner: runs::progress_enabled(),
        start: new.created_at,
    };
    let wait_until = wait.map(|d| now_millis() + d.as_millis() as i64);
    let settled = progress::drive(&engine, new.id, wait_until, None, watch).await?;
    let journal = if args.verbose {
        Some(runs::journal(engine.store(), new.id).await?)
    } else {
        None
    };
    let doc = RunDoc::new(&settled, &storage.choice.url, journal.as_deref());
    runs::report_settled(ctx, &settled, &doc)
}
