//! Runs every `sh` example of docs/host-api.md, in order, against a real server, and checks
//! each example's output against the `# ` lines under it (`…` matches anything).

use std::process::Command;

use crate::util::Sandbox;

/// The doc's `sh` blocks, each as (script, expected output lines).
fn blocks(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let mut script = String::new();
        let mut expected = Vec::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            if let Some(e) = l.strip_prefix("# ") {
                expected.push(e.to_string());
            }
            script.push_str(l);
            script.push('\n');
        }
        out.push((script, expected));
    }
    out
}

/// `true` when `got` is `want` with each `…` standing for any text.
fn matches(want: &str, got: &str) -> bool {
    let parts: Vec<&str> = want.split('…').collect();
    let mut rest = got;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            let Some(at) = rest.find(p) else { return false };
            rest = &rest[at + p.len()..];
        }
    }
    rest.is_empty()
}

#[test]
fn every_example_of_the_host_api_doc_runs_and_prints_what_the_doc_says() {
    let required = std::env::var("REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    for tool in ["curl", "jq", "tar", "bash"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(!required, "REQUIRE_TOOLS=1 but {tool} is not on PATH");
            println!(
                "skipped: the host API doc's examples need {tool} on PATH (REQUIRE_TOOLS=1 makes this a failure)"
            );
            return;
        }
    }
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/host-api.md"),
    )
    .unwrap();
    let blocks = blocks(&doc);
    assert!(blocks.len() >= 10, "found only {} examples", blocks.len());
    let sb = Sandbox::new();
    let server = crate::serve::Server::start(&sb, &[], &[]);
    let mut script = String::from("set -euo pipefail\n");
    for (i, (b, _)) in blocks.iter().enumerate() {
        script.push_str(b);
        script.push_str(&format!("echo '@@end {i}'\n"));
    }
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(sb.path())
        .env("API", format!("{}/api/v1", server.url))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the examples failed ({}):\n{stdout}\n{}\nserver: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    let mut got: Vec<Vec<String>> = vec![Vec::new()];
    for line in stdout.lines() {
        if line.starts_with("@@end ") {
            got.push(Vec::new());
        } else {
            got.last_mut().unwrap().push(line.to_string());
        }
    }
    for (i, (b, want)) in blocks.iter().enumerate() {
        let ok = got[i].len() == want.len() && want.iter().zip(&got[i]).all(|(w, g)| matches(w, g));
        assert!(
            ok,
            "example {i} of docs/host-api.md printed something else:\n{b}\nwanted:\n{}\ngot:\n{}",
            want.join("\n"),
            got[i].join("\n")
        );
    }
}

#[test]
fn the_wildcard_matcher_matches_what_it_should() {
    assert!(matches("a…c", "abbbc"));
    assert!(matches("abc", "abc"));
    assert!(!matches("abc", "abcd"));
    assert!(matches("{\"until\":\"…\"}", "{\"until\":\"2026\"}"));
    assert!(!matches("a…c", "abd"));
}
