//! Selectors (`$.a.b`, `$.a[0]`, `$.a["key with space"]`) and templates: JSON whose string
//! leaves starting with `$.` (or equal to `$`) are selectors; `$$` at the start escapes a `$`.

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::json::Ptr;

/// What a selector may look like, for messages.
pub const SELECTOR_FORMS: &str = "a selector: `$`, `$.a.b`, `$.a[0]` or `$.a[\"key with space\"]`";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path into the scope of a state (`$.prev.score`, `$.run.input.items[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    steps: Vec<Step>,
}

impl Selector {
    /// Parses a selector; the error names it and the accepted forms.
    pub fn parse(text: &str) -> Result<Selector> {
        parse_selector(text)
            .map_err(|why| Error::invalid(format!("selector {text:?} ({why})"), SELECTOR_FORMS))
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value it selects in `scope`, or `None` when it resolves to nothing.
    pub fn resolve<'a>(&self, scope: &'a Value) -> Option<&'a Value> {
        let mut v = scope;
        for s in &self.steps {
            v = match (s, v) {
                (Step::Key(k), Value::Object(m)) => m.get(k)?,
                (Step::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_selector(text: &str) -> std::result::Result<Selector, String> {
    let mut rest = text
        .strip_prefix('$')
        .ok_or_else(|| "it does not start with `$`".to_string())?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$'))
                .unwrap_or(r.len());
            if end == 0 {
                return Err(format!(
                    "a name must follow `.` at {:?}; use [\"…\"] for other keys",
                    rest
                ));
            }
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            if r.starts_with('"') {
                // a JSON string up to the closing quote that is not escaped
                let mut escaped = false;
                let mut close = None;
                for (i, c) in r.char_indices().skip(1) {
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => {
                            close = Some(i);
                            break;
                        }
                        _ => escaped = false,
                    }
                }
                let close = close.ok_or_else(|| "an unterminated string in [\"…\"]".to_string())?;
                let key: String = serde_json::from_str(&r[..=close])
                    .map_err(|_| format!("a bad string {:?}", &r[..=close]))?;
                let r = r[close + 1..]
                    .strip_prefix(']')
                    .ok_or_else(|| "a missing `]` after a quoted key".to_string())?;
                steps.push(Step::Key(key));
                rest = r;
            } else {
                let end = r.find(']').ok_or_else(|| "a missing `]`".to_string())?;
                let i: usize = r[..end]
                    .parse()
                    .map_err(|_| format!("{:?} is not an array index", &r[..end]))?;
                steps.push(Step::Index(i));
                rest = &r[end + 1..];
            }
        } else {
            return Err(format!("unexpected {rest:?}"));
        }
    }
    Ok(Selector {
        text: text.to_string(),
        steps,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tpl {
    Literal(Value),
    Select(Selector),
    Array(Vec<Tpl>),
    Object(Vec<(String, Tpl)>),
}

/// JSON with selectors in its string leaves, rendered against a scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Tpl);

impl Template {
    /// Parses a template; a bad selector is an error naming it and where it is.
    pub fn parse(value: &Value) -> Result<Template> {
        Template::parse_at(value, &Ptr::root()).map_err(|(at, why)| {
            Error::invalid(
                format!("template at {at}: {why}"),
                format!("{SELECTOR_FORMS}, or `$$…` for a literal `$`"),
            )
        })
    }

    /// Parses, reporting the pointer (below `at`) of a bad selector.
    pub(crate) fn parse_at(
        value: &Value,
        at: &Ptr,
    ) -> std::result::Result<Template, (Ptr, String)> {
        parse_tpl(value, at).map(Template)
    }

    /// A template that is this JSON as is.
    pub fn literal(value: Value) -> Template {
        Template(Tpl::Literal(value))
    }

    /// The template's value in `scope`; a selector that resolves to nothing is an error naming
    /// it.
    pub fn render(&self, scope: &Value) -> Result<Value> {
        self.render_raw(scope).map_err(|s| {
            Error::invalid(
                format!("selector {s} (it resolves to nothing)"),
                format!(
                    "a path present in the scope, whose keys are {}",
                    keys(scope)
                ),
            )
        })
    }

    /// Renders; the error is the selector that resolved to nothing.
    pub(crate) fn render_raw(&self, scope: &Value) -> std::result::Result<Value, &Selector> {
        render(&self.0, scope)
    }
}

fn keys(scope: &Value) -> String {
    match scope {
        Value::Object(m) => m.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
        _ => "none".into(),
    }
}

fn parse_tpl(value: &Value, at: &Ptr) -> std::result::Result<Tpl, (Ptr, String)> {
    Ok(match value {
        Value::String(s) => {
            if let Some(lit) = s.strip_prefix("$$") {
                Tpl::Literal(Value::String(format!("${lit}")))
            } else if s == "$" || s.starts_with("$.") || s.starts_with("$[") {
                Tpl::Select(
                    parse_selector(s)
                        .map_err(|why| (at.clone(), format!("selector {s:?}: {why}")))?,
                )
            } else {
                Tpl::Literal(value.clone())
            }
        }
        Value::Array(a) => {
            let items = a
                .iter()
                .enumerate()
                .map(|(i, v)| parse_tpl(v, &at.index(i)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if items.iter().all(|t| matches!(t, Tpl::Literal(_))) && !has_escape(value) {
                Tpl::Literal(value.clone())
            } else {
                Tpl::Array(items)
            }
        }
        Value::Object(m) => {
            let items = m
                .iter()
                .map(|(k, v)| Ok((k.clone(), parse_tpl(v, &at.key(k))?)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if items.iter().all(|(_, t)| matches!(t, Tpl::Literal(_))) && !has_escape(value) {
                Tpl::Literal(value.clone())
            } else {
                Tpl::Object(items)
            }
        }
        _ => Tpl::Literal(value.clone()),
    })
}

/// Whether a literal-looking subtree holds a `$$` escape (then it must be rendered).
fn has_escape(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with("$$"),
        Value::Array(a) => a.iter().any(has_escape),
        Value::Object(m) => m.values().any(has_escape),
        _ => false,
    }
}

fn render<'t>(t: &'t Tpl, scope: &Value) -> std::result::Result<Value, &'t Selector> {
    Ok(match t {
        Tpl::Literal(v) => v.clone(),
        Tpl::Select(s) => s.resolve(scope).cloned().ok_or(s)?,
        Tpl::Array(a) => Value::Array(
            a.iter()
                .map(|t| render(t, scope))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Tpl::Object(o) => {
            let mut m = Map::new();
            for (k, t) in o {
                m.insert(k.clone(), render(t, scope)?);
            }
            Value::Object(m)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_resolve() {
        let scope = json!({"a": {"b": [1, {"key with space": 5}]}});
        let s = |t: &str| Selector::parse(t).unwrap();
        assert_eq!(s("$").resolve(&scope), Some(&scope));
        assert_eq!(s("$.a.b[0]").resolve(&scope), Some(&json!(1)));
        assert_eq!(
            s("$.a.b[1][\"key with space\"]").resolve(&scope),
            Some(&json!(5))
        );
        assert_eq!(s("$.a.c").resolve(&scope), None);
        assert_eq!(s("$.a[0]").resolve(&scope), None);
        for bad in ["a.b", "$.", "$.a[", "$.a[x]", "$.a[\"x]", "$.a b"] {
            let e = Selector::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("$.a.b"),
                "{e}"
            );
        }
    }

    #[test]
    fn templates_render_and_escape() {
        let t =
            Template::parse(&json!({"x": "$.a", "y": ["$$.lit", "plain", 3], "z": "$"})).unwrap();
        let scope = json!({"a": 1});
        assert_eq!(
            t.render(&scope).unwrap(),
            json!({"x": 1, "y": ["$.lit", "plain", 3], "z": {"a": 1}})
        );
        let e = Template::parse(&json!({"x": "$.nope"}))
            .unwrap()
            .render(&scope)
            .unwrap_err()
            .to_string();
        assert!(e.contains("$.nope") && e.contains("keys are a"), "{e}");
        let e = Template::parse(&json!({"x": ["$.a["]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/0"), "{e}");
    }
}
