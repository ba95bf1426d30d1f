//! `.sequentialrc.json`: the project settings file in the current directory (dotted keys).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{UserError, user};
use crate::files;

/// The file name, looked up in the current directory.
pub const FILE_NAME: &str = ".sequentialrc.json";

/// The format version `init` writes; a file with a higher `version` is refused.
pub const FORMAT_VERSION: u64 = 1;

/// The typed view used to validate the keys this binary reads (with line and column on error).
#[derive(Deserialize)]
struct Known {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)] // read through `RcFile::adaptor`; here it only checks the type
    adaptor: Option<String>,
}

/// The loaded settings file (or its absence).
#[derive(Debug, Clone)]
pub struct RcFile {
    path: PathBuf,
    /// `None` when the file does not exist.
    value: Option<Map<String, Value>>,
}

impl RcFile {
    /// Loads `dir/.sequentialrc.json`. A missing file is empty settings; an unreadable or
    /// malformed one is an error naming the file, line and column.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(RcFile { path, value: None });
        }
        let bytes = files::read_bytes(&path)?;
        let value: Value = files::parse_json(&path, &bytes)?;
        let Value::Object(map) = value else {
            return Err(user(
                format!("{} must hold a JSON object", files::show(&path)),
                "for example {\"version\": 1, \"adaptor\": \"folder\"}",
            ));
        };
        let known: Known = files::parse_json(&path, &bytes)?;
        if let Some(v) = known.version
            && v > FORMAT_VERSION
        {
            return Err(user(
                format!(
                    "{} has format version {v}; this binary understands version {FORMAT_VERSION}",
                    files::show(&path)
                ),
                "it was written by a newer sequential-ecosystem; upgrade this binary",
            ));
        }
        Ok(RcFile {
            path,
            value: Some(map),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file exists.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The whole object (empty when the file does not exist).
    pub fn to_value(&self) -> Value {
        Value::Object(self.value.clone().unwrap_or_default())
    }

    /// The `adaptor` setting (a name such as `folder`/`sqlite`, a URL or a path).
    pub fn adaptor(&self) -> Option<&str> {
        self.value.as_ref()?.get("adaptor")?.as_str()
    }

    /// The value at a dotted key, if present.
    pub fn get(&self, key: &str) -> Result<Option<&Value>> {
        let parts = split_key(key)?;
        let mut cur = match &self.value {
            Some(map) => map,
            None => return Ok(None),
        };
        for (i, part) in parts.iter().enumerate() {
            let Some(v) = cur.get(*part) else {
                return Ok(None);
            };
            if i + 1 == parts.len() {
                return Ok(Some(v));
            }
            match v {
                Value::Object(m) => cur = m,
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Sets the value at a dotted key, creating intermediate objects. An intermediate that
    /// holds a non-object is an error naming it.
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        let parts = split_key(key)?;
        let mut cur = self.value.get_or_insert_with(Map::new);
        let (last, parents) = parts.split_last().expect("split_key never returns empty");
        for (i, part) in parents.iter().enumerate() {
            let entry = cur
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(m) => cur = m,
                other => {
                    let at = parts[..=i].join(".");
                    return Err(user(
                        format!(
                            "cannot set {key:?}: {at:?} in {} holds {}, not an object",
                            files::show(&self.path),
                            type_name(other)
                        ),
                        format!("set {at:?} to an object first, or choose another key"),
                    ));
                }
            }
        }
        cur.insert(last.to_string(), value);
        Ok(())
    }

    /// Writes the file atomically (temp file + rename).
    pub fn save(&self) -> Result<()> {
        files::write_atomic(&self.path, files::pretty(&self.to_value()).as_bytes())
    }
}

/// The engine settings that once lived under `defaults.*` and now live under `engine.*`:
/// `(name, environment variable)`. `defaults.<name>` is still read, with a warning.
pub const ENGINE_SETTINGS: [(&str, &str); 4] = [
    ("timeout", "TASK_TIMEOUT"),
    ("fetchTimeout", "TASK_FETCH_TIMEOUT"),
    ("maxRetries", "TASK_MAX_RETRIES"),
    ("cpuSliceMs", "TASK_CPU_SLICE_MS"),
];

/// The names `defaults.<name>` may hold for the engine in files written before `engine.*`.
const LEGACY_ENGINE: [&str; 3] = ["timeout", "maxRetries", "cpuSliceMs"];

impl RcFile {
    /// The engine setting `engine.<name>`, else the legacy `defaults.<name>` (the caller warns):
    /// the value and the key it came from.
    pub fn engine_setting(&self, name: &str) -> Option<(&Value, String)> {
        let key = format!("engine.{name}");
        if let Some(v) = self.get(&key).ok().flatten() {
            return Some((v, key));
        }
        if LEGACY_ENGINE.contains(&name) {
            let key = format!("defaults.{name}");
            return self.get(&key).ok().flatten().map(|v| (v, key));
        }
        None
    }

    /// The run input defaults, `defaults.<input>`: every key of `defaults` except the legacy
    /// engine settings (`timeout`, `maxRetries`, `cpuSliceMs`) unless `declared` names an input
    /// of that name.
    pub fn input_defaults(&self, declared: &[String]) -> Map<String, Value> {
        let Some(Value::Object(all)) = self.get("defaults").ok().flatten() else {
            return Map::new();
        };
        all.iter()
            .filter(|(k, _)| !LEGACY_ENGINE.contains(&k.as_str()) || declared.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The default content `init` writes.
pub fn default_content() -> Value {
    serde_json::json!({
        "version": FORMAT_VERSION,
        "adaptor": "folder",
        "engine": { "timeout": 300000, "maxRetries": 3 }
    })
}

fn split_key(key: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(UserError::new(format!(
            "invalid key {key:?}: expected dot-separated non-empty names such as engine.timeout"
        ))
        .hint("`sequential-ecosystem config show` prints the keys that are set")
        .into());
    }
    Ok(parts)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
