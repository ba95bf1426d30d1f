//! `vm execute | resume | get | delete | list`: sequential-flow's external mode through a task
//! store (`sequential-flow-store`), JSON on stdout.
//!
//! The default store is `.sequential-flow.db` (SQLite) in the working directory: a paused task
//! must outlive the process that paused it (the next `vm resume` is another process), SQLite
//! keeps it in one fsynced file that concurrent commands share safely, and its expiry index
//! makes the TTL cheap. `memory:` keeps nothing beyond the command.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use sequential_flow_store::{
    Error as StoreError, ExecuteRequest, FetchResponse, FlowStore, Location, ResumeInput,
    SaveOptions, Status, Task,
};
use sequential_support::time::rfc3339_seconds;

use super::Ctx;
use crate::cli::{VmAction, VmStoreArgs};
use crate::error::{EXIT_RUN_FAILED, Reported, UserError};
use crate::files;
use crate::output::{Render, table};
use crate::runs;

pub async fn run(ctx: &Ctx, action: VmAction) -> Result<()> {
    match action {
        VmAction::Execute {
            code,
            input,
            id,
            name,
            base_url,
            store,
            ttl,
        } => {
            let code = read_code(&code)?;
            let input = match input.as_deref() {
                Some(raw) => runs::read_json_arg("--input", raw)?,
                None => Value::Null,
            };
            let options = save_options(ttl.as_deref())?;
            let mut request = ExecuteRequest::new(id, code, input);
            request.name = name;
            request.options.base_url = base_url;
            let store = open(&store).await?;
            let task = store
                .execute(request, &options)
                .await
                .map_err(|e| store_error(e, &store_hint_of(&store)))?;
            print_task(&task)
        }
        VmAction::Resume {
            task,
            response,
            store,
            ttl,
        } => {
            let options = save_options(ttl.as_deref())?;
            let input = match task {
                Some(id) => {
                    let mut input = ResumeInput::default();
                    input.task_id = Some(id);
                    input.fetch_response = response.as_deref().map(read_response).transpose()?;
                    input
                }
                None => {
                    let text = read_stdin("the resume request")?;
                    serde_json::from_str(&text).map_err(|e| {
                        UserError::new(format!(
                            "invalid resume request on stdin: expected a JSON object \
                             {{taskId, vmState?, originalCode?, fetchResponse: {{data, status?}}}} ({e})"
                        ))
                        .hint(
                            "or give the stored task and the response as flags: \
                             vm resume --task ID --response '{\"data\": ...}'",
                        )
                    })?
                }
            };
            let store = open(&store).await?;
            let task = store
                .resume(input, &options)
                .await
                .map_err(|e| store_error(e, &store_hint_of(&store)))?;
            print_task(&task)
        }
        VmAction::Get { id, store } => {
            let Some(store) = open_existing(&store).await? else {
                return Err(not_found(&id, &store.store));
            };
            let task = store
                .require(&id)
                .await
                .map_err(|e| store_error(e, &store_hint_of(&store)))?;
            ctx.out.print(&TaskView(task))
        }
        VmAction::Delete { id, store } => {
            let Some(store) = open_existing(&store).await? else {
                return Err(not_found(&id, &store.store));
            };
            let deleted = store
                .delete(&id)
                .await
                .map_err(|e| store_error(e, &store_hint_of(&store)))?;
            if !deleted {
                // expired or deleted before: say which; unknown: NotFound
                store
                    .require(&id)
                    .await
                    .map_err(|e| store_error(e, &store_hint_of(&store)))?;
            }
            ctx.out.print(&Deleted {
                id,
                deleted: true,
                store: store.url().to_string(),
            })
        }
        VmAction::List { store, limit } => {
            let tasks = match open_existing(&store).await? {
                Some(store) => store
                    .list(limit)
                    .await
                    .map_err(|e| store_error(e, &store_hint_of(&store)))?,
                None => Vec::new(),
            };
            ctx.out.print(&Listing {
                tasks: tasks.iter().map(Summary::of).collect(),
            })
        }
    }
}

fn read_code(code: &str) -> Result<String> {
    if code == "-" {
        return read_stdin("the code (--code -)");
    }
    let path = Path::new(code);
    String::from_utf8(files::read_bytes(path)?).map_err(|_| {
        UserError::new(format!("{} is not UTF-8 text", files::show(path)))
            .hint("save the file as UTF-8")
            .into()
    })
}

fn read_response(raw: &str) -> Result<FetchResponse> {
    let value = runs::read_json_arg("--response", raw)?;
    let shape_hint = "the fetch's answer as {\"data\": BODY, \"status\": 200} (status defaults to \
                      200; statusText and headers are optional)";
    if !value.as_object().is_some_and(|o| o.contains_key("data")) {
        return Err(UserError::new(format!(
            "invalid --response {raw:?}: expected an object with \"data\" (the response body)"
        ))
        .hint(shape_hint)
        .into());
    }
    serde_json::from_value(value).map_err(|e| {
        UserError::new(format!("invalid --response {raw:?}: {e}"))
            .hint(shape_hint)
            .into()
    })
}

fn save_options(ttl: Option<&str>) -> Result<SaveOptions> {
    let mut options = SaveOptions::default();
    if let Some(raw) = ttl {
        let d = sequential_support::duration::parse(raw).map_err(|e| {
            UserError::new(format!("--ttl: {e}")).hint("for example --ttl 30m or --ttl 2h")
        })?;
        if d.is_zero() {
            return Err(UserError::new(format!(
                "--ttl {raw:?}: expected a duration above zero (a task that expires at once \
                 could never be resumed)"
            ))
            .hint("for example --ttl 30m")
            .into());
        }
        options.ttl = Some(d);
    }
    Ok(options)
}

