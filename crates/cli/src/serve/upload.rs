//! A task uploaded as a tar.gz of its folder (`code.js`, `config.json`, `graph.json`), checked
//! before anything is stored: no absolute paths, no `..`, no links, caps on size and file count.
//! Nothing is written anywhere but storage, and only after every check passed.

use std::io::Read;
use std::path::{Component, Path};

use sequential_adaptor::NewTaskVersion;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::tasks::task_name;

/// What an upload held.
#[derive(Debug, Default)]
pub struct Folder {
    /// The one top-level directory the files were under, if any.
    dir: Option<String>,
    code: Option<String>,
    config: Option<Value>,
    graph: Option<Value>,
}

fn refuse(path: &str, why: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "the upload's entry {path:?} {why}; nothing was stored"
    ))
    .details(json!({ "entry": path }))
}

/// Unpacks a gzip-compressed tar (a plain tar is accepted too) held in memory.
pub fn unpack(bytes: &[u8], max_files: usize, max_bytes: usize) -> ApiResult<Folder> {
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read + '_> = if gz {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader.take(max_bytes as u64 * 4));
    let entries = archive.entries().map_err(|e| {
        ApiError::unprocessable(format!("the upload is not a tar.gz of a task folder: {e}"))
    })?;
    let mut folder = Folder::default();
    let mut files = 0usize;
    let mut total = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            ApiError::unprocessable(format!("the upload is not a readable tar.gz: {e}"))
        })?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path =
            Path::new(std::str::from_utf8(&raw).map_err(|_| refuse(&shown, "is not UTF-8"))?);
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(refuse(&shown, "climbs out of the folder with `..`"));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse(&shown, "is an absolute path"));
                }
            }
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(refuse(
                &shown,
                "is a link (links could point outside the task folder)",
            ));
        }
        if kind.is_dir() || parts.is_empty() {
            continue;
        }
        if !kind.is_file() {
            return Err(refuse(&shown, "is not a regular file"));
        }
        files += 1;
        if files > max_files {
            return Err(ApiError::unprocessable(format!(
                "the upload holds more than {max_files} files; nothing was stored"
            )));
        }
        // `name/code.js` or `code.js`: at most one directory level, the same for every file
        let (dir, file) = match parts.as_slice() {
            [file] => (None, file.clone()),
            [dir, file] => (Some(dir.clone()), file.clone()),
            _ => continue, // deeper files (tools/, fixtures) are not part of a task version
        };
        if folder.dir.is_some() && folder.dir != dir {
            return Err(refuse(
                &shown,
                "is in another top-level directory than the first file",
            ));
        }
        folder.dir = dir;
        let mut text = String::new();
        let size = entry.header().size().unwrap_or(0) as usize;
        total += size;
        if total > max_bytes {
            return Err(ApiError::unprocessable(format!(
                "the upload unpacks to more than {max_bytes} bytes; nothing was stored"
            )));
        }
        match file.as_str() {
            "code.js" | "config.json" | "graph.json" => {
                entry
                    .read_to_string(&mut text)
                    .map_err(|_| refuse(&shown, "is not UTF-8 text"))?;
            }
            _ => continue,
        }
        let json = |t: &str| {
            serde_json::from_str::<Value>(t)
                .map_err(|e| refuse(&shown, &format!("is not valid JSON ({e})")))
        };
        match file.as_str() {
            "code.js" => folder.code = Some(text),
            "config.json" => folder.config = Some(json(&text)?),
            _ => folder.graph = Some(json(&text)?),
        }
    }
    Ok(folder)
}

impl Folder {
    /// The task version: named by the path (`hint`), else `config.json`'s `name`, else the
    /// top-level directory.
    pub fn into_version(self, hint: Option<&str>) -> ApiResult<NewTaskVersion> {
        let code = self.code.ok_or_else(|| {
            ApiError::unprocessable(
                "the upload has no code.js: expected a tar.gz of a task folder (code.js, config.json, graph.json)",
            )
        })?;
        let from_config = self
            .config
            .as_ref()
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let raw = hint
            .map(str::to_string)
            .or(from_config)
            .or(self.dir)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "the upload names no task: put it in a folder named after the task, give config.json a \"name\", or add ?name=",
                )
            })?;
        let task = task_name(&raw)?;
        Ok(NewTaskVersion {
            config: self.config.unwrap_or_else(|| json!({ "name": raw })),
            task,
            code,
            graph: self.graph,
        })
    }
}
