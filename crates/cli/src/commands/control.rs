//! Controlling runs: `resume`, `signal`, `cancel`, `kill`, `rerun`.

use anyhow::Result;
use sequential_adaptor::{Run, RunStatus, now_millis};
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
pub(crate) fn ended(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "already succeeded",
        RunStatus::Failed => "already failed",
        _ => "was cancelled",
    }
}

/// Whether `resume` (with `--retry` when `retry`) may continue `run`: an error naming why not
/// for a finished run, or a paused one without `--retry`; `true` when the paused run must be
/// retried first.
pub(crate) fn resumable(run: &Run, retry: bool) -> Result<bool> {
    let id = run.id;
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
    if run.status == RunStatus::Paused && !retry {
        let why = runs::next_step(run).map(|(_, w)| w).unwrap_or_default();
        return Err(user(
            format!("run {id} of task {} is paused: {why}", run.task),
            format!("`sequential-ecosystem resume {id} --retry` performs that call again"),
        ));
    }
    Ok(run.status == RunStatus::Paused)
}

pub async fn resume(ctx: &Ctx, args: ResumeArgs) -> Result<()> {
    let wait = args
        .wait
        .as_deref()
        .map(|w| runs::duration("--wait", w))
        .transpose()?;
    let (id, storage) = storage_for(ctx, &args.run).await?;
    let run = runs::get_run(&storage, id).await?;
    let retry = resumable(&run, args.retry)?;
    let engine = runs::engine(ctx, &storage, None)?;
    if retry {
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

/// What `signal` prints.
#[derive(Serialize)]
pub(crate) struct Signalled {
    pub(crate) run: String,
    pub(crate) event: String,
    /// The signal's number in the run's inbox (0, 1, 2 …).
    pub(crate) signal: u64,
    /// The run's status after delivery.
    pub(crate) status: RunStatus,
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

/// `signal`'s event name checked and its payload read (JSON or @FILE; `null` when absent).
pub(crate) fn signal_payload(event: &str, payload: Option<&str>) -> Result<Value> {
    if event.trim().is_empty() {
        return Err(user(
            "the event name is empty",
            "name the event the task waits for, e.g. `signal <run> approved '{\"by\": \"ann\"}'`",
        ));
    }
    match payload {
        Some(raw) => runs::read_json_arg("the payload", raw),
        None => Ok(Value::Null),
    }
}

/// An error naming why `event` cannot reach `run` (it ended).
pub(crate) fn deliverable(run: &Run, event: &str) -> Result<()> {
    if run.status.is_terminal() {
        let id = run.id;
        return Err(user(
            format!(
                "cannot deliver event {event:?}: run {id} of task {} {}",
                run.task,
                ended(run.status)
            ),
            format!("`sequential-ecosystem show {id}` shows its result; signals go to active runs"),
        ));
    }
    Ok(())
}

pub async fn signal(ctx: &Ctx, raw_run: &str, event: &str, payload: Option<&str>) -> Result<()> {
    let payload = signal_payload(event, payload)?;
    let (id, storage) = storage_for(ctx, raw_run).await?;
    let run = runs::get_run(&storage, id).await?;
    deliverable(&run, event)?;
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

/// What `cancel` and `kill` print.
#[derive(Serialize)]
pub(crate) struct Stopped {
    pub(crate) run: String,
    pub(crate) task: String,
    pub(crate) status: RunStatus,
    /// The status before the command.
    pub(crate) was: RunStatus,
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

/// An error naming why `run` cannot be cancelled (`cancel`) or killed: it ended.
pub(crate) fn stoppable(run: &Run, cancel: bool) -> Result<()> {
    if run.status.is_terminal() {
        let id = run.id;
        return Err(user(
            format!(
                "run {id} of task {} {}; only an active run can be {}",
                run.task,
                ended(run.status),
                if cancel { "cancelled" } else { "killed" }
            ),
            format!("`sequential-ecosystem show {id}` shows its result"),
        ));
    }
    Ok(())
}

async fn stop(ctx: &Ctx, raw_run: &str, grace: Option<std::time::Duration>) -> Result<()> {
    let (id, storage) = storage_for(ctx, raw_run).await?;
    let before = runs::get_run(&storage, id).await?;
    stoppable(&before, grace.is_some())?;
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

/// What `rerun --detach` prints.
#[derive(Serialize)]
pub(crate) struct Rerun {
    pub(crate) run: String,
    pub(crate) from: String,
    pub(crate) from_seq: u64,
    pub(crate) task: String,
    pub(crate) version: u32,
    pub(crate) status: RunStatus,
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
    let graph_from = match (&args.from_state, args.redrive) {
        (Some(state), _) => Some(sequential_tasker_engine::graph::RerunFrom::State(
            state.clone(),
        )),
        (None, true) => Some(sequential_tasker_engine::graph::RerunFrom::Failed),
        (None, false) => None,
    };
    let (new, from_seq) = match graph_from {
        Some(from) => engine.rerun_graph(id, &from).await,
        None => {
            let n = args.from_seq.unwrap_or(0);
            engine.rerun(id, n).await.map(|r| (r, n))
        }
    }
    .map_err(engine_error)?;
    if args.detach {
        return ctx.out.print(&Rerun {
            run: new.id.to_string(),
            from: id.to_string(),
            from_seq,
            task: new.task.to_string(),
            version: new.version,
            status: new.status,
        });
    }
    if !ctx.json {
        eprintln!("rerun of {id} from seq {from_seq}: new run {}", new.id);
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
