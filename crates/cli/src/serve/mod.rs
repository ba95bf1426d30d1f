//! `serve`: the host API of HOST-API.md over the configured storage, with an embedded worker.
//!
//! `api.rs` is the router; `tasks.rs` and `runs.rs` the handlers; `stream.rs` the NDJSON/SSE
//! event streams; `upload.rs` the checked task upload; `view.rs` the Run object; `error.rs` the
//! error shape. Everything a handler does goes through the public storage trait and engine, so
//! what the API can do, a script (or the CLI) can do too.

mod api;
mod compat;
mod console;
mod error;
mod host_events;
mod host_log;
mod runs;
mod stream;
mod tasks;
mod upload;
mod view;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use sequential_adaptor::{RunId, StorageAdapter, TaskName, VersionSel};
use sequential_adaptor_sqlite::ChangeStamp;
use sequential_tasker_engine::{Engine, StopHandle};

use crate::ctx::Ctx;
use crate::error::user;
use crate::runs as cli_runs;
use view::JournalSummary;

pub use api::router;

/// What `serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub bind: String,
    pub concurrency: usize,
    pub no_worker: bool,
    pub token_file: Option<std::path::PathBuf>,
    pub grace: String,
}

/// Limits of one server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest task upload (JSON or tar.gz), bytes.
    pub upload_bytes: usize,
    /// Largest other request body (start input, event payload), bytes.
    pub body_bytes: usize,
    /// Most files in an uploaded tar.gz.
    pub upload_files: usize,
    /// Streams open at once per server (each SSE/NDJSON consumer holds one).
    pub streams: usize,
    /// How often a stream says it is alive.
    pub ping: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            upload_bytes: 8 << 20,
            body_bytes: 1 << 20,
            upload_files: 256,
            streams: 1024,
            ping: Duration::from_secs(15),
        }
    }
}

/// The server's shared state.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub engine: Engine,
    pub token: Option<String>,
    pub started: Instant,
    pub limits: Limits,
    pub worker: bool,
    /// (task, version) → content hash; versions are immutable, so this never goes stale.
    hashes: Mutex<HashMap<(TaskName, u32), String>>,
    /// Streams open now.
    pub streams: std::sync::atomic::AtomicUsize,
    /// Becomes `true` when the server shuts down: open streams end, so shutdown never waits
    /// on a consumer that would listen forever.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The host's recent log lines and requests (`/log`, `/audit`).
    pub log: host_log::HostLog,
    /// Run → the summary of its journal as far as this server has read it, and the revision
    /// at which the run had ended with its journal's last record ending it. A journal only
    /// grows, so a `GET` reads just the records appended since; an ended run's journal changes
    /// again only when a redrive reopens the run, which bumps its revision, so a `GET` of a
    /// finished run reads no journal. Bounded: emptied at [`SUMMARIES`] runs.
    summaries: Mutex<HashMap<RunId, KeptSummary>>,
    /// `PRAGMA data_version` of the SQLite database file (`None` on other storage): moves
    /// whenever anyone — this server's writer or another process — commits.
    stamp: Option<ChangeStamp>,
    /// Run → the Run object a plain `GET /runs/:id` answered, and the stamp read *before* the
    /// reads it was rendered from: while the stamp still reads the same, nothing was committed
    /// since those reads, so the same bytes are the stored state now. Bounded like
    /// `summaries`.
    rendered: Mutex<HashMap<RunId, (u64, Bytes)>>,
}

/// How many runs' journal summaries a server keeps in memory.
const SUMMARIES: usize = 4096;

/// A run's journal summary kept between requests (see `Inner::summaries`).
#[derive(Debug, Clone, Default)]
pub struct KeptSummary {
    pub summary: JournalSummary,
    /// The run's revision when it was seen ended with nothing more to read.
    pub ended_at_revision: Option<u64>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        engine: Engine,
        token: Option<String>,
        worker: bool,
        stamp: Option<ChangeStamp>,
    ) -> Self {
        AppState(Arc::new(Inner {
            engine,
            token,
            started: Instant::now(),
            limits: Limits::default(),
            worker,
            hashes: Mutex::new(HashMap::new()),
            streams: std::sync::atomic::AtomicUsize::new(0),
            stopping: tokio::sync::watch::Sender::new(false),
            log: host_log::HostLog::default(),
            summaries: Mutex::new(HashMap::new()),
            stamp,
            rendered: Mutex::new(HashMap::new()),
        }))
    }

    pub fn store(&self) -> &Arc<dyn StorageAdapter> {
        self.engine.store()
    }

    /// What this server has kept of run `id`'s journal (a default one when nothing).
    pub fn kept_summary(&self, id: RunId) -> KeptSummary {
        self.summaries
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps `kept` for run `id` unless a request that read further already kept more.
    pub fn keep_summary(&self, id: RunId, kept: KeptSummary) {
        let mut cache = self.summaries.lock().unwrap();
        if cache
            .get(&id)
            .is_some_and(|k| k.summary.last_seq > kept.summary.last_seq)
        {
            return;
        }
        if cache.len() >= SUMMARIES {
            cache.clear();
        }
        cache.insert(id, kept);
    }

    /// The database's change stamp now; `None` without one (or when it cannot be read: then
    /// nothing is answered from memory).
    pub fn stamp_now(&self) -> Option<u64> {
        let stamp = self.stamp.as_ref()?;
        match stamp.now() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "reading the storage's change stamp");
                None
            }
        }
    }

    /// The Run object of run `id` rendered at change stamp `stamp`, if that is what was kept.
    pub fn rendered(&self, id: RunId, stamp: u64) -> Option<Bytes> {
        match self.rendered.lock().unwrap().get(&id) {
            Some((at, body)) if *at == stamp => Some(body.clone()),
            _ => None,
        }
    }

    /// Keeps `body`, rendered from reads begun after the change stamp read `stamp`.
    pub fn keep_rendered(&self, id: RunId, stamp: u64, body: Bytes) {
        let mut cache = self.rendered.lock().unwrap();
        if cache.get(&id).is_some_and(|(at, _)| *at > stamp) {
            return;
        }
        if cache.len() >= SUMMARIES {
            cache.clear();
        }
        cache.insert(id, (stamp, body));
    }

    /// The content hash of a task version (cached; `None` when the version is gone).
    pub async fn hash_of(&self, task: &TaskName, version: u32) -> Option<String> {
        let key = (task.clone(), version);
        if let Some(h) = self.hashes.lock().unwrap().get(&key) {
            return Some(h.clone());
        }
        let v = self
            .store()
            .get_task_version(task, VersionSel::Exact(version))
            .await
            .ok()?;
        self.hashes.lock().unwrap().insert(key, v.hash.clone());
        Some(v.hash)
    }
}

