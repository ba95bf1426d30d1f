//! `vm execute | resume`: fetch-vm's external-mode JSON contract on stdin/stdout.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::VmAction;
use crate::error::{EXIT_RUN_FAILED, Reported, user};
use crate::files;
use crate::runs;

pub async fn run(_ctx: &Ctx, action: VmAction) -> Result<()> {
    let response = match action {
        VmAction::Execute { code, input, id } => {
            let code = if code == "-" {
                read_stdin("the code (--code -)")?
            } else {
                let path = std::path::Path::new(&code);
                String::from_utf8(files::read_bytes(path)?).map_err(|_| {
                    user(
                        format!("{} is not UTF-8 text", files::show(path)),
                        "save the file as UTF-8",
                    )
                })?
            };
            let input = match input.as_deref() {
                Some(raw) => runs::read_json_arg("--input", raw)?,
                None => Value::Null,
            };
            let request = json!({ "id": id, "code": code, "input": input });
            tokio::task::spawn_blocking(move || {
                sequential_fetch_vm::execute_json(&request.to_string())
            })
            .await
            .context("the VM thread")?
        }
        VmAction::Resume => {
            let request = read_stdin("the resume request")?;
            tokio::task::spawn_blocking(move || sequential_fetch_vm::resume_json(&request))
                .await
                .context("the VM thread")?
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(response.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .context("writing to stdout")?;
    let status = serde_json::from_str::<Value>(&response)
        .ok()
        .and_then(|v| v["status"].as_str().map(str::to_string));
    match status.as_deref() {
        Some("paused" | "completed") => Ok(()),
        _ => Err(Reported(EXIT_RUN_FAILED).into()),
    }
}

fn read_stdin(what: &str) -> Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| {
        user(
            format!("cannot read {what} from stdin: {e}"),
            "pipe UTF-8 text into the command",
        )
    })?;
    Ok(text)
}
