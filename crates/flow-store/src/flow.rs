//! `FlowStore`: `execute`/`resume` through a task store, and the rules every backend shares
//! (TTL, tombstones, a bounded purge through the expiry index).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use sequential_fetch_vm::Limits;
use sequential_fetch_vm::external::{
    self, CallResponse, ExecuteRequest, ExternalOptions, ExternalResponse, FetchResponse,
    ResumeRequest, Status,
};

use crate::backend::TaskStore;
use crate::error::{Error, Result};
use crate::memory::MemoryTaskStore;
use crate::task::{Gone, GoneReason, Record, Task};

/// The TTL of a saved task when none is given: 2 hours (as sequential-flow documented).
pub const DEFAULT_TTL: Duration = Duration::from_secs(2 * 3600);

/// At most this many due records are settled per purge.
const PURGE_BATCH: usize = 64;

/// A purge runs at most once per this many milliseconds per `FlowStore` (unless asked).
const PURGE_EVERY_MS: i64 = 1000;

/// The clock of a [`FlowStore`]: Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

/// Options of [`FlowStore::execute`] and [`FlowStore::resume`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SaveOptions {
    /// How long the saved task lives; default [`DEFAULT_TTL`] on `execute`, and the task's
    /// previous TTL on `resume`.
    pub ttl: Option<Duration>,
    /// The VM's limits (default: fetch-vm's).
    pub limits: Limits,
}

impl SaveOptions {
    /// Options with this TTL.
    pub fn with_ttl(ttl: Duration) -> Self {
        SaveOptions {
            ttl: Some(ttl),
            ..SaveOptions::default()
        }
    }
}

/// `resume({taskId, vmState?, originalCode?, fetchResponse, responses?, options?})`: through
/// a store, `vmState` and `originalCode` default to the stored task's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResumeInput {
    /// The task to resume; may be left out when `vmState` is given (its own id is used).
    #[serde(default)]
    pub task_id: Option<String>,
    /// The state to continue from; default: the stored task's.
    #[serde(default)]
    pub vm_state: Option<String>,
    /// The task's code; default: the stored task's.
    #[serde(default)]
    pub original_code: Option<String>,
    /// The response to the paused fetch.
    #[serde(default)]
    pub fetch_response: Option<FetchResponse>,
    /// Answers to other pending calls.
    #[serde(default)]
    pub responses: Vec<CallResponse>,
    /// `baseUrl`, replacing the one `execute` was given.
    #[serde(default)]
    pub options: ExternalOptions,
}

impl ResumeInput {
    /// Resume the stored task `task_id` with `response` to its paused fetch.
    pub fn stored(task_id: impl Into<String>, response: FetchResponse) -> Self {
        ResumeInput {
            task_id: Some(task_id.into()),
            fetch_response: Some(response),
            ..ResumeInput::default()
        }
    }
}

/// A task store with the sequential-flow operations on top: every `execute`/`resume` saves the
/// task with a TTL; `get`, `delete`, `list`; expired tasks are invisible and purged.
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct FlowStore {
    backend: Arc<dyn TaskStore>,
    clock: Clock,
    last_purge: Arc<AtomicI64>,
}

impl std::fmt::Debug for FlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowStore")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The fetch-vm error names that mean the request was wrong (nothing ran, nothing is stored),
/// as opposed to an error of the task's own code.
const REQUEST_ERRORS: [&str; 5] = [
    "Invalid",
    "CodeMismatch",
    "UnsupportedVersion",
    "NotPending",
    "Ended",
];

impl FlowStore {
    /// Opens the store at `url` (see [`crate::open`] for the forms).
    pub async fn open(url: &str) -> Result<FlowStore> {
        Ok(FlowStore::new(crate::open::open_backend(url).await?))
    }

    /// A `memory:` store (lives as long as the value and its clones).
    pub fn memory() -> FlowStore {
        FlowStore::new(Arc::new(MemoryTaskStore::new()))
    }