/// Reads the API token: `--token-file` (first line), else `SEQUENTIAL_API_TOKEN`.
fn token(args: &ServeArgs) -> Result<Option<String>> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        if t.is_empty() {
            return Err(user(
                format!("the token file {} is empty", path.display()),
                "put one line of at least 16 characters in it, e.g. `openssl rand -hex 32 > token`",
            ));
        }
        return Ok(Some(t));
    }
    Ok(std::env::var("SEQUENTIAL_API_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// A change stamp on the SQLite database file `url` names (`None` for other storage, for an
/// in-memory database — no other connection can write it — and when it cannot be opened).
fn change_stamp(url: &str) -> Option<ChangeStamp> {
    if sequential_adaptor::scheme_of(url).as_deref() != Some("sqlite") {
        return None;
    }
    let path = sequential_adaptor::strip_scheme(url);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    ChangeStamp::open(path)
        .map_err(|e| tracing::warn!(error = %e, "opening the storage's change stamp"))
        .ok()
}

/// Runs the server until SIGINT/SIGTERM; a second signal stops the worker at once.
pub async fn serve(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    let addr: SocketAddr = args.bind.parse().map_err(|_| {
        user(
            format!("--bind {:?} is not an address with a port", args.bind),
            "for example --bind 127.0.0.1:8080 (or 127.0.0.1:0 for any free port)",
        )
    })?;
    if args.concurrency == 0 {
        return Err(user(
            "--concurrency 0: expected at least 1",
            "for example --concurrency 16 (runs the embedded worker drives at once)",
        ));
    }
    let token = token(&args)?;
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(user(
            format!(
                "refusing to serve on {addr} without a token: anyone who can reach that address could run and cancel tasks"
            ),
            "set SEQUENTIAL_API_TOKEN (or --token-file FILE) so every request needs `Authorization: Bearer <token>`, or bind 127.0.0.1",
        ));
    }
    let grace = cli_runs::duration("--grace", &args.grace)?;
    let storage = ctx.storage(None).await?;
    let mut config = cli_runs::engine_config(ctx)?;
    config.concurrency = args.concurrency;
    config.stop_grace = grace;
    let engine = cli_runs::engine_with(&storage, config)?;
    let state = AppState::new(
        engine.clone(),
        token,
        !args.no_worker,
        change_stamp(&storage.choice.url),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        user(
            format!("cannot listen on {addr}: {e}"),
            "pick another port with --bind, or stop what is using this one",
        )
    })?;
    let local = listener.local_addr()?;
    let stop = StopHandle::new();
    let worker = (!args.no_worker).then(|| {
        let engine = engine.clone();
        let stop = stop.clone();
        tokio::spawn(async move { engine.work_until(&stop).await })
    });
    if !args.no_worker {
        // runs a killed predecessor held on this host continue now, not when their leases expire
        for id in engine.orphans().await.map_err(cli_runs::engine_error)? {
            runs::drive(&state, id);
        }
    }
    state.log.add(
        "host",
        "info",
        format!(
            "listening on http://{local}; storage {}; worker {}",
            state.store().scheme(),
            if args.no_worker {
                "off".to_string()
            } else {
                format!("on, {} at once", args.concurrency)
            }
        ),
        serde_json::json!({}),
    );
    // one line on stdout that scripts (and tests) read for the address
    println!("listening on http://{local}");
    eprintln!(
        "serve: storage {} ({}), worker {}; Ctrl-C to stop",
        storage.choice.url,
        storage.choice.source.describe(),
        if args.no_worker {
            "off (--no-worker)".to_string()
        } else {
            format!("on, {} at once", args.concurrency)
        },
    );
    let shutdown = {
        let stop = stop.clone();
        let state = state.clone();
        async move {
            let mut signals = crate::signals::StopSignals::listen();
            let first = signals.next().await;
            eprintln!(
                "serve: {first}: no new requests; in-flight steps finish (signal again to stop now)"
            );
            stop.stop();
            state.log.add(
                "host",
                "info",
                format!("{first}: shutting down"),
                serde_json::json!({}),
            );
            state.stopping.send_replace(true);
            tokio::spawn(async move {
                let second = signals.next().await;
                eprintln!("serve: {second}: releasing the runs in hand now");
                stop.stop_now();
            });
        }
    };
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the host API")?;
    if let Some(w) = worker {
        stop.stop();
        w.await
            .context("the embedded worker panicked")?
            .map_err(cli_runs::engine_error)?;
    }
    Ok(())
}
