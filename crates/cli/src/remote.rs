//! `--remote URL` (or `SEQUENTIAL_REMOTE`): the run commands performed by a host API server
//! (`sequential-ecosystem serve`) through [`HostClient`], printed with the same output structs
//! as locally (the server's Run objects are converted into local [`Run`]s for them).
//!
//! The server drives the runs (its embedded worker); `run`, `resume` and `rerun` wait for a run
//! to settle by long-polling it, with the same rule as the local drive: it ended, is paused, or
//! waits for an event or a timer (with `--wait`: until that much time has passed), and, as
//! locally, one that is due (a signal reached it, its timer fired) is not settled. Because the
//! server continues a run as soon as an event reaches it, `resume` of a run that has ended
//! reports it instead of refusing, and `signal` prints the status the run has by the time it
//! answers. `run` checks what the local `run` checks before uploading the folder, except a
//! graph: the server decides what it can run, and refuses what it cannot when it stores it.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Result;
use sequential_adaptor::{JournalRecord, ParentRef, Run, RunId, RunStatus, TaskName};
use sequential_http_wrapper::host::{self, RunFilter, StartOptions};
use sequential_http_wrapper::{HostClient, HostError, RunClient};
use sequential_support::time::parse_rfc3339;
use serde_json::{Map, Value};

use crate::cli::{Command, RerunArgs, ResumeArgs, RunArgs, ShowArgs};
use crate::commands::control::{self, Rerun, Signalled, Stopped};
use crate::commands::inspect::{self, History};
use crate::commands::list::{self, ListOutput, StoredTask};
use crate::commands::run::{self as run_cmd, Detached, DryRun};
use crate::ctx::Ctx;
use crate::error::{UserError, user};
use crate::files;
use crate::runs::{self, RunDoc};
use crate::tasks::{self, CONFIG};

/// The commands that work with `--remote`.
const REMOTE_COMMANDS: &str = "run, resume, signal, cancel, kill, rerun, show, history and list";

/// How long one long-poll of a settling run may wait before the rule is checked again.
const POLL: Duration = Duration::from_secs(5);

/// How long `cancel` waits past its grace for the server to end the run.
const CANCEL_MARGIN: Duration = Duration::from_secs(10);

/// Performs `command` against the server at `url`.
pub async fn run(ctx: &Ctx, url: &str, command: Command) -> Result<()> {
    let name = match &command {
        Command::Run(_)
        | Command::Resume(_)
        | Command::Signal { .. }
        | Command::Cancel { .. }
        | Command::Kill { .. }
        | Command::Rerun(_)
        | Command::Show(_)
        | Command::History { .. }
        | Command::List => None,
        Command::Init => Some("init"),
        Command::CreateTask(_) => Some("create-task"),
        Command::Describe { .. } => Some("describe"),
        Command::Delete { .. } => Some("delete"),
        Command::Config { .. } => Some("config"),
        Command::SyncTasks(_) => Some("sync-tasks"),
        Command::Migrate { .. } => Some("migrate"),
        Command::Worker { .. } => Some("worker"),
        Command::Serve { .. } => Some("serve"),
        Command::Prune { .. } => Some("prune"),
        Command::Vm { .. } => Some("vm"),
        Command::Machine(_) => Some("machine"),
        Command::Graph(_) => Some("graph"),
        Command::Fsm(_) => Some("fsm"),
    };
    if let Some(name) = name {
        return Err(user(
            format!("`{name}` does not work with --remote {url}: it works on this machine only"),
            format!(
                "with --remote (or SEQUENTIAL_REMOTE) these work: {REMOTE_COMMANDS}; drop --remote (unset SEQUENTIAL_REMOTE) for `{name}`"
            ),
        ));
    }
    let remote = Remote::new(url)?;
    match command {
        Command::Run(args) => remote.run(ctx, args).await,
        Command::Resume(args) => remote.resume(ctx, args).await,
        Command::Signal {
            run,
            event,
            payload,
        } => remote.signal(ctx, &run, &event, payload.as_deref()).await,
        Command::Cancel { run, grace } => {
            let grace = runs::duration("--grace", &grace)?;
            remote.stop(ctx, &run, Some(grace)).await
        }
        Command::Kill { run } => remote.stop(ctx, &run, None).await,
        Command::Rerun(args) => remote.rerun(ctx, args).await,
        Command::Show(args) => remote.show(ctx, args).await,
        Command::History { task, limit } => remote.history(ctx, &task, limit).await,
        Command::List => remote.list(ctx).await,
        _ => unreachable!("refused above"),
    }
}