async fn open(args: &VmStoreArgs) -> Result<FlowStore> {
    FlowStore::open(&args.store)
        .await
        .map_err(|e| store_error(e, &store_hint(&args.store)))
}

/// The store when its location exists: read-only commands create no file or folder.
async fn open_existing(args: &VmStoreArgs) -> Result<Option<FlowStore>> {
    let location = sequential_flow_store::parse_url(&args.store)
        .map_err(|e| store_error(e, &store_hint(&args.store)))?;
    match location {
        Location::Folder(p) | Location::Sqlite(p) if !p.exists() => Ok(None),
        _ => open(args).await.map(Some),
    }
}

fn not_found(id: &str, store: &str) -> anyhow::Error {
    store_error(
        StoreError::NotFound {
            id: id.into(),
            store: store.into(),
        },
        &store_hint(store),
    )
}

fn store_hint_of(store: &FlowStore) -> String {
    store_hint(store.url())
}

fn store_hint(url: &str) -> String {
    format!("`sequential-ecosystem vm list --store {url}` shows the live tasks")
}

/// A store error as a user error (exit 2) with a hint that fits it.
fn store_error(e: StoreError, list_hint: &str) -> anyhow::Error {
    let hint = match &e {
        StoreError::InvalidUrl { .. } => {
            format!("--store takes one of: {}", sequential_flow_store::FORMS)
        }
        StoreError::Unreachable { .. } => {
            "check that the server runs and the URL is right, or use the default \
             --store .sequential-flow.db"
                .to_string()
        }
        StoreError::NotFound { .. } => list_hint.to_string(),
        StoreError::Expired { .. } => {
            "start it again with `vm execute`; a longer --ttl keeps paused tasks longer".into()
        }
        StoreError::Deleted { .. } => "start it again with `vm execute`".into(),
        StoreError::NotPaused { .. } => "`vm get ID` shows its result or error".into(),
        StoreError::Invalid { .. } => {
            "pass the vmState exactly as execute/resume printed it, or only --task ID to use \
             the stored one"
                .into()
        }
        _ => "run again with DEBUG=1 for details".into(),
    };
    UserError::new(e.to_string()).hint(hint).into()
}

/// One JSON line; exit 1 when the task failed.
fn print_task(task: &Task) -> Result<()> {
    let line = serde_json::to_string(task).context("encoding the task")?;
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    match task.status {
        Status::Error => Err(Reported(EXIT_RUN_FAILED).into()),
        _ => Ok(()),
    }
}

fn read_stdin(what: &str) -> Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| {
        UserError::new(format!("cannot read {what} from stdin: {e}"))
            .hint("pipe UTF-8 text into the command")
    })?;
    Ok(text)
}

/// `vm get`: the stored task (its JSON is the task itself).
#[derive(Serialize)]
#[serde(transparent)]
struct TaskView(Task);

impl Render for TaskView {
    fn text(&self) -> String {
        let t = &self.0;
        let mut out = format!("task {}", t.id);
        if let Some(name) = &t.name {
            out.push_str(&format!(" ({name})"));
        }
        out.push_str(&format!(": {}\n", t.status_word()));
        if let Some(f) = &t.fetch_request {
            let url = f
                .url
                .as_str()
                .map_or_else(|| f.url.to_string(), str::to_string);
            out.push_str(&format!("  waiting for fetch {}: {url}\n", f.id));
            out.push_str(&format!(
                "  resume:  sequential-ecosystem vm resume --task {} --response '{{\"data\": ...}}'\n",
                t.id
            ));
        }
        if let Some(r) = &t.result {
            out.push_str(&format!("  result:  {r}\n"));
        }
        if let Some(e) = &t.error {
            out.push_str(&format!("  error:   {e}\n"));
        }
        out.push_str(&format!(
            "  created {}, updated {}, expires {}\n",
            rfc3339_seconds(t.created_at),
            rfc3339_seconds(t.updated_at),
            rfc3339_seconds(t.expires_at)
        ));
        out
    }
}

#[derive(Serialize)]
struct Deleted {
    id: String,
    deleted: bool,
    store: String,
}

impl Render for Deleted {
    fn text(&self) -> String {
        format!("deleted task {} from {}\n", self.id, self.store)
    }
}

/// One row of `vm list`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch_url: Option<Value>,
    created_at: i64,
    updated_at: i64,
    expires_at: i64,
}

impl Summary {
    fn of(t: &Task) -> Summary {
        Summary {
            id: t.id.clone(),
            name: t.name.clone(),
            status: t.status_word(),
            fetch_url: t.fetch_request.as_ref().map(|f| f.url.clone()),
            created_at: t.created_at,
            updated_at: t.updated_at,
            expires_at: t.expires_at,
        }
    }
}

#[derive(Serialize)]
struct Listing {
    tasks: Vec<Summary>,
}

impl Render for Listing {
    fn text(&self) -> String {
        if self.tasks.is_empty() {
            return "no stored tasks\n".into();
        }
        let mut rows = vec![vec![
            "ID".to_string(),
            "STATUS".into(),
            "NAME".into(),
            "UPDATED".into(),
            "EXPIRES".into(),
        ]];
        for t in &self.tasks {
            rows.push(vec![
                t.id.clone(),
                t.status.into(),
                t.name.clone().unwrap_or_default(),
                rfc3339_seconds(t.updated_at),
                rfc3339_seconds(t.expires_at),
            ]);
        }
        table(&rows)
    }
}
