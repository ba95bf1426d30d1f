//! `GET /api/v1/events`: every run's journal as one stream (NDJSON or SSE), resumable with a
//! cursor, served from storage.
//!
//! The storage contract keeps no host-wide ordered feed; what it does order is run ids (UUID
//! v7, so creation time: `list_runs` pages by id) and each run's journal (`seq`). The stream's
//! cursor is built from those two orders alone:
//!
//! * a *frontier* `F` (milliseconds): every run whose id was minted at or before `F` has been
//!   looked at;
//! * the runs the consumer still follows, each with the next `seq` it has not seen: runs that
//!   have not ended, and runs minted after `F` (ended or not).
//!
//! Each look (one per storage change, at least every 250 ms): runs with ids past `F` that the
//! cursor does not hold are new (`run.created`, then their journal from seq 0); every followed
//! run's journal is read past its seq; a run's terminal record ends following it. `F` then
//! moves to two seconds ago, and ended runs minted before it are dropped from the cursor. The
//! two-second lag covers ids minted in one order and stored in another (two starts racing,
//! another process's clock). A run that has not ended, was minted before `F`, and is not held
//! (stored more than two seconds after its id was minted, or redriven after it ended) is
//! followed from the record after its last terminal record.
//!
//! So resuming from any record's cursor replays exactly the records after it, with no gap and
//! no duplicate, across server restarts, reading only the runs minted since the cursor and
//! those still active — never a scan of every run. Records of one run keep their order; records
//! of different runs are in the order they were found. Limits: a run redriven and ended again
//! between two looks, or stored late and ended between two looks, is not seen; a deleted run
//! that was still followed yields `run.deleted`, a deleted ended run nothing. The cursor grows
//! with the runs followed (about 22 bytes of base64 each).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine as _;
use sequential_adaptor::{
    JournalRecord, Order, Page, Run, RunFilter, RunId, RunStatus, TaskName, now_millis,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::error::{ApiError, ApiResult};
use super::stream::{
    Encoding, Kinds, encoding, last_event_id, ping_every, ping_line, response, slot,
};
use super::view::ends_stream;
use super::{AppState, tasks};

/// How long after its id was minted a run may still appear in storage and be seen as new.
const LAG_MS: i64 = 2_000;
/// Runs and records read per storage call.
const PAGE: usize = 512;

#[derive(Deserialize, Default)]
pub struct HostEventsQuery {
    after: Option<String>,
    task: Option<String>,
    kinds: Option<String>,
    follow: Option<bool>,
    format: Option<String>,
    ping: Option<u64>,
}

/// Where a consumer is: see the module documentation.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Cursor {
    /// Every run minted at or before this time (ms) has been looked at.
    frontier: i64,
    /// Followed runs → (the next seq not yet delivered, whether its terminal record was).
    runs: BTreeMap<RunId, (u64, bool)>,
}

fn minted_at(id: RunId) -> i64 {
    let b = id.as_bytes();
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&b[..6]);
    i64::from_be_bytes(ms)
}

/// The largest id minted at `ms`.
fn last_id_at(ms: i64) -> RunId {
    let mut b = [0xffu8; 16];
    b[..6].copy_from_slice(&ms.max(0).to_be_bytes()[2..]);
    RunId::from_bytes(b)
}

/// The smallest id minted at `ms`.
fn first_id_at(ms: i64) -> RunId {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.max(0).to_be_bytes()[2..]);
    RunId::from_bytes(b)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

