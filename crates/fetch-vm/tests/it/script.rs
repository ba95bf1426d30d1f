//! Script mode: synchronous fetch, last expression, object-literal tail.

use serde_json::json;

use crate::harness::{both, value};

#[test]
fn seed_example_user_then_posts() {
    let code = r#"
const user = fetch(`https://api.example.com/users/${input.userId}`);
const posts = fetch(`https://api.example.com/posts?userId=${user.id}`);
{ user: user.name, postCount: posts.length }
"#;
    let run = both(code, json!({"userId": 1}));
    assert_eq!(value(&run), json!({"user": "Alice", "postCount": 5}));
    assert_eq!(run.journal.len(), 2);
}

#[test]
fn final_braces_follow_the_node_repl_rule() {
    let cases = [
        ("const a = 1\n{ a, b: a + 1 }", json!({"a": 1, "b": 2})),
        ("{ x: 1 }", json!({"x": 1})),
        ("{}", json!({})),
        ("let n = 0\n{ n++; n += 2 }", json!(3)),
        ("class A\n{ m() { return 5 } }\nnew A().m()", json!(5)),
        ("class A\n{ m() { return 5 } }", json!(null)),
        ("function f()\n{ return 7 }", json!(null)),
        ("const s = '}{'; { s }", json!({"s": "}{"})),
    ];
    for (code, want) in cases {
        assert_eq!(value(&both(code, json!(null))), want, "{code}");
    }
}

#[test]
fn script_mode_fetch_returns_the_body() {
    let code = "[fetch('https://x.test/text'), fetch('https://x.test/users/1').name, typeof fetch('https://x.test/posts')]";
    assert_eq!(
        value(&both(code, json!(null))),
        json!(["hello", "Alice", "object"])
    );
}
