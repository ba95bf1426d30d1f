//! `config show|get|set`: read and change `.sequentialrc.json` (dotted keys).

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use crate::cli::ConfigAction;
use crate::error::user;
use crate::files;
use crate::output::Render;
use crate::storage::{self, Choice};

#[derive(Serialize)]
struct ShowOutput {
    file: String,
    exists: bool,
    config: Value,
    /// The storage the settings select (after environment variables).
    storage: Option<Choice>,
    /// Why no storage can be selected, when that is the case.
    storage_error: Option<String>,
}

impl Render for ShowOutput {
    fn text(&self) -> String {
        let mut s = if self.exists {
            format!("# {}\n{}", self.file, files::pretty(&self.config))
        } else {
            format!(
                "# {} does not exist (`sequential-ecosystem init` creates it)\n",
                self.file
            )
        };
        match (&self.storage, &self.storage_error) {
            (Some(c), _) => s.push_str(&format!(
                "# storage: {} (from {})\n",
                c.url,
                c.source.describe()
            )),
            (None, Some(e)) => s.push_str(&format!("# storage: not usable: {e}\n")),
            (None, None) => {}
        }
        s
    }
}

#[derive(Serialize)]
struct ValueOutput {
    key: String,
    value: Value,
    file: String,
}

struct GetText(ValueOutput);

impl Serialize for GetText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for GetText {
    fn text(&self) -> String {
        match &self.0.value {
            Value::String(s) => format!("{s}\n"),
            other => format!("{other}\n"),
        }
    }
}

struct SetText(ValueOutput);

impl Serialize for SetText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for SetText {
    fn text(&self) -> String {
        format!("set {} = {} in {}\n", self.0.key, self.0.value, self.0.file)
    }
}

pub async fn run(ctx: &Ctx, action: ConfigAction) -> Result<()> {
    let mut rc = ctx.rc()?;
    let file = files::show(rc.path());
    match action {
        ConfigAction::Show => {
            let (choice, error) = match storage::choose(&ctx.env, &rc, None) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(format!("{e:#}"))),
            };
            ctx.out.print(&ShowOutput {
                exists: rc.exists(),
                config: rc.to_value(),
                file,
                storage: choice,
                storage_error: error,
            })
        }
        ConfigAction::Get { key } => {
            let Some(value) = rc.get(&key)?.cloned() else {
                return Err(user(
                    format!("{key:?} is not set in {file}"),
                    "`sequential-ecosystem config show` prints every setting",
                ));
            };
            ctx.out.print(&GetText(ValueOutput { key, value, file }))
        }
        ConfigAction::Set { key, value } => {
            // JSON when it parses (numbers, booleans, objects), else the text itself.
            let value = serde_json::from_str::<Value>(&value).unwrap_or(Value::String(value));
            rc.set(&key, value.clone())?;
            rc.save()?;
            ctx.out.print(&SetText(ValueOutput { key, value, file }))
        }
    }
}