    /// A store over `backend` (a custom one, e.g. calling back into JavaScript).
    pub fn new(backend: Arc<dyn TaskStore>) -> FlowStore {
        FlowStore {
            backend,
            clock: system_clock(),
            last_purge: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The same store read through another clock (tests, and TTL demonstrations).
    pub fn with_clock(mut self, clock: Clock) -> FlowStore {
        self.clock = clock;
        self
    }

    /// The store's URL (credentials removed).
    pub fn url(&self) -> &str {
        self.backend.url()
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn TaskStore> {
        &self.backend
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Runs `request` (fetch-vm's `execute`) and saves the task it becomes, with the TTL of
    /// `options` (default 2 h). A task of the same id is replaced.
    pub async fn execute(&self, request: ExecuteRequest, options: &SaveOptions) -> Result<Task> {
        let mut request = request;
        let id = request
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        request.id = Some(id.clone());
        let code = request.code.clone();
        let limits = options.limits.clone();
        let response = blocking(move || external::execute(&request, &limits)).await?;
        let now = self.now();
        let ttl = ttl_ms(options.ttl.unwrap_or(DEFAULT_TTL));
        let task = Task::from_response(id, code, response, None, now, ttl);
        self.save(&task).await?;
        Ok(task)
    }

    /// Continues a paused task: `vmState` and `originalCode` default to the stored task's. An
    /// unknown, expired or deleted task, a task that is not paused, an edited or foreign
    /// vmState and a response to no pending call are refused with nothing run or stored.
    pub async fn resume(&self, input: ResumeInput, options: &SaveOptions) -> Result<Task> {
        let now = self.now();
        let id = match (&input.task_id, &input.vm_state) {
            (Some(id), _) => id.clone(),
            (None, Some(state)) => external::check_vm_state(state, None, None)
                .map_err(vm_invalid)?
                .task_id
                .ok_or_else(|| {
                    Error::invalid("resume request", "a taskId (the vmState names no task)")
                })?,
            (None, None) => {
                return Err(Error::invalid(
                    "resume request",
                    "a taskId (to load the stored task) or a vmState",
                ));
            }
        };
        let stored = match self.backend.get(&id).await? {
            Some(Record::Task(t)) if t.is_expired(now) => {
                self.settle(&id, now).await?;
                return Err(self.expired(&id, t.expires_at));
            }
            Some(Record::Task(t)) => Some(t),
            Some(Record::Gone(g)) if g.forget_at > now => return Err(self.gone_error(g)),
            Some(Record::Gone(_)) | None if input.vm_state.is_some() => None,
            Some(Record::Gone(_)) | None => {
                return Err(Error::NotFound {
                    id,
                    store: self.url().into(),
                });
            }
        };
        let vm_state = match (&input.vm_state, &stored) {
            (Some(s), _) => s.clone(),
            (None, Some(t)) => t.vm_state.clone().ok_or_else(|| Error::NotPaused {
                id: id.clone(),
                status: t.status_word().into(),
            })?,
            (None, None) => unreachable!("no stored task and no vmState was refused above"),
        };
        let code = match (&input.original_code, &stored) {
            (Some(c), _) => c.clone(),
            (None, Some(t)) => t.code.clone(),
            (None, None) => {
                return Err(Error::invalid(
                    "resume request",
                    "originalCode (the task is not stored, so its code must be given)",
                ));
            }
        };
        external::check_vm_state(&vm_state, Some(&id), Some(&code)).map_err(vm_invalid)?;
        let mut request = ResumeRequest::new(
            Some(id.clone()),
            vm_state,
            code.clone(),
            input.fetch_response,
        );
        request.responses = input.responses;
        request.options = input.options;
        let limits = options.limits.clone();
        let mut response = blocking(move || external::resume(&request, &limits)).await?;
        if response.status == Status::Error
            && let Some(info) = &response.error_info
            && REQUEST_ERRORS.contains(&info.name.as_str())
        {
            return Err(Error::invalid(
                format!("resume of task {id:?}"),
                format!("a request the paused task can take: {}", info.message),
            ));
        }
        if response.name.is_none() {
            response.name = stored.as_ref().and_then(|t| t.name.clone());
        }
        let ttl = match (options.ttl, &stored) {
            (Some(d), _) => ttl_ms(d),
            (None, Some(t)) => t.ttl,
            (None, None) => ttl_ms(DEFAULT_TTL),
        };
        let now = self.now();
        let created = stored.as_ref().map(|t| t.created_at);
        let task = Task::from_response(id, code, response, created, now, ttl);
        self.save(&task).await?;
        Ok(task)
    }

    /// Saves `task` as it is (replacing the stored one) and runs a bounded purge now and then.
    pub async fn save(&self, task: &Task) -> Result<()> {
        self.backend.put(&Record::Task(task.clone())).await?;
        self.maybe_purge(task.updated_at).await;
        Ok(())
    }

    /// The live task `id` (`getTask`): `Ok(None)` when unknown; an expired or deleted task is
    /// an [`Error::Expired`] / [`Error::Deleted`] naming when.
    pub async fn get(&self, id: &str) -> Result<Option<Task>> {
        let now = self.now();
        match self.backend.get(id).await? {
            Some(Record::Task(t)) if t.is_expired(now) => {
                self.settle(id, now).await?;
                Err(self.expired(id, t.expires_at))
            }
            Some(Record::Task(t)) => Ok(Some(t)),
            Some(Record::Gone(g)) if g.forget_at > now => Err(self.gone_error(g)),
            Some(Record::Gone(_)) | None => Ok(None),
        }
    }

    /// [`FlowStore::get`] where a missing task is an [`Error::NotFound`].
    pub async fn require(&self, id: &str) -> Result<Task> {
        self.get(id).await?.ok_or_else(|| Error::NotFound {
            id: id.into(),
            store: self.url().into(),
        })
    }

    /// Deletes `id` (`deleteTask`), leaving a tombstone so a later `resume` says it was
    /// deleted; `true` when a live task was there.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let now = self.now();
        let live =
            matches!(self.backend.get(id).await?, Some(Record::Task(t)) if !t.is_expired(now));
        if live {
            self.backend
                .put(&Record::Gone(Gone::new(id, GoneReason::Deleted, now)))
                .await?;
        }
        Ok(live)
    }

    /// Live tasks, most recently updated first, at most `limit` (purges first).
    pub async fn list(&self, limit: usize) -> Result<Vec<Task>> {
        let now = self.now();
        self.purge_expired().await?;
        self.backend.list(now, limit).await
    }

    /// Settles what the expiry index says is due: expired tasks become tombstones, old
    /// tombstones are forgotten. Bounded per call; returns how many records changed.
    pub async fn purge_expired(&self) -> Result<usize> {
        let now = self.now();
        self.last_purge.store(now, Ordering::Relaxed);
        let mut changed = 0;
        loop {
            let due = self.backend.due(now, PURGE_BATCH).await?;
            let n = due.len();
            for id in due {
                changed += usize::from(self.settle(&id, now).await?);
            }
            if n < PURGE_BATCH {
                return Ok(changed);
            }
        }
    }

    /// A purge of one batch, at most once a second per store: what `save` does on the way out.
    async fn maybe_purge(&self, now: i64) {
        let last = self.last_purge.load(Ordering::Relaxed);
        if now.saturating_sub(last) < PURGE_EVERY_MS
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Ok(due) = self.backend.due(now, PURGE_BATCH).await {
            for id in due {
                // A failure here only delays the purge; the expired task stays invisible.
                let _ = self.settle(&id, now).await;
            }
        }
    }

    /// Settles one id at `now`: an expired task becomes a tombstone, a forgettable tombstone
    /// goes. Whether anything changed.
    async fn settle(&self, id: &str, now: i64) -> Result<bool> {
        match self.backend.get(id).await? {
            Some(Record::Task(t)) if t.is_expired(now) => {
                let gone = Gone::new(id, GoneReason::Expired, t.expires_at);
                if gone.forget_at <= now {
                    self.backend.remove(id).await?;
                } else {
                    self.backend.put(&Record::Gone(gone)).await?;
                }
                Ok(true)
            }
            Some(Record::Gone(g)) if g.forget_at <= now => self.backend.remove(id).await,
            _ => Ok(false),
        }
    }

    fn expired(&self, id: &str, at: i64) -> Error {
        Error::Expired {
            id: id.into(),
            expired_at: at,
            store: self.url().into(),
        }
    }

    fn gone_error(&self, g: Gone) -> Error {
        match g.reason {
            GoneReason::Expired => self.expired(&g.id, g.at),
            GoneReason::Deleted => Error::Deleted {
                id: g.id,
                deleted_at: g.at,
                store: self.url().into(),
            },
        }
    }
}

fn ttl_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn vm_invalid(e: sequential_fetch_vm::Error) -> Error {
    match e {
        sequential_fetch_vm::Error::Invalid { input, expected } => {
            Error::Invalid { input, expected }
        }
        other => Error::invalid("vmState", format!("a state this code can resume ({other})")),
    }
}

async fn blocking(
    f: impl FnOnce() -> ExternalResponse + Send + 'static,
) -> Result<ExternalResponse> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend("fetch-vm", "running the task", e))
}