/// The server and how it is named in output (`storage` fields, messages).
struct Remote {
    host: HostClient,
    url: String,
}

impl Remote {
    fn new(url: &str) -> Result<Self> {
        let mut host = HostClient::new(url).map_err(|e| {
            user(
                format!("--remote / SEQUENTIAL_REMOTE: {e}"),
                "for example --remote http://127.0.0.1:8080 (the address `sequential-ecosystem serve` prints)",
            )
        })?;
        if let Some(token) = std::env::var("SEQUENTIAL_API_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        {
            host = host.with_token(token);
        }
        Ok(Remote {
            host,
            url: url.trim().trim_end_matches('/').to_string(),
        })
    }

    /// A client error as the user should see it.
    fn error(&self, e: HostError) -> anyhow::Error {
        match &e {
            HostError::Unreachable { reason, .. } => user(
                format!("cannot reach the host API at {}: {reason}", self.url),
                "start it there with `sequential-ecosystem serve`, or point --remote (SEQUENTIAL_REMOTE) at a running server",
            ),
            HostError::Api {
                status: 401,
                message,
                ..
            } => user(
                format!(
                    "the host API at {} refused the request: {message}",
                    self.url
                ),
                "set SEQUENTIAL_API_TOKEN to the token the server was started with",
            ),
            HostError::Api {
                message,
                code,
                status,
                details,
                ..
            } => UserError::new(format!(
                "the host API at {} refused the request: {message}",
                self.url
            ))
            .hint(if details.is_null() {
                format!("that is the server's answer (HTTP {status}, {code})")
            } else {
                format!("that is the server's answer (HTTP {status}, {code}): {details}")
            })
            .into(),
            _ => user(
                format!("the host API at {}: {e}", self.url),
                "is it a sequential-ecosystem server of this version? (GET /api/v1/version)",
            ),
        }
    }

    /// The server's run `id` as a local run; a missing run is the local error naming it.
    async fn get(&self, id: RunId) -> Result<(host::Run, Run)> {
        match self.host.run(&id.to_string()).get().await {
            Ok(r) => {
                let local = local_run(&r)?;
                Ok((r, local))
            }
            Err(e) if e.code() == Some("RUN_NOT_FOUND") => Err(runs::run_not_found(id, &self.url)),
            Err(e) => Err(self.error(e)),
        }
    }

