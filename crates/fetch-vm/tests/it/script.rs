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