impl Cursor {
    /// Base64url (no padding) of: version 1, frontier, count, then per run its 16 id bytes
    /// and `next_seq * 2 + ended`.
    pub fn encode(&self) -> String {
        let mut out = Vec::with_capacity(4 + self.runs.len() * 18);
        out.push(1u8);
        put_varint(&mut out, self.frontier.max(0) as u64);
        put_varint(&mut out, self.runs.len() as u64);
        for (id, (next, ended)) in &self.runs {
            out.extend_from_slice(id.as_bytes());
            put_varint(&mut out, next * 2 + u64::from(*ended));
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let mut b: &[u8] = &bytes;
        let (&1, rest) = b.split_first()? else {
            return None;
        };
        b = rest;
        let frontier = i64::try_from(get_varint(&mut b)?).ok()?;
        let n = get_varint(&mut b)?;
        let mut runs = BTreeMap::new();
        for _ in 0..n {
            if b.len() < 16 {
                return None;
            }
            let id = RunId::from_bytes(b[..16].try_into().ok()?);
            b = &b[16..];
            let v = get_varint(&mut b)?;
            runs.insert(id, (v / 2, v % 2 == 1));
        }
        b.is_empty().then_some(Cursor { frontier, runs })
    }
}

/// `GET /api/v1/events`: NDJSON (each record with its `cursor`) or SSE (`id:` = the cursor);
/// `?after=CURSOR` or `Last-Event-ID` resumes, `?after=0` replays every stored run, none
/// starts now; `?task=`, `?kinds=run.*`; `?follow=false` stops once caught up.
pub async fn host_events(
    State(state): State<AppState>,
    Query(q): Query<HostEventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let enc = encoding(q.format.as_deref(), &headers)?;
    let task = q.task.as_deref().map(tasks::task_name).transpose()?;
    let after = q.after.or(last_event_id(&headers)?);
    let cursor = match after.as_deref() {
        Some("0") => Some(Cursor::default()),
        Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "cursor {text:?} (?after= or Last-Event-ID): expected the `cursor` (NDJSON) or `id:` (SSE) of a record this stream sent, or 0 for every stored run"
            ))
        })?),
        None => None,
    };
    let ping = ping_every(&state, enc, q.ping);
    let kinds = Kinds::parse(q.kinds.as_deref());
    let slot = slot(&state)?;
    let (tx, rx) = mpsc::channel(64);
    let feed = Feed {
        state: state.clone(),
        task,
        kinds,
        enc,
        tx,
    };
    // "now" is fixed before the answer, so whatever happens after it is in the stream
    let (cursor, fresh) = match cursor {
        Some(c) => (c, false),
        None => (feed.start_now().await.map_err(ApiError::storage)?, true),
    };
    tokio::spawn(feed.pump(cursor, fresh, q.follow.unwrap_or(true), ping));
    Ok(response(enc, rx, slot))
}

/// Feeds the `run.*` records of every run from now on into `tx` (NDJSON), for `/audit`.
pub fn spawn_lifecycle(state: &AppState, tx: mpsc::Sender<Bytes>) {
    let feed = Feed {
        state: state.clone(),
        task: None,
        kinds: Kinds::parse(Some("run.*")),
        enc: Encoding::Ndjson,
        tx,
    };
    tokio::spawn(async move {
        match feed.start_now().await {
            Ok(c) => feed.pump(c, false, true, None).await,
            Err(e) => feed.fail(e, &Cursor::default()).await,
        }
    });
}

struct Feed {
    state: AppState,
    task: Option<TaskName>,
    kinds: Kinds,
    enc: Encoding,
    tx: mpsc::Sender<Bytes>,
}

/// The consumer went away.
struct Gone;

impl Feed {
    fn filter(&self, statuses: Vec<RunStatus>) -> RunFilter {
        RunFilter {
            task: self.task.clone(),
            statuses,
        }
    }

    async fn send(&self, bytes: Bytes) -> Result<(), Gone> {
        self.tx.send(bytes).await.map_err(|_| Gone)
    }

    /// Sends one record with the cursor that resumes after it.
    async fn emit(&self, cursor: &Cursor, record: Value) -> Result<(), Gone> {
        let kind = record["kind"].as_str().unwrap_or("");
        if !self.kinds.wants(kind) {
            return Ok(());
        }
        self.emit_any(cursor, record).await
    }

    /// [`Feed::emit`] whatever `?kinds=` asked for.
    async fn emit_any(&self, cursor: &Cursor, mut record: Value) -> Result<(), Gone> {
        let kind = record["kind"].as_str().unwrap_or("").to_string();
        let c = cursor.encode();
        record["cursor"] = Value::String(c.clone());
        let json = record.to_string();
        self.send(Bytes::from(match self.enc {
            Encoding::Ndjson => json + "\n",
            Encoding::Sse => format!("id: {c}\nevent: {kind}\ndata: {json}\n\n"),
        }))
        .await
    }