    /// The latest version of a task the server stores, `None` when it has none.
    async fn stored(&self, name: &TaskName) -> Result<Option<host::Task>> {
        match self.host.task(name.as_str()).get().await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.code() == Some("TASK_NOT_FOUND") => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// The journal after `after`, as local records.
    async fn journal_after(
        &self,
        run: &RunClient,
        after: Option<u64>,
    ) -> Result<Vec<JournalRecord>> {
        let records = run.journal_after(after).await.map_err(|e| self.error(e))?;
        records.iter().map(local_record).collect()
    }

    async fn run(&self, ctx: &Ctx, args: RunArgs) -> Result<()> {
        let name = tasks::task_name(&args.task)?;
        let wait = args
            .wait
            .as_deref()
            .map(|w| runs::duration("--wait", w))
            .transpose()?;
        let input = match &args.input {
            Some(raw) => runs::read_json_arg("--input", raw)?,
            None => Value::Object(Map::new()),
        };
        let new_version = if ctx.tasks.has_folder(&name) {
            // the server checks the rest (a graph, with its own rules) when it stores it
            let v = ctx.tasks.read(&name)?.to_new_version()?;
            runs::check_retry(
                &v.config,
                &files::show(&ctx.tasks.folder(&name).join(CONFIG)),
            )?;
            Some(v)
        } else {
            None
        };
        let stored = self.stored(&name).await?;
        let (config, declared_in) = match (&new_version, &stored) {
            (Some(v), _) => (
                v.config.clone(),
                files::show(&ctx.tasks.folder(&name).join(CONFIG)),
            ),
            (None, Some(t)) => (
                t.config.clone(),
                format!("the config of stored task {name}"),
            ),
            (None, None) => return Err(tasks::not_found(&name, ctx.tasks.root())),
        };
        runs::check_retry(&config, &declared_in)?;
        let input = run_cmd::validate_input(&name, &config, &declared_in, input)?;
        if args.dry_run {
            let (source, hash, version, fresh) = match (&new_version, &stored) {
                (Some(v), stored) => {
                    let hash = v.content_hash();
                    let known = stored.as_ref().and_then(|t| {
                        t.versions
                            .iter()
                            .rev()
                            .find(|x| x.hash == hash)
                            .map(|x| x.version)
                    });
                    match known {
                        Some(n) => ("folder", hash, Some(n), false),
                        None => ("folder", hash, stored.as_ref().map(|t| t.version + 1), true),
                    }
                }
                (None, Some(t)) => ("storage", t.hash.clone(), Some(t.version), false),
                (None, None) => unreachable!("refused above"),
            };
            return ctx.out.print(&DryRun {
                task: name.to_string(),
                source,
                version,
                new_version: fresh,
                hash,
                input,
                storage: self.url.clone(),
                idempotency_key: args.idempotency_key.clone(),
            });
        }
        let version = match (new_version, &stored) {
            (Some(new), _) => {
                let put = self
                    .host
                    .upload(
                        name.as_str(),
                        &new.code,
                        new.graph.as_ref(),
                        Some(&new.config),
                    )
                    .await
                    .map_err(|e| self.error(e))?;
                tracing::debug!(task = %name, version = put.version, created = put.created, "task version");
                put.version
            }
            (None, Some(t)) => t.version,
            (None, None) => unreachable!("refused above"),
        };
        let worker = self.worker().await?;
        let started = self
            .host
            .task(name.as_str())
            .start(
                input,
                StartOptions {
                    idempotency_key: args.idempotency_key.clone(),
                    version: Some(version),
                    wait: None,
                },
            )
            .await
            .map_err(|e| match &e {
                HostError::Api { code, message, .. } if code == "IDEMPOTENCY_KEY_REUSED" => {
                    run_cmd::key_reused(args.idempotency_key.as_deref(), message)
                }
                _ => self.error(e),
            })?;
        if args.detach {
            let run = local_run(&started)?;
            return ctx.out.print(&Detached {
                run: run.id.to_string(),
                task: run.task.to_string(),
                version: run.version,
                status: run.status,
                storage: self.url.clone(),
            });
        }
        let verbose = args.verbose && !ctx.json;
        let settled = self.settle(started, wait, None, verbose, worker).await?;
        let id = settled.id;
        let client = self.host.run(&id.to_string());
        let journal = if args.verbose || args.save.is_some() {
            Some(self.journal_after(&client, None).await?)
        } else {
            None
        };
        if let Some(path) = &args.save {
            let path = if path.is_empty() {
                format!("{}-{}.json", settled.task, id)
            } else {
                path.clone()
            };
            let doc = RunDoc::new(&settled, &self.url, journal.as_deref());
            files::write_atomic(std::path::Path::new(&path), files::pretty(&doc).as_bytes())?;
            eprintln!("saved run {id} to {path}");
        }
        let doc = RunDoc::new(
            &settled,
            &self.url,
            journal.as_deref().filter(|_| args.verbose),
        );
        runs::report_settled(ctx, &settled, &doc)
    }

    /// Whether the server drives runs (an embedded worker); without one a queued run stays
    /// queued, so waiting for it would never end.
    async fn worker(&self) -> Result<bool> {
        Ok(self.host.health().await.map_err(|e| self.error(e))?.worker)
    }

    async fn resume(&self, ctx: &Ctx, args: ResumeArgs) -> Result<()> {
        let wait = args
            .wait
            .as_deref()
            .map(|w| runs::duration("--wait", w))
            .transpose()?;
        let id = runs::run_id(&args.run)?;
        let (mut run, local) = self.get(id).await?;
        let client = self.host.run(&id.to_string());
        // The server continues a run as soon as it can (an event it was sent, a timer): the
        // run `signal … && resume` meant to continue may have ended already. Report it then,
        // as if this command had driven it to the end.
        if !local.status.is_terminal() && control::resumable(&local, args.retry)? {
            run = client.retry().await.map_err(|e| self.error(e))?;
        }
        let worker = self.worker().await?;
        let after = run.journal.last_seq;
        let verbose = args.verbose && !ctx.json;
        let settled = self.settle(run, wait, after, verbose, worker).await?;
        let journal = if args.verbose {
            Some(self.journal_after(&client, None).await?)
        } else {
            None
        };
        let doc = RunDoc::new(&settled, &self.url, journal.as_deref());
        runs::report_settled(ctx, &settled, &doc)
    }

    /// Waits until `run` settles (see the module docs), printing its journal records after
    /// `printed` on stderr as they are written when `verbose`; returns it as a local run.
    async fn settle(
        &self,
        mut run: host::Run,
        wait: Option<Duration>,
        mut printed: Option<u64>,
        verbose: bool,
        worker: bool,
    ) -> Result<Run> {
        let deadline = wait.map(|d| Instant::now() + d);
        let client = self.host.run(&run.id);
        let start = local_run(&run)?.created_at;
        loop {
            if verbose {
                let records = self.journal_after(&client, printed).await?;
                if let Some(last) = records.last() {
                    printed = Some(last.seq);
                    runs::eprint_records(&records, start);
                }
            }
            if self.settled(&run, deadline, worker).await? {
                return local_run(&run);
            }
            let slice = deadline.map_or(POLL, |d| {
                d.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(10), POLL)
            });
            run = client
                .get_change(slice, run.journal.last_seq)
                .await
                .map_err(|e| self.error(e))?;
        }
    }

