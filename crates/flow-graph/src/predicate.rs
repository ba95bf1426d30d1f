//! The `when` predicate language of choice states: `{path, <op>: value}` and the combinators
//! `all`, `any`, `not`. Comparisons between different JSON types are false, never an error.

use std::cmp::Ordering;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::json::Ptr;
use crate::template::{SELECTOR_FORMS, Selector};

/// The comparison operators, for messages.
pub const OPERATORS: &str = "eq, ne, lt, lte, gt, gte, in, exists, matches, type";
const TYPES: &str = "\"string\", \"number\", \"boolean\", \"null\", \"array\", \"object\"";

/// A comparison of the value at a path.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(Value),
    Ne(Value),
    Lt(Value),
    Lte(Value),
    Gt(Value),
    Gte(Value),
    In(Vec<Value>),
    Exists(bool),
    Matches(String),
    Type(String),
}

/// A parsed `when` predicate, evaluated against a state's scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate(P);

#[derive(Debug, Clone, PartialEq)]
enum P {
    All(Vec<P>),
    Any(Vec<P>),
    Not(Box<P>),
    Test { path: Selector, op: Op },
}

impl Predicate {
    /// Parses a predicate; the error names the pointer (inside the predicate) and what is valid.
    pub fn parse(value: &Value) -> Result<Predicate> {
        Predicate::parse_at(value, &Ptr::root()).map_err(|(at, msg, expected)| {
            Error::invalid(format!("predicate at {at}: {msg}"), expected)
        })
    }

    pub(crate) fn parse_at(
        value: &Value,
        at: &Ptr,
    ) -> std::result::Result<Predicate, (Ptr, String, String)> {
        parse(value, at).map(Predicate)
    }

    /// Whether the predicate holds in `scope`.
    pub fn eval(&self, scope: &Value) -> bool {
        eval(&self.0, scope)
    }
}

type PErr = (Ptr, String, String);

fn shape() -> String {
    format!(
        "{{\"path\": <selector>, <op>: <value>}} with one op of {OPERATORS}, or {{\"all\": [...]}}, {{\"any\": [...]}}, {{\"not\": {{...}}}}"
    )
}

