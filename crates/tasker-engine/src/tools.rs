//! The tool registry behind `ctx.callTool(name, args)` and `__callHostTool__(service, method,
//! args)`: the built-in `http` tool, declarative HTTP services from `tools/*.json`, and any tool
//! an embedder registers. (`task` is built into the engine: it starts a child run.)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sequential_fetch_vm::ErrorInfo;
use sequential_http_wrapper::{Fetcher, Request};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Result;

/// One tool invocation.
#[derive(Debug)]
pub struct ToolCall<'a> {
    /// The name the code used (`weather` or `service.method`).
    pub name: &'a str,
    /// The method, for `__callHostTool__(service, method, args)`.
    pub method: Option<&'a str>,
    /// The arguments.
    pub args: &'a Value,
    /// `{run_id}:{seq}`: the same on every retry and after a crash; pass it on to remote
    /// services so they can deduplicate.
    pub idempotency_key: &'a str,
    /// What performs the engine's fetches ([`Engine::with_fetcher`](crate::Engine::with_fetcher);
    /// by default the HTTP client with its timeouts and retries).
    pub fetcher: &'a dyn Fetcher,
}

/// A host tool callable from tasks. The result is journaled: a tool is called again only if the
/// worker died while it was in flight.
#[async_trait]
pub trait Tool: Send + Sync + std::fmt::Debug {
    /// Performs the call; an `Err` is thrown in the task as an error with that name and message.
    async fn call(&self, call: ToolCall<'_>) -> std::result::Result<Value, ErrorInfo>;
}

/// Tool name → tool.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    /// Invalid tool files: `(name, why)`.
    broken: Vec<(String, String)>,
}

impl ToolRegistry {
    /// A registry with the built-in `http` tool.
    pub fn new() -> Self {
        let mut r = ToolRegistry::default();
        r.register("http", HttpTool);
        r
    }

    /// Adds (or replaces) a tool.
    pub fn register(&mut self, name: &str, tool: impl Tool + 'static) -> &mut Self {
        self.tools.insert(name.to_string(), Arc::new(tool));
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.tools.keys().map(String::as_str).collect()
    }

    /// The tool for `name`, else for `service` (the part before the first `.`).
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name).or_else(|| {
            name.split_once('.')
                .and_then(|(service, _)| self.tools.get(service))
        })
    }

    /// Loads every `*.json` in `dir` as a declarative HTTP service:
    /// `{"name": "weather", "description": "…", "request": {"method": "GET",
    /// "url": "https://api.example.com/weather?city={{city}}", "headers": {…}, "body": …}}`.
    /// `{{key}}` is replaced by the argument `key` (URL-encoded inside `url`). Returns how many
    /// were loaded. A file that cannot be read or is not such a service does not stop the
    /// others: it is registered under its `name` (else its file stem) as a tool whose every call
    /// fails with an error naming the file and what is wrong (e.g. the missing field); see
    /// [`ToolRegistry::broken`].
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in &paths {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    self.register_broken(path, None, format!("cannot be read ({e})"));
                    continue;
                }
            };
            match serde_json::from_str::<ServiceSpec>(&text) {
                Ok(spec) => {
                    let name = spec.name.clone();
                    self.register(&name, spec);
                }
                Err(e) => {
                    let name = serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v["name"].as_str().map(str::to_string));
                    self.register_broken(path, name, format!("is not a tool definition: {e}"));
                }
            }
        }
        Ok(paths.len())
    }

    /// The tools of `tools/*.json` files that are invalid: `(name, why)`, sorted by name.
    pub fn broken(&self) -> Vec<(String, String)> {
        self.broken.clone()
    }

    fn register_broken(&mut self, path: &Path, name: Option<String>, why: String) {
        let name = name.unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        });
        let why = format!(
            "{} {why}; expected {{\"name\": …, \"request\": {{\"method\", \"url\", \"headers\", \"body\"}}}}",
            path.display()
        );
        self.broken.push((name.clone(), why.clone()));
        self.broken.sort();
        self.register(&name, BrokenTool { why });
    }
}

/// A `tools/*.json` file that is invalid: every call fails, naming the file and the problem.
#[derive(Debug)]
struct BrokenTool {
    why: String,
}

#[async_trait]
impl Tool for BrokenTool {
    async fn call(&self, call: ToolCall<'_>) -> std::result::Result<Value, ErrorInfo> {
        Err(ErrorInfo::new(
            "ToolConfigError",
            format!("tool {:?} cannot be called: {}", call.name, self.why),
        ))
    }
}

/// The built-in `http` tool: `ctx.callTool("http", {url, method, headers, body})`.
#[derive(Debug)]
struct HttpTool;