    /// The local drive's rule: ended, paused, or waiting and not yet due (for a child only once
    /// the child settled); with a deadline a waiting run settles only when it has passed. A
    /// queued or due run settles only when the server has no worker to drive it.
    fn settled<'a>(
        &'a self,
        run: &'a host::Run,
        deadline: Option<Instant>,
        worker: bool,
    ) -> Pin<Box<dyn Future<Output = Result<bool>> + Send + 'a>> {
        Box::pin(async move {
            use host::RunStatus as S;
            Ok(match run.status {
                s if s.is_terminal() => true,
                S::Paused => true,
                // due (its timer fired, or an event reached it): the server drives it on
                S::Waiting if due(run) => !worker,
                S::Waiting => match deadline {
                    Some(d) => Instant::now() >= d,
                    None => match run
                        .waiting
                        .as_ref()
                        .and_then(|w| w.name.as_deref())
                        .and_then(|n| n.strip_prefix("child:"))
                    {
                        Some(child) => {
                            let c = self
                                .host
                                .run(child)
                                .get()
                                .await
                                .map_err(|e| self.error(e))?;
                            self.settled(&c, None, worker).await?
                        }
                        None => true,
                    },
                },
                S::Queued => !worker,
                _ => false,
            })
        })
    }

    async fn signal(
        &self,
        ctx: &Ctx,
        raw_run: &str,
        event: &str,
        payload: Option<&str>,
    ) -> Result<()> {
        let payload = control::signal_payload(event, payload)?;
        let id = runs::run_id(raw_run)?;
        let (_, local) = self.get(id).await?;
        control::deliverable(&local, event)?;
        let client = self.host.run(&id.to_string());
        let sent = client
            .send_event(event, payload)
            .await
            .map_err(|e| match &e {
                HostError::Api { code, message, .. } if code == "RUN_FINISHED" => {
                    UserError::new(format!("cannot deliver event {event:?}: {message}"))
                        .hint(format!(
                            "`sequential-ecosystem show {id}` shows the run's state"
                        ))
                        .into()
                }
                _ => self.error(e),
            })?;
        let (_, after) = self.get(id).await?;
        ctx.out.print(&Signalled {
            run: id.to_string(),
            event: event.to_string(),
            signal: sent.seq,
            status: after.status,
        })
    }

    /// `cancel` (with its grace) or `kill` (without).
    async fn stop(&self, ctx: &Ctx, raw_run: &str, grace: Option<Duration>) -> Result<()> {
        let id = runs::run_id(raw_run)?;
        let (_, before) = self.get(id).await?;
        control::stoppable(&before, grace.is_some())?;
        let client = self.host.run(&id.to_string());
        let run = match grace {
            Some(g) => {
                client.stop(g).await.map_err(|e| self.error(e))?;
                client.get_wait(g + CANCEL_MARGIN).await
            }
            None => client.kill().await,
        }
        .map_err(|e| self.error(e))?;
        let run = local_run(&run)?;
        ctx.out.print(&Stopped {
            run: id.to_string(),
            task: run.task.to_string(),
            status: run.status,
            was: before.status,
        })
    }

    async fn rerun(&self, ctx: &Ctx, args: RerunArgs) -> Result<()> {
        let wait = args
            .wait
            .as_deref()
            .map(|w| runs::duration("--wait", w))
            .transpose()?;
        let id = runs::run_id(&args.run)?;
        let Some(from_seq) = args.from_seq else {
            return Err(user(
                "rerun --from-state / --redrive of a graph run works on this machine only",
                "drop --remote (unset SEQUENTIAL_REMOTE), or copy the run with --from-seq N",
            ));
        };
        self.get(id).await?;
        let new = self
            .host
            .run(&id.to_string())
            .fork(from_seq)
            .await
            .map_err(|e| match &e {
                HostError::Api {
                    status: 422,
                    message,
                    ..
                } => user(
                    message.clone(),
                    "`sequential-ecosystem show <run> --journal` shows the run's state and seqs",
                ),
                _ => self.error(e),
            })?;
        let local = local_run(&new)?;
        if args.detach {
            return ctx.out.print(&Rerun {
                run: local.id.to_string(),
                from: id.to_string(),
                from_seq,
                task: local.task.to_string(),
                version: local.version,
                status: local.status,
            });
        }
        if !ctx.json {
            eprintln!("rerun of {id} from seq {from_seq}: new run {}", local.id);
        }
        let worker = self.worker().await?;
        let verbose = args.verbose && !ctx.json;
        let settled = self.settle(new, wait, None, verbose, worker).await?;
        let journal = if args.verbose {
            let client = self.host.run(&settled.id.to_string());
            Some(self.journal_after(&client, None).await?)
        } else {
            None
        };
        let doc = RunDoc::new(&settled, &self.url, journal.as_deref());
        runs::report_settled(ctx, &settled, &doc)
    }

    async fn show(&self, ctx: &Ctx, args: ShowArgs) -> Result<()> {
        let (task, id) = inspect::show_target(&args)?;
        let (mut remote_run, mut run) = self.get(id).await?;
        inspect::check_task(task.as_ref(), &run)?;
        let client = self.host.run(&id.to_string());
        if args.follow {
            // the local `show --follow`: the journal as it grows until the run settles
            let mut after = None;
            loop {
                let records = self.journal_after(&client, after).await?;
                if let Some(last) = records.last() {
                    after = Some(last.seq);
                    if !ctx.json {
                        let mut out = std::io::stdout().lock();
                        for r in &records {
                            use std::io::Write;
                            if writeln!(out, "{}", runs::record_line(r, run.created_at)).is_err() {
                                return Ok(());
                            }
                        }
                    }
                }
                if inspect::settled(&run) && records.is_empty() {
                    break;
                }
                if !inspect::settled(&run) {
                    remote_run = client
                        .get_change(POLL, after.or(remote_run.journal.last_seq))
                        .await
                        .map_err(|e| self.error(e))?;
                } else {
                    remote_run = client.get().await.map_err(|e| self.error(e))?;
                }
                run = local_run(&remote_run)?;
            }
            if !ctx.json {
                let doc = RunDoc::new(&run, &self.url, None);
                let mut out = std::io::stdout().lock();
                use std::io::Write;
                let _ = writeln!(out, "---");
                let _ = out.write_all(crate::output::Render::text(&doc).as_bytes());
                return Ok(());
            }
        }
        let journal = if args.journal || args.follow {
            Some(self.journal_after(&client, None).await?)
        } else {
            None
        };
        ctx.out
            .print(&RunDoc::new(&run, &self.url, journal.as_deref()))
    }

    async fn history(&self, ctx: &Ctx, raw: &str, limit: usize) -> Result<()> {
        let name = tasks::task_name(raw)?;
        let page = self
            .host
            .list_runs(&RunFilter {
                limit: Some(limit.max(1)),
                ..RunFilter::task(name.as_str())
            })
            .await
            .map_err(|e| self.error(e))?;
        let runs_list: Vec<Run> = page.items.iter().map(local_run).collect::<Result<_>>()?;
        if runs_list.is_empty()
            && !ctx.tasks.has_folder(&name)
            && self.stored(&name).await?.is_none()
        {
            return Err(tasks::not_found(&name, ctx.tasks.root()));
        }
        ctx.out.print(&History::new(
            &name,
            self.url.clone(),
            &runs_list,
            limit,
            page.next_cursor.is_some(),
        ))
    }

    async fn list(&self, ctx: &Ctx) -> Result<()> {
        let folders = list::folders(ctx)?;
        let summaries = self.host.list_tasks().await.map_err(|e| self.error(e))?;
        let mut stored = Vec::new();
        for s in summaries {
            let name = TaskName::new(&s.name).map_err(|e| {
                user(
                    format!("the server lists task {:?}: {e}", s.name),
                    "upgrade this binary to the server's version",
                )
            })?;
            let config = if folders.iter().any(|f| f.name == name) {
                None
            } else {
                let mut c = Map::new();
                if let Some(d) = s.description.clone() {
                    c.insert("description".into(), d);
                }
                c.insert("inputs".into(), s.inputs.clone());
                Some(Value::Object(c))
            };
            stored.push(StoredTask {
                name,
                version: s.version,
                hash: s.hash,
                config,
            });
        }
        ctx.out
            .print(&ListOutput::new(ctx, &folders, &stored, self.url.clone()))
    }
}