    async fn fail(&self, e: impl std::fmt::Display, cursor: &Cursor) {
        let err = json!({ "kind": "stream.error", "error": e.to_string(), "resume_after": cursor.encode() });
        let _ = self.send(Bytes::from(err.to_string() + "\n")).await;
    }

    /// Every run matching the filter past `after` (exclusive) in `order`.
    async fn runs(
        &self,
        statuses: Vec<RunStatus>,
        after: Option<RunId>,
        order: Order,
    ) -> sequential_adaptor::Result<Vec<Run>> {
        let filter = self.filter(statuses);
        let mut page = Page {
            after,
            limit: PAGE,
            order,
        };
        let mut out = Vec::new();
        loop {
            let got = self.state.store().list_runs(&filter, page).await?;
            out.extend(got.runs);
            match got.next {
                Some(n) => page.after = Some(n),
                None => return Ok(out),
            }
        }
    }

    async fn journal(
        &self,
        id: RunId,
        after: Option<u64>,
    ) -> sequential_adaptor::Result<Vec<JournalRecord>> {
        let mut out = Vec::new();
        let mut from = after;
        loop {
            let page = self.state.store().read_journal(id, from, PAGE).await?;
            let full = page.len() == PAGE;
            from = page.last().map(|r| r.seq).or(from);
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// A fresh consumer starts now: every active run, and every run minted within the lag,
    /// is held at its current end, so only what happens from now on is sent.
    async fn start_now(&self) -> sequential_adaptor::Result<Cursor> {
        let frontier = now_millis() - LAG_MS;
        let mut cursor = Cursor {
            frontier,
            runs: BTreeMap::new(),
        };
        let active = RunStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        let older = self
            .runs(active, Some(first_id_at(frontier + 1)), Order::NewestFirst)
            .await?;
        let recent = self
            .runs(Vec::new(), Some(last_id_at(frontier)), Order::OldestFirst)
            .await?;
        for run in older.iter().chain(&recent) {
            let journal = self.journal(run.id, None).await?;
            let next = journal.last().map_or(0, |r| r.seq + 1);
            let ended = journal.last().is_some_and(ends_stream);
            cursor.runs.insert(run.id, (next, ended));
        }
        Ok(cursor)
    }

    fn created(run: &Run) -> Value {
        json!({
            "run": run.id,
            "kind": "run.created",
            "at": run.created_at,
            "data": {
                "task": run.task,
                "version": run.version,
                "status": run.status,
                "parent": run.parent.map(|p| json!({ "run": p.run, "seq": p.seq })),
            },
        })
    }

    /// One look at storage: new runs, late or redriven ones, then every followed journal.
    async fn look(&self, cursor: &mut Cursor) -> Result<sequential_adaptor::Result<()>, Gone> {
        let cutoff = now_millis() - LAG_MS;
        // runs minted after the frontier that the cursor does not hold are new
        let filter = self.filter(Vec::new());
        let mut page = Page {
            after: Some(last_id_at(cursor.frontier)),
            limit: PAGE,
            order: Order::OldestFirst,
        };
        loop {
            let got = match self.state.store().list_runs(&filter, page).await {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            for run in &got.runs {
                if let std::collections::btree_map::Entry::Vacant(e) = cursor.runs.entry(run.id) {
                    e.insert((0, false));
                    self.emit(cursor, Self::created(run)).await?;
                }
            }
            match got.next {
                Some(n) => page.after = Some(n),
                None => break,
            }
        }
        // active runs minted before the frontier that the cursor does not hold: stored late,
        // or redriven after they ended
        if cursor.frontier > 0 {
            let active = RunStatus::ALL
                .into_iter()
                .filter(|s| !s.is_terminal())
                .collect();
            let older = match self
                .runs(
                    active,
                    Some(first_id_at(cursor.frontier + 1)),
                    Order::NewestFirst,
                )
                .await
            {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            for run in older {
                if cursor.runs.contains_key(&run.id) {
                    continue;
                }
                let records = match self.journal(run.id, None).await {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                };
                match records.iter().rev().find(|r| ends_stream(r)) {
                    Some(end) => {
                        cursor.runs.insert(run.id, (end.seq + 1, false));
                    }
                    None => {
                        cursor.runs.insert(run.id, (0, false));
                        self.emit(cursor, Self::created(&run)).await?;
                    }
                }
            }
        }
        // every followed run's journal past its seq
        let following: Vec<(RunId, u64)> = cursor
            .runs
            .iter()
            .filter(|(_, (_, ended))| !ended)
            .map(|(id, (next, _))| (*id, *next))
            .collect();
        for (id, next) in following {
            let after = next.checked_sub(1);
            let records = match self.journal(id, after).await {
                Ok(r) => r,
                Err(sequential_adaptor::Error::NotFound { .. }) => {
                    cursor.runs.insert(id, (next, true));
                    let gone =
                        json!({ "run": id, "kind": "run.deleted", "at": now_millis(), "data": {} });
                    self.emit(cursor, gone).await?;
                    continue;
                }
                Err(e) => return Ok(Err(e)),
            };
            for r in &records {
                let end = ends_stream(r);
                cursor.runs.insert(id, (r.seq + 1, end));
                let value = serde_json::to_value(r).expect("journal records serialize");
                self.emit(cursor, value).await?;
                if end {
                    break;
                }
            }
        }
        // the frontier moves on; ended runs minted before it need no place in the cursor
        if cutoff > cursor.frontier {
            cursor.frontier = cutoff;
        }
        let frontier = cursor.frontier;
        cursor
            .runs
            .retain(|id, (_, ended)| !*ended || minted_at(*id) > frontier);
        Ok(Ok(()))
    }

    /// Feeds the consumer; a `fresh` one (no cursor given) first gets `stream.start` with the
    /// cursor of "now", so even a reconnect before any record loses nothing.
    async fn pump(self, mut cursor: Cursor, fresh: bool, follow: bool, ping: Option<Duration>) {
        let mut stopping = self.state.stopping.subscribe();
        if self.enc == Encoding::Sse
            && self
                .send(Bytes::from_static(b"retry: 2000\n\n"))
                .await
                .is_err()
        {
            return;
        }
        let start = json!({ "kind": "stream.start", "at": now_millis() });
        if fresh && self.emit_any(&cursor, start).await.is_err() {
            return;
        }
        let mut last_sent = Instant::now();
        loop {
            let before = cursor.clone();
            match self.look(&mut cursor).await {
                Err(Gone) => return,
                Ok(Err(e)) => return self.fail(e, &before).await,
                Ok(Ok(())) => {}
            }
            if !follow || *stopping.borrow() {
                return;
            }
            if let Some(p) = ping
                && last_sent.elapsed() >= p
            {
                if self.send(ping_line(self.enc)).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
            }
            let nap = ping.map_or(Duration::from_millis(250), |p| {
                p.min(Duration::from_millis(250))
            });
            tokio::select! {
                _ = self.state.store().wait_for_change(nap) => {}
                _ = self.tx.closed() => return,
                _ = stopping.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let mut c = Cursor {
            frontier: 1_764_950_000_123,
            runs: BTreeMap::new(),
        };
        c.runs.insert(RunId::new(), (0, false));
        c.runs.insert(RunId::new(), (300, true));
        assert_eq!(Cursor::decode(&c.encode()), Some(c.clone()));
        assert_eq!(
            Cursor::decode(&Cursor::default().encode()),
            Some(Cursor::default())
        );
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode(&c.encode()[..10]), None);
        let id = RunId::new();
        assert!(minted_at(id) <= now_millis() && minted_at(id) > now_millis() - 10_000);
        assert!(first_id_at(minted_at(id)) <= id && id <= last_id_at(minted_at(id)));
        assert!(last_id_at(minted_at(id)) < first_id_at(minted_at(id) + 1));
    }
}