#[async_trait]
impl Tool for HttpTool {
    async fn call(&self, call: ToolCall<'_>) -> std::result::Result<Value, ErrorInfo> {
        let a = call.args;
        let url = a["url"].as_str().ok_or_else(|| {
            ErrorInfo::new("TypeError", "the http tool needs args.url (a string)")
        })?;
        let req = Request {
            url: url.to_string(),
            method: a["method"].as_str().unwrap_or("GET").to_string(),
            headers: headers_of(&a["headers"]),
            body: body_of(&a["body"]),
            idempotency_key: Some(call.idempotency_key.to_string()),
            retry: None,
        };
        respond(call.fetcher, &req).await
    }
}

/// A declarative HTTP service from `tools/<name>.json`.
#[derive(Debug, Deserialize)]
struct ServiceSpec {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    request: RequestTemplate,
}

#[derive(Debug, Deserialize)]
struct RequestTemplate {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<Value>,
}

fn get() -> String {
    "GET".into()
}

#[async_trait]
impl Tool for ServiceSpec {
    async fn call(&self, call: ToolCall<'_>) -> std::result::Result<Value, ErrorInfo> {
        let t = &self.request;
        let req = Request {
            url: fill(&t.url, call.args, true),
            method: t.method.clone(),
            headers: t
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, call.args, false)))
                .collect(),
            body: t
                .body
                .as_ref()
                .map(|b| fill_value(b, call.args))
                .and_then(|b| body_of(&b)),
            idempotency_key: Some(call.idempotency_key.to_string()),
            retry: None,
        };
        respond(call.fetcher, &req).await
    }
}

async fn respond(fetcher: &dyn Fetcher, req: &Request) -> std::result::Result<Value, ErrorInfo> {
    match fetcher.fetch(req).await {
        Ok(resp) => Ok(json!({
            "status": resp.status,
            "statusText": resp.status_text,
            "ok": resp.ok(),
            "data": resp.data(),
        })),
        Err(e) => Err(ErrorInfo::new("FetchError", e.to_string())),
    }
}

/// Request headers given as an object (`{name: value}`) or as `[name, value]` pairs.
pub(crate) fn headers_of(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect(),
        Value::Array(pairs) => pairs
            .iter()
            .filter_map(|p| {
                Some((
                    p.get(0)?.as_str()?.to_string(),
                    p.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A request body: a string as it is, any other JSON value serialized, `null` for none.
pub(crate) fn body_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// Replaces `{{key}}` with `args[key]` (strings as they are, other values as JSON).
fn fill(template: &str, args: &Value, url_encode: bool) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        let value = match &args[key] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if url_encode {
            out.push_str(&percent_encode(&value));
        } else {
            out.push_str(&value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn fill_value(v: &Value, args: &Value) -> Value {
    match v {
        Value::String(s) => {
            let t = s.trim();
            // a whole-string placeholder keeps the argument's JSON type
            if let Some(key) = t.strip_prefix("{{").and_then(|k| k.strip_suffix("}}"))
                && !key.contains("{{")
            {
                return args[key.trim()].clone();
            }
            Value::String(fill(s, args, false))
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_value(x, args)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), fill_value(x, args)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a `{{key}}` inside a URL is encoded with: everything but the unreserved characters of
/// RFC 3986 (`A-Z a-z 0-9 - _ . ~`).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_and_encode() {
        let args = json!({"city": "São Paulo", "n": 3, "tags": ["a"]});
        assert_eq!(
            fill("https://x/w?city={{city}}&n={{ n }}", &args, true),
            "https://x/w?city=S%C3%A3o%20Paulo&n=3"
        );
        assert_eq!(fill("Bearer {{missing}}", &args, false), "Bearer ");
        assert_eq!(
            fill_value(&json!({"q": "{{tags}}", "s": "in {{city}}"}), &args),
            json!({"q": ["a"], "s": "in São Paulo"})
        );
    }

    #[test]
    fn service_names_resolve_by_prefix() {
        let mut r = ToolRegistry::new();
        r.register("mail", HttpTool);
        assert!(r.get("mail.send").is_some());
        assert!(r.get("http").is_some());
        assert!(r.get("nope.x").is_none());
        assert_eq!(r.names(), vec!["http", "mail"]);
    }

    #[test]
    fn malformed_tool_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ok.json"),
            r#"{"name":"weather","request":{"url":"data:,x"}}"#,
        )
        .unwrap();
        let mut r = ToolRegistry::new();
        assert_eq!(r.load_dir(dir.path()).unwrap(), 1);
        assert!(r.get("weather").is_some());
        std::fs::write(dir.path().join("bad.json"), "{\"name\": 1}").unwrap();
        assert_eq!(r.load_dir(dir.path()).unwrap(), 2);
        assert!(r.get("weather").is_some(), "the valid file still loads");
        let broken = r.broken();
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].0, "bad");
        assert!(
            broken[0].1.contains("bad.json") && broken[0].1.contains("line 1"),
            "{broken:?}"
        );
    }
}
