//! The exports of a graph task's code.js, found by a light lexical scan (strings, template
//! literals and comments skipped; only top-level `export` statements count).

use std::collections::BTreeMap;

/// What code.js exports: export name → the module-level binding that holds it, and where an
/// `export default` stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports {
    /// Export name (`charge`, `default`) → the local binding (`charge`, `chargeImpl` for
    /// `export { chargeImpl as charge }`). A default export's binding is [`DEFAULT_BINDING`].
    pub names: BTreeMap<String, String>,
    /// Byte offset of the `export default` keywords, when there are some.
    pub default_at: Option<usize>,
}

/// The binding a graph handler wrapper gives code.js's default export (the keywords
/// `export default` are replaced by `const <this> =`, which has the same length).
pub const DEFAULT_BINDING: &str = "__sqd1";

impl Exports {
    /// The export names, for [`sequential_flow_graph::CheckOptions::exports`].
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.names.keys().cloned().collect()
    }
}

/// Scans `code` for its top-level exports: `export [async] function[*] name`, `export class
/// name`, `export const|let|var name = …` (every declarator), `export { a, b as c }` and
/// `export default …`. Re-exports from other modules (`export … from "x"`) are not followed.
pub fn exports(code: &str) -> Exports {
    let toks = tokens(code);
    let mut out = Exports::default();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if !(t.depth == 0 && t.text == "export") {
            i += 1;
            continue;
        }
        let word = |k: usize| toks.get(k).map(|t| t.text.as_str()).unwrap_or("");
        let mut k = i + 1;
        match word(k) {
            "default" => {
                out.default_at = Some(t.at);
                out.names
                    .insert("default".into(), DEFAULT_BINDING.to_string());
            }
            "async" | "function" | "class" => {
                if word(k) == "async" {
                    k += 1;
                }
                k += 1; // function / class
                if word(k) == "*" {
                    k += 1;
                }
                if is_ident(word(k)) {
                    out.names.insert(word(k).into(), word(k).into());
                }
            }
            "const" | "let" | "var" => {
                // every declarator at this statement's depth: `a = …, b = …`
                let depth = t.depth;
                let mut expect_name = true;
                k += 1;
                while let Some(tok) = toks.get(k) {
                    if tok.depth == depth {
                        if tok.text == ";" || (tok.newline_before && !expect_name && ends(tok)) {
                            break;
                        }
                        if expect_name && is_ident(&tok.text) {
                            out.names.insert(tok.text.clone(), tok.text.clone());
                            expect_name = false;
                        } else if tok.text == "," {
                            expect_name = true;
                        }
                    }
                    k += 1;
                }
            }
            "{" => {
                // `export { a, b as c }` (not followed by `from`)
                let mut names = Vec::new();
                k += 1;
                while k < toks.len() && toks[k].text != "}" {
                    let local = word(k).to_string();
                    if word(k + 1) == "as" {
                        names.push((word(k + 2).to_string(), local));
                        k += 3;
                    } else {
                        names.push((local.clone(), local));
                        k += 1;
                    }
                    if word(k) == "," {
                        k += 1;
                    }
                }
                if word(k + 1) != "from" {
                    for (export, local) in names {
                        if is_ident(&local) {
                            out.names.insert(export, local);
                        }
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// A statement-starting keyword: a new line that starts with one ends a `const` statement
/// written without semicolons.
fn ends(tok: &Tok) -> bool {
    matches!(
        tok.text.as_str(),
        "export"
            | "import"
            | "function"
            | "async"
            | "class"
            | "const"
            | "let"
            | "var"
            | "if"
            | "for"
            | "while"
            | "return"
    )
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_alphabetic() || f == '_' || f == '$')
        && c.all(|x| x.is_alphanumeric() || x == '_' || x == '$')
}

#[derive(Debug)]
struct Tok {
    text: String,
    at: usize,
    /// Brace/paren/bracket depth before the token.
    depth: usize,
    newline_before: bool,
}

/// Words and single punctuation characters, with strings, templates and comments skipped.
fn tokens(code: &str) -> Vec<Tok> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let mut newline = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                newline = true;
                i += 1;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    newline |= b[i] == b'\n';
                    i += 1;
                }
                i += 2;
            }
            b'"' | b'\'' => {
                i += 1;
                while i < b.len() && b[i] != c && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push(Tok {
                    text: "\"\"".into(),
                    at: i,
                    depth,
                    newline_before: std::mem::take(&mut newline),
                });
            }
            b'`' => {
                i = skip_template(b, i + 1);
                out.push(Tok {
                    text: "``".into(),
                    at: i,
                    depth,
                    newline_before: std::mem::take(&mut newline),
                });
            }
            _ if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                out.push(Tok {
                    text: String::from_utf8_lossy(&b[start..i]).into_owned(),
                    at: start,
                    depth,
                    newline_before: std::mem::take(&mut newline),
                });
            }
            _ => {
                if matches!(c, b'}' | b')' | b']') {
                    depth = depth.saturating_sub(1);
                }
                out.push(Tok {
                    text: (c as char).to_string(),
                    at: i,
                    depth,
                    newline_before: std::mem::take(&mut newline),
                });
                if matches!(c, b'{' | b'(' | b'[') {
                    depth += 1;
                }
                i += 1;
            }
        }
    }
    out
}

/// The position after the template literal whose body starts at `i` (`${…}` nesting followed).
fn skip_template(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'`' => return i + 1,
            b'$' if b.get(i + 1) == Some(&b'{') => {
                i += 2;
                let mut depth = 1;
                while i < b.len() && depth > 0 {
                    match b[i] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        b'`' => {
                            i = skip_template(b, i + 1);
                            continue;
                        }
                        b'"' | b'\'' => {
                            let q = b[i];
                            i += 1;
                            while i < b.len() && b[i] != q {
                                i += if b[i] == b'\\' { 2 } else { 1 };
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(code: &str) -> Vec<(String, String)> {
        exports(code).names.into_iter().collect()
    }

    #[test]
    fn finds_every_form_of_export() {
        let code = r#"
// export function commented() {}
/* export const hidden = 1 */
const s = "export function inString() {}";
const t = `export ${ "x" } function inTemplate() {}`;
export async function fetchOrder(input) { return { id: input.orderId }; }
export function* gen() {}
export class Thing {}
export const a = 1, b = () => { const c = 2; return c; };
export let d = 4
export var e
function impl() { if (true) { export_like(); } }
export { impl as charge, a as alias };
export { x } from "./elsewhere.js";
"#;
        assert_eq!(
            names(code),
            [
                ("Thing", "Thing"),
                ("a", "a"),
                ("alias", "a"),
                ("b", "b"),
                ("charge", "impl"),
                ("d", "d"),
                ("e", "e"),
                ("fetchOrder", "fetchOrder"),
                ("gen", "gen"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(exports(code).default_at, None);
    }

    #[test]
    fn a_default_export_is_found_where_it_stands() {
        let code = "export async function a() {}\nexport default async function (input) {}\n";
        let ex = exports(code);
        let at = ex.default_at.unwrap();
        assert_eq!(&code[at..at + 14], "export default");
        assert_eq!(ex.names["default"], DEFAULT_BINDING);
        assert_eq!("const __sqd1 =".len(), "export default".len());
    }

    #[test]
    fn nested_exports_do_not_count() {
        assert!(names("function f() { const export_ = 1; }").is_empty());
        assert!(names("const o = { export: 1 };").is_empty());
    }
}