fn parse(value: &Value, at: &Ptr) -> std::result::Result<P, PErr> {
    let Value::Object(m) = value else {
        return Err((at.clone(), format!("{value} is not an object"), shape()));
    };
    for comb in ["all", "any", "not"] {
        if let Some(inner) = m.get(comb) {
            if m.len() != 1 {
                return Err((
                    at.clone(),
                    format!("`{comb}` must be the only key, found {}", key_list(m)),
                    shape(),
                ));
            }
            let at = at.key(comb);
            return Ok(match (comb, inner) {
                ("not", v) => P::Not(Box::new(parse(v, &at)?)),
                (_, Value::Array(a)) if !a.is_empty() => {
                    let ps = a
                        .iter()
                        .enumerate()
                        .map(|(i, v)| parse(v, &at.index(i)))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    if comb == "all" {
                        P::All(ps)
                    } else {
                        P::Any(ps)
                    }
                }
                _ => {
                    return Err((
                        at,
                        format!("`{comb}` holds {inner}"),
                        "a non-empty array of predicates".into(),
                    ));
                }
            });
        }
    }
    let Some(path) = m.get("path") else {
        return Err((at.clone(), format!("no `path` in {value}"), shape()));
    };
    let path = match path.as_str().map(Selector::parse) {
        Some(Ok(s)) => s,
        _ => {
            return Err((
                at.key("path"),
                format!("`path` is {path}"),
                SELECTOR_FORMS.to_string(),
            ));
        }
    };
    let ops: Vec<_> = m.iter().filter(|(k, _)| k.as_str() != "path").collect();
    let [(name, v)] = ops.as_slice() else {
        return Err((
            at.clone(),
            format!(
                "{} operators ({}) next to `path`",
                ops.len(),
                ops.iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("exactly one of {OPERATORS}"),
        ));
    };
    let at_op = at.key(name);
    let bad = |expected: &str| {
        Err((
            at_op.clone(),
            format!("`{name}` is {v}"),
            expected.to_string(),
        ))
    };
    let op = match name.as_str() {
        "eq" => Op::Eq((*v).clone()),
        "ne" => Op::Ne((*v).clone()),
        "lt" => Op::Lt((*v).clone()),
        "lte" => Op::Lte((*v).clone()),
        "gt" => Op::Gt((*v).clone()),
        "gte" => Op::Gte((*v).clone()),
        "in" => match v {
            Value::Array(a) => Op::In(a.clone()),
            _ => return bad("an array of values"),
        },
        "exists" => match v {
            Value::Bool(b) => Op::Exists(*b),
            _ => return bad("true or false"),
        },
        "matches" => match v {
            Value::String(s) => Op::Matches(s.clone()),
            _ => return bad("a glob string (`*` any run of characters, `?` one character)"),
        },
        "type" => match v.as_str() {
            Some(t @ ("string" | "number" | "boolean" | "null" | "array" | "object")) => {
                Op::Type(t.to_string())
            }
            _ => return bad(&format!("one of {TYPES}")),
        },
        other => {
            return Err((
                at_op.clone(),
                format!("unknown operator `{other}`"),
                format!("one of {OPERATORS}"),
            ));
        }
    };
    Ok(P::Test { path, op })
}

fn key_list(m: &serde_json::Map<String, Value>) -> String {
    m.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

fn eval(p: &P, scope: &Value) -> bool {
    match p {
        P::All(ps) => ps.iter().all(|p| eval(p, scope)),
        P::Any(ps) => ps.iter().any(|p| eval(p, scope)),
        P::Not(p) => !eval(p, scope),
        P::Test { path, op } => {
            let v = path.resolve(scope);
            match (op, v) {
                (Op::Exists(want), v) => v.is_some() == *want,
                (_, None) => false,
                (Op::Eq(x), Some(v)) => same_type(v, x) && equal(v, x),
                (Op::Ne(x), Some(v)) => same_type(v, x) && !equal(v, x),
                (Op::Lt(x), Some(v)) => compare(v, x) == Some(Ordering::Less),
                (Op::Lte(x), Some(v)) => {
                    matches!(compare(v, x), Some(Ordering::Less | Ordering::Equal))
                }
                (Op::Gt(x), Some(v)) => compare(v, x) == Some(Ordering::Greater),
                (Op::Gte(x), Some(v)) => {
                    matches!(compare(v, x), Some(Ordering::Greater | Ordering::Equal))
                }
                (Op::In(xs), Some(v)) => xs.iter().any(|x| same_type(v, x) && equal(v, x)),
                (Op::Matches(g), Some(Value::String(s))) => glob(g, s),
                (Op::Matches(_), Some(_)) => false,
                (Op::Type(t), Some(v)) => type_name(v) == t,
            }
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    type_name(a) == type_name(b)
}

/// Deep equality where numbers compare by value (`1 == 1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| equal(a, b)))
        }
        _ => a == b,
    }
}

/// Order of two numbers or two strings; `None` for anything else.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Some(x.cmp(&y))
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// `*` matches any run of characters, `?` one character, `\x` the character x.
fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                si += 1;
                continue;
            }
            Some('\\') if p.get(pi + 1) == Some(&s[si]) => {
                pi += 2;
                si += 1;
                continue;
            }
            Some(c) if *c != '\\' && *c == s[si] => {
                pi += 1;
                si += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(p: Value, scope: Value) -> bool {
        Predicate::parse(&p).unwrap().eval(&scope)
    }

    #[test]
    fn operators() {
        let s = json!({"n": 60, "s": "high", "b": true, "a": [1, 2], "f": 1.0});
        assert!(holds(json!({"path": "$.n", "gte": 50}), s.clone()));
        assert!(!holds(json!({"path": "$.s", "gte": 50}), s.clone()));
        assert!(
            !holds(json!({"path": "$.s", "ne": 50}), s.clone()),
            "type mismatch is false"
        );
        assert!(holds(json!({"path": "$.f", "eq": 1}), s.clone()));
        assert!(holds(
            json!({"path": "$.s", "in": ["low", "high"]}),
            s.clone()
        ));
        assert!(holds(json!({"path": "$.zz", "exists": false}), s.clone()));
        assert!(holds(json!({"path": "$.s", "matches": "h*h"}), s.clone()));
        assert!(holds(json!({"path": "$.s", "matches": "h??h"}), s.clone()));
        assert!(!holds(json!({"path": "$.s", "matches": "h?h"}), s.clone()));
        assert!(holds(json!({"path": "$.a", "type": "array"}), s.clone()));
        assert!(holds(json!({"path": "$.s", "lt": "z"}), s.clone()));
        assert!(holds(
            json!({"all": [{"path": "$.b", "eq": true}, {"not": {"path": "$.n", "lt": 10}}]}),
            s.clone()
        ));
        assert!(holds(
            json!({"any": [{"path": "$.b", "eq": false}, {"path": "$.n", "eq": 60}]}),
            s
        ));
    }

    #[test]
    fn bad_predicates_name_the_spot() {
        for (p, at) in [
            (json!({"path": "$.n", "gte": 1, "lt": 3}), "/"),
            (json!({"path": "$.n", "between": 1}), "/between"),
            (json!({"all": [{"path": "$.n", "in": 3}]}), "/all/0/in"),
            (json!({"path": "n", "eq": 1}), "/path"),
            (json!({"any": []}), "/any"),
        ] {
            let e = Predicate::parse(&p).unwrap_err().to_string();
            assert!(e.contains(&format!("at {at}:")), "{e}");
        }
    }
}
