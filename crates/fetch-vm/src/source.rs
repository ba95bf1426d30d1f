//! Light lexical analysis of task code: mode detection, the final object-literal statement, hashing.

use sha2::{Digest, Sha256};

/// What a quick scan of the code found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// A top-level `export` or `import` statement: the code is a module.
    pub is_module: bool,
    /// Byte range of a final top-level statement that starts with `{` (a candidate object literal).
    pub object_tail: Option<(usize, usize)>,
}

/// `sha256:<hex>` of the code.
pub(crate) fn code_hash(code: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(code.as_bytes())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// Start of input.
    Start,
    /// An identifier or keyword.
    Word,
    /// A keyword after which an expression (or a regex) starts, or a block follows.
    Keyword,
    /// A number, string, template or regex.
    Literal,
    /// `)` or `]`.
    Close,
    /// `}`.
    CloseBrace,
    /// `;`.
    Semi,
    /// Any other punctuation.
    Punct,
}

const EXPR_KEYWORDS: &[&str] = &[
    "return",
    "typeof",
    "case",
    "do",
    "else",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "instanceof",
    "yield",
    "await",
    "try",
    "finally",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Paren,
    Bracket,
    Brace,
    /// `${` inside a template literal.
    TemplateExpr,
}

/// Scans `code` once (strings, templates, comments and regex literals are skipped).
pub(crate) fn scan(code: &str) -> Scan {
    let b = code.as_bytes();
    let mut out = Scan::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut prev = Tok::Start;
    let mut newline_since_prev = false;
    let mut candidate: Option<(usize, Option<usize>)> = None;
    let mut i = 0;
    // Are we inside a template literal's text part (after a `}` closed a `${`)?
    let mut resume_template = false;
    while i < b.len() {
        if resume_template {
            resume_template = false;
            i = skip_template(b, i, &mut stack);
            prev = Tok::Literal;
            newline_since_prev = false;
            continue;
        }
        let c = b[i];
        match c {
            b'\n' => {
                newline_since_prev = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = code[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                if code[i..end].contains('\n') {
                    newline_since_prev = true;
                }
                i = end;
                continue;
            }
            _ => {}
        }
        // A significant token starts at i: anything after a finished candidate voids it.
        if let Some((_, Some(_))) = candidate
            && c != b';'
        {
            candidate = None;
        }
        let tok;
        match c {
            b'"' | b'\'' => {
                i = skip_string(b, i);
                tok = Tok::Literal;
            }
            b'`' => {
                i = skip_template(b, i + 1, &mut stack);
                tok = Tok::Literal;
            }
            b'/' => {
                let regex_allowed = matches!(
                    prev,
                    Tok::Start | Tok::Keyword | Tok::Punct | Tok::Semi | Tok::CloseBrace
                );
                if regex_allowed {
                    i = skip_regex(b, i);
                    tok = Tok::Literal;
                } else {
                    i += 1;
                    tok = Tok::Punct;
                }
            }
            b'(' | b'[' => {
                stack.push(if c == b'(' {
                    Open::Paren
                } else {
                    Open::Bracket
                });
                i += 1;
                tok = Tok::Punct;
            }
            b')' | b']' => {
                stack.pop();
                i += 1;
                tok = Tok::Close;
            }
            b'{' => {
                if stack.is_empty() {
                    let statement_start = match prev {
                        Tok::Start | Tok::Semi | Tok::CloseBrace => true,
                        Tok::Word | Tok::Literal | Tok::Close => newline_since_prev,
                        Tok::Keyword | Tok::Punct => false,
                    };
                    if statement_start {
                        candidate = Some((i, None));
                    }
                }
                stack.push(Open::Brace);
                i += 1;
                tok = Tok::Punct;
            }
            b'}' => {
                let open = stack.pop();
                i += 1;
                if open == Some(Open::TemplateExpr) {
                    resume_template = true;
                    continue;
                }
                if stack.is_empty()
                    && let Some((start, None)) = candidate
                {
                    candidate = Some((start, Some(i)));
                }
                tok = Tok::CloseBrace;
            }
            b';' => {
                i += 1;
                tok = Tok::Semi;
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
                tok = Tok::Literal;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let word = &code[start..i];
                let statement_start = matches!(prev, Tok::Start | Tok::Semi | Tok::CloseBrace)
                    || (newline_since_prev && prev != Tok::Punct && prev != Tok::Keyword);
                if stack.is_empty()
                    && statement_start
                    && (word == "export"
                        || (word == "import" && !next_is(b, i, b'(') && !next_is(b, i, b'.')))
                {
                    out.is_module = true;
                }
                tok = if EXPR_KEYWORDS.contains(&word) {
                    Tok::Keyword
                } else {
                    Tok::Word
                };
            }
            _ => {
                i += 1;
                tok = Tok::Punct;
            }
        }
        prev = tok;
        newline_since_prev = false;
    }
    if let Some((start, Some(end))) = candidate {
        out.object_tail = Some((start, end));
    }
    out
}

fn next_is(b: &[u8], mut i: usize, want: u8) -> bool {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    b.get(i) == Some(&want)
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == quote => return i + 1,
            b'\n' => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// Skips template text from `i` (just after the backtick or a closing `}`); on `${` pushes a
/// marker and returns the position after it.
fn skip_template(b: &[u8], mut i: usize, stack: &mut Vec<Open>) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'`' => return i + 1,
            b'$' if b.get(i + 1) == Some(&b'{') => {
                stack.push(Open::TemplateExpr);
                return i + 2;
            }
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_regex(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'[' => {
                in_class = true;
                i += 1;
            }
            b']' => {
                in_class = false;
                i += 1;
            }
            b'/' if !in_class => {
                i += 1;
                while i < b.len() && b[i].is_ascii_alphabetic() {
                    i += 1;
                }
                return i;
            }
            b'\n' => return i,
            _ => i += 1,
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(code: &str) -> Option<&str> {
        scan(code).object_tail.map(|(s, e)| &code[s..e])
    }

    #[test]
    fn finds_final_object_statement() {
        assert_eq!(tail("const a = 1;\n{ a: a, b: 2 }"), Some("{ a: a, b: 2 }"));
        assert_eq!(
            tail("const a = f()\n{ a, b: \"}\" };\n// done\n"),
            Some("{ a, b: \"}\" }")
        );
        assert_eq!(tail("x = { a: 1 }"), None);
        assert_eq!(tail("if (x) { y }"), None);
        assert_eq!(tail("{ a: 1 }\nfoo()"), None);
        assert_eq!(
            tail("const r = /}/g; { r: `${ {a:1}.a }` }"),
            Some("{ r: `${ {a:1}.a }` }")
        );
        assert_eq!(tail("try { f() } finally { g() }"), None);
    }

    #[test]
    fn detects_modules() {
        assert!(scan("export default async function (input, ctx) {}").is_module);
        assert!(scan("import x from 'y'\nexport const a = 1").is_module);
        assert!(!scan("const s = 'export default'; fetch(s)").is_module);
        assert!(!scan("const m = await import('x')").is_module);
        assert!(!scan("obj.export = 1").is_module);
    }
}