/// Whether a waiting run's wait is over (its timer fired, or a signal made it due).
fn due(run: &host::Run) -> bool {
    run.waiting
        .as_ref()
        .and_then(|w| w.until.as_deref())
        .and_then(parse_rfc3339)
        .is_some_and(|until| until <= sequential_adaptor::now_millis())
}

/// The server's Run object as a local [`Run`] (what the renderers take).
fn local_run(r: &host::Run) -> Result<Run> {
    let bad = |what: &str, value: &str| {
        user(
            format!("the server answered a run with {what} {value:?}"),
            "is it a sequential-ecosystem server of this version? (GET /api/v1/version)",
        )
    };
    let id: RunId = r.id.parse().map_err(|_| bad("the id", &r.id))?;
    let task = TaskName::new(&r.task.name).map_err(|_| bad("the task", &r.task.name))?;
    let status: RunStatus = r
        .status
        .as_str()
        .parse()
        .map_err(|_| bad("the status", r.status.as_str()))?;
    let time = |s: &str| parse_rfc3339(s).ok_or_else(|| bad("the time", s));
    let created_at = time(&r.created_at)?;
    let (waiting_for, wake_at) = match (&r.waiting, status) {
        (Some(w), RunStatus::Waiting) => (
            w.name.clone().filter(|_| w.kind == "event"),
            w.until.as_deref().map(time).transpose()?,
        ),
        _ => (None, None),
    };
    Ok(Run {
        id,
        task,
        version: r.task.version,
        status,
        input: r.input.clone(),
        // a succeeded run's output is never absent (`null` is an output)
        output: match status {
            RunStatus::Succeeded => Some(r.output.clone().unwrap_or(Value::Null)),
            _ => r.output.clone(),
        },
        error: r.error.clone(),
        parent: match &r.parent {
            Some(p) => Some(ParentRef {
                run: p.run.parse().map_err(|_| bad("the parent", &p.run))?,
                seq: p.seq,
            }),
            None => None,
        },
        idempotency_key: r.idempotency_key.clone(),
        wake_at,
        waiting_for,
        lease: None,
        fence: 0,
        attempt: r.attempt,
        revision: 0,
        created_at,
        updated_at: r
            .updated_at
            .as_deref()
            .map(time)
            .transpose()?
            .unwrap_or(created_at),
        ended_at: r.ended_at.as_deref().map(time).transpose()?,
        expires_at: None,
    })
}

/// A journal record of the API as a local one.
fn local_record(r: &host::Record) -> Result<JournalRecord> {
    Ok(JournalRecord {
        run: r.run.parse().map_err(|_| {
            user(
                format!("the server answered a journal record of run {:?}", r.run),
                "is it a sequential-ecosystem server of this version? (GET /api/v1/version)",
            )
        })?,
        seq: r.seq,
        kind: r.kind.clone(),
        at: r.at,
        data: r.data.clone(),
    })
}
