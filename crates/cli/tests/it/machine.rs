//! `sequential-machine` and `sequential-ecosystem machine`: the layer store's commands with the
//! real binaries on real temp dirs, and the `machine` tool called from a task.

use serde_json::Value;

use crate::runs::task;
use crate::util::Sandbox;

const WORK: &str = ".sequential-machine/work";

fn run_json(sb: &Sandbox, instruction: &str) -> Value {
    sb.machine(&["run", instruction, "--json"]).ok().json()
}

fn head(sb: &Sandbox) -> Value {
    sb.machine(&["head", "--json"]).ok().json()["hash"].clone()
}

fn history_len(sb: &Sandbox) -> usize {
    sb.machine(&["history", "--json"])
        .ok()
        .json()
        .as_array()
        .expect("history is an array")
        .len()
}

#[test]
fn run_prints_hash_short_and_cached_and_creates_the_default_store() {
    let sb = Sandbox::new();
    let doc = run_json(&sb, "echo hello > greeting.txt");
    let hash = doc["hash"].as_str().expect("hash");
    assert_eq!(hash.len(), 64, "{doc}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{doc}");
    assert_eq!(doc["short"].as_str(), Some(&hash[..12]), "{doc}");
    assert_eq!(doc["cached"], false, "{doc}");
    assert_eq!(doc["parent"], Value::Null, "{doc}");
    assert_eq!(doc["instruction"], "echo hello > greeting.txt");
    assert_eq!(sb.read(&format!("{WORK}/greeting.txt")), "hello\n");
    assert_eq!(head(&sb), hash);
    // text form names the short id
    sb.machine(&["run", "echo more >> greeting.txt"])
        .ok()
        .stdout_has("captured \"echo more >> greeting.txt\"")
        .stdout_has(&format!("on {}", &hash[..12]));
    // text mode shows the command's output before the summary
    sb.machine(&["run", "echo shown; echo x > x"])
        .ok()
        .stdout_has("shown\n");
}

#[test]
fn the_same_instruction_on_the_same_state_is_a_cache_hit() {
    let sb = Sandbox::new();
    let base = run_json(&sb, "mkdir -p out");
    let first = run_json(&sb, "echo built > out/app && echo ran >> ../ran.log");
    assert_eq!(first["cached"], false);
    assert_eq!(sb.read(".sequential-machine/ran.log"), "ran\n");
    sb.machine(&["checkout", base["short"].as_str().unwrap()])
        .ok();
    assert!(!sb.exists(&format!("{WORK}/out/app")));
    let second = run_json(&sb, "echo built > out/app && echo ran >> ../ran.log");
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(second["hash"], first["hash"]);
    assert_eq!(second["parent"], base["hash"]);
    // the command did not run again, yet the work dir and head are the cached state
    assert_eq!(sb.read(".sequential-machine/ran.log"), "ran\n");
    assert_eq!(sb.read(&format!("{WORK}/out/app")), "built\n");
    assert_eq!(head(&sb), first["hash"]);
    sb.machine(&["status", "--json"])
        .ok()
        .check("clean after a cache hit", |o| o.json()["clean"] == true);
    // a different instruction is not a hit
    sb.machine(&["checkout", base["hash"].as_str().unwrap()])
        .ok();
    assert_eq!(run_json(&sb, "echo built > out/app2")["cached"], false);
}

#[test]
fn status_is_clean_after_run_and_exact_after_edits() {
    let sb = Sandbox::new();
    run_json(&sb, "echo a > a && echo b > b && mkdir d && echo c > d/c");
    let st = sb.machine(&["status", "--json"]).ok().json();
    assert_eq!(st["clean"], true, "{st}");
    sb.machine(&["status"]).ok().stdout_has("clean");
    sb.write(&format!("{WORK}/new file.txt"), "n");
    sb.write(&format!("{WORK}/a"), "changed");
    std::fs::remove_file(sb.join(&format!("{WORK}/d/c"))).unwrap();
    let st = sb.machine(&["status", "--json"]).ok().json();
    assert_eq!(st["clean"], false);
    assert_eq!(st["added"], serde_json::json!(["new file.txt"]), "{st}");
    assert_eq!(st["modified"], serde_json::json!(["a"]), "{st}");
    assert_eq!(st["deleted"], serde_json::json!(["d/c"]), "{st}");
    sb.write(&format!("{WORK}/line\nbreak"), "n");
    sb.machine(&["status"])
        .ok()
        .stdout_has("A line\\nbreak\n")
        .stdout_has("A new file.txt\n")
        .stdout_has("M a\n")
        .stdout_has("D d/c\n");
}

#[test]
fn checkout_goes_to_older_and_newer_states() {
    let sb = Sandbox::new();
    let one = run_json(&sb, "echo 1 > v && echo keep > k");
    let two = run_json(&sb, "echo 2 > v && rm k && mkdir -p e");
    let three = run_json(&sb, "echo 3 > v && echo new > n");
    assert_eq!(history_len(&sb), 3);
    let co = sb
        .machine(&["checkout", one["short"].as_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(co["hash"], one["hash"], "{co}");
    assert_eq!(sb.read(&format!("{WORK}/v")), "1\n");
    assert_eq!(sb.read(&format!("{WORK}/k")), "keep\n");
    assert!(!sb.exists(&format!("{WORK}/n")));
    assert!(!sb.exists(&format!("{WORK}/e")));
    // newer: back to the last state, deletions stay deleted
    sb.machine(&["checkout", three["hash"].as_str().unwrap()])
        .ok()
        .stdout_has(&format!("HEAD is now {}", three["short"].as_str().unwrap()));
    assert_eq!(sb.read(&format!("{WORK}/v")), "3\n");
    assert_eq!(sb.read(&format!("{WORK}/n")), "new\n");
    assert!(!sb.exists(&format!("{WORK}/k")));
    assert!(sb.join(&format!("{WORK}/e")).is_dir());
    sb.machine(&["checkout", "HEAD~1"]).ok();
    assert_eq!(head(&sb), two["hash"]);
    assert_eq!(sb.read(&format!("{WORK}/v")), "2\n");
    assert!(sb.machine(&["status", "--json"]).ok().json()["clean"] == true);
    // history follows head
    assert_eq!(history_len(&sb), 2);
}

#[test]
fn checkout_with_uncommitted_changes_is_refused_unless_forced() {
    let sb = Sandbox::new();
    let one = run_json(&sb, "echo 1 > v");
    run_json(&sb, "echo 2 > v");
    sb.write(&format!("{WORK}/v"), "local edit");
    sb.machine(&["checkout", one["short"].as_str().unwrap()])
        .usage_error()
        .stderr_has("uncommitted changes")
        .stderr_has("M v")
        .stderr_has("--force");
    assert_eq!(sb.read(&format!("{WORK}/v")), "local edit");
    sb.machine(&["checkout", one["short"].as_str().unwrap(), "--force"])
        .ok();
    assert_eq!(sb.read(&format!("{WORK}/v")), "1\n");
}

#[test]
fn a_failing_command_passes_its_exit_code_through_and_creates_no_layer() {
    let sb = Sandbox::new();
    let first = run_json(&sb, "echo ok > ok");
    sb.machine(&["run", "echo partial > p; exit 42"])
        .code(42)
        .stderr_has("error: command \"echo partial > p; exit 42\" failed with exit code 42")
        .stderr_has("no layer was created")
        .stderr_has("hint: ");
    // --json: the document says what failed (exit code and output tails), stderr in words
    let failed = sb.machine(&["run", "exit 3", "--json"]).code(3).json();
    assert_eq!(failed["exitCode"], 3, "{failed}");
    assert_eq!(failed["stdoutTail"], "");
    assert_eq!(history_len(&sb), 1);
    assert_eq!(head(&sb), first["hash"]);
    // --capture-failed keeps the change and still reports the code
    sb.machine(&["run", "echo kept > k; exit 4", "--capture-failed"])
        .code(4);
    assert_eq!(history_len(&sb), 2);
}

#[test]
fn exec_creates_no_layer_and_passes_its_exit_code_through() {
    let sb = Sandbox::new();
    let first = run_json(&sb, "echo 1 > v");
    let o = sb
        .machine(&["exec", "cat v; echo scratch > s", "--json"])
        .ok();
    let doc = o.json();
    assert_eq!(doc["code"], 0);
    assert_eq!(doc["stdout"], "1\n");
    sb.machine(&["exec", "cat v; echo warn >&2"])
        .ok()
        .stdout_has("1\n")
        .stderr_has("warn");
    sb.machine(&["exec", "exit 9"]).code(9);
    assert_eq!(history_len(&sb), 1);
    assert_eq!(head(&sb), first["hash"]);
    // the scratch file is an uncommitted change, not a layer
    let st = sb.machine(&["status", "--json"]).ok().json();
    assert_eq!(st["added"], serde_json::json!(["s"]), "{st}");
}

#[test]
fn batch_runs_in_order_and_stops_at_the_first_failure() {
    let sb = Sandbox::new();
    let doc = sb
        .machine(&["batch", "echo 1 > one", "echo 2 > two", "--json"])
        .ok()
        .json();
    assert_eq!(doc["results"].as_array().unwrap().len(), 2, "{doc}");
    sb.write(
        "steps.txt",
        "# comment\necho 3 > three\n\nexit 5\necho never > never\n",
    );
    sb.machine(&["batch", "-f", "steps.txt"])
        .code(5)
        .stdout_has("echo 3 > three")
        .stderr_has("step 2 of the batch");
    assert_eq!(history_len(&sb), 3);
    assert!(!sb.exists(&format!("{WORK}/never")));
    sb.machine(&["batch", "-f", "missing.txt"])
        .usage_error()
        .stderr_has("missing.txt");
}

#[test]
fn tags_name_states_and_bad_refs_name_the_input() {
    let sb = Sandbox::new();
    let one = run_json(&sb, "echo 1 > v");
    run_json(&sb, "echo 2 > v");
    let t = sb
        .machine(&["tag", "first", one["short"].as_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(t["hash"], one["hash"], "{t}");
    sb.machine(&["tag", "second"]).ok();
    let tags = sb.machine(&["tags", "--json"]).ok().json();
    let names: Vec<&str> = tags
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"]);
    sb.machine(&["checkout", "first"]).ok();
    assert_eq!(sb.read(&format!("{WORK}/v")), "1\n");
    sb.machine(&["inspect", "first", "--json"])
        .ok()
        .check("inspect names the instruction", |o| {
            o.json()["instruction"] == "echo 1 > v"
        });
    sb.machine(&["diff", "first", "second", "--json"])
        .ok()
        .check("v differs", |o| {
            o.json()["modified"] == serde_json::json!(["v"])
        });
    sb.machine(&["untag", "first"])
        .ok()
        .stdout_has("removed tag first");
    sb.machine(&["checkout", "first"])
        .usage_error()
        .stderr_has("unknown ref \"first\"")
        .stderr_has("second");
    sb.machine(&["checkout", "deadbeefdead"])
        .usage_error()
        .stderr_has("deadbeefdead");
    sb.machine(&["inspect", "HEAD~9"])
        .usage_error()
        .stderr_has("HEAD~9");
    sb.machine(&["tag", "abcdef12"])
        .usage_error()
        .stderr_has("abcdef12");
    // Two states sharing a prefix cannot be made on purpose: fake a second state record.
    let hash = one["hash"].as_str().unwrap().to_string();
    let twin = format!(
        "{}{}",
        &hash[..60],
        if hash.ends_with("0000") {
            "1111"
        } else {
            "0000"
        }
    );
    let states = sb.join(".sequential-machine/states");
    std::fs::copy(states.join(&hash), states.join(&twin)).unwrap();
    sb.machine(&["inspect", &hash[..10]])
        .usage_error()
        .stderr_has("ambiguous ref")
        .stderr_has(&hash)
        .stderr_has(&twin);
    sb.machine(&["untag", "nope"])
        .usage_error()
        .stderr_has("nope");
}

#[test]
fn ls_cat_checkpoints_rebuild_verify_gc_and_reset() {
    let sb = Sandbox::new();
    run_json(
        &sb,
        "mkdir -p src && echo 'fn main() {}' > src/main.rs && ln -s src/main.rs link",
    );
    let ls = sb.machine(&["ls", "HEAD", "--json"]).ok().json();
    assert_eq!(ls.as_array().unwrap().len(), 2, "{ls}");
    sb.machine(&["ls", "HEAD"])
        .ok()
        .stdout_has("link -> src/main.rs");
    sb.machine(&["cat", "HEAD", "src/main.rs"])
        .ok()
        .check("raw content", |o| o.stdout == "fn main() {}\n");
    sb.machine(&["cat", "HEAD", "src/main.rs", "--json"])
        .ok()
        .check("text in JSON", |o| o.json()["text"] == "fn main() {}\n");
    sb.machine(&["cat", "HEAD", "nope.txt"])
        .usage_error()
        .stderr_has("nope.txt");
    sb.machine(&["checkpoint", "before"]).ok();
    run_json(&sb, "rm -rf src");
    sb.machine(&["checkpoints", "--json"])
        .ok()
        .check("one checkpoint", |o| o.json()[0]["name"] == "before");
    sb.machine(&["restore", "before"]).ok();
    assert!(sb.exists(&format!("{WORK}/src/main.rs")));
    std::fs::remove_dir_all(sb.join(WORK)).unwrap();
    sb.machine(&["status"])
        .usage_error()
        .stderr_has("does not exist")
        .stderr_has("rebuild");
    assert!(!sb.exists(WORK), "status must not recreate the work dir");
    sb.machine(&["rebuild", "--json"]).ok();
    assert_eq!(sb.read(&format!("{WORK}/src/main.rs")), "fn main() {}\n");
    sb.machine(&["verify", "--json"])
        .ok()
        .check("verify ok", |o| o.json()["ok"] == true);
    sb.machine(&["gc", "--json"]).ok();
    sb.machine(&["reset", "--hard", "--yes", "--json"])
        .ok()
        .check("work cleared", |o| o.json()["work_cleared"] == true);
    assert_eq!(head(&sb), Value::Null);
    assert!(sb.ls(WORK).is_empty());
}

#[test]
fn both_binaries_share_the_store_chosen_by_env_or_flags() {
    let sb = Sandbox::new();
    let doc = sb
        .cmd(&["machine", "run", "echo e > e", "--json"])
        .env("SEQUENTIAL_MACHINE_DIR", "store")
        .env("SEQUENTIAL_MACHINE_WORK", "tree")
        .run()
        .ok()
        .json();
    assert_eq!(sb.read("tree/e"), "e\n");
    assert!(sb.exists("store/FORMAT"));
    assert!(!sb.exists(".sequential-machine"));
    sb.machine_cmd(&["head"])
        .env("SEQUENTIAL_MACHINE_DIR", "store")
        .env("SEQUENTIAL_MACHINE_WORK", "tree")
        .run()
        .ok()
        .stdout_has(doc["hash"].as_str().unwrap());
    sb.machine(&["--dir", "store", "--work", "tree", "history"])
        .ok()
        .stdout_has("echo e > e");
    sb.run(&[
        "machine", "status", "--dir", "store", "--work", "tree", "--json",
    ])
    .ok()
    .check("clean", |o| o.json()["clean"] == true);
    // read-only commands on a store that does not exist create nothing
    sb.machine(&["history"])
        .usage_error()
        .stderr_has("no layer store at .sequential-machine");
    assert!(!sb.exists(".sequential-machine"));
}

#[test]
fn bad_store_locations_are_usage_errors() {
    let sb = Sandbox::new();
    sb.write("notastore/file.txt", "x");
    sb.machine(&["--dir", "notastore", "run", "true"])
        .usage_error()
        .stderr_has("is not a layer store");
    sb.machine(&["--dir", "s", "--work", "s", "run", "true"])
        .usage_error()
        .stderr_has("work dir");
    // a store written by a newer format is refused and left as it is
    sb.machine(&["--dir", "newer", "run", "echo 1 > a"]).ok();
    sb.write("newer/FORMAT", "sequential-layer-store format 999\n");
    sb.machine(&["--dir", "newer", "history"])
        .usage_error()
        .stderr_has("format 999");
    sb.machine(&["--dir", "newer", "run", "echo 2 > b"])
        .usage_error()
        .stderr_has("newer");
    assert_eq!(
        sb.read("newer/FORMAT"),
        "sequential-layer-store format 999\n"
    );
    assert!(!sb.exists("newer/work/b"));
    sb.machine(&["run", "true", "--env", "NOEQUALS"])
        .usage_error()
        .stderr_has("NOEQUALS");
}

#[test]
fn help_of_every_machine_command_has_an_example() {
    let sb = Sandbox::new();
    let commands = [
        "run",
        "exec",
        "batch",
        "status",
        "history",
        "head",
        "checkout",
        "diff",
        "tag",
        "tags",
        "untag",
        "inspect",
        "rebuild",
        "reset",
        "checkpoint",
        "checkpoints",
        "restore",
        "gc",
        "ls",
        "cat",
        "verify",
    ];
    sb.machine(&["--help"])
        .ok()
        .stdout_has("Usage: sequential-machine")
        .stdout_has("Examples:");
    for c in commands {
        sb.machine(&[c, "--help"])
            .ok()
            .stdout_has("Usage: sequential-machine")
            .stdout_has("Example")
            .stdout_has("sequential-machine ");
        sb.run(&["machine", c, "--help"])
            .ok()
            .stdout_has("Usage: sequential-ecosystem machine");
    }
    assert!(sb.ls(".").is_empty(), "--help must not create files");
}

const MACHINE_TASK: &str = r#"export default async function (input, ctx) {
  const m = (args) => ctx.callTool("machine", args);
  const base = await m({ op: "run", instruction: "mkdir -p out" });
  const first = await m({ op: "run", instruction: "echo hi > out/a.txt" });
  await m({ op: "checkout", ref: base.hash });
  const second = await m({ op: "run", instruction: "echo hi > out/a.txt" });
  const status = await m({ op: "status" });
  const head = await m({ op: "head" });
  const history = await m({ op: "history" });
  const exec = await m({ op: "exec", instruction: "cat out/a.txt" });
  const big = await m({ op: "exec", instruction: "head -c 100000 /dev/zero | tr '\\0' x" });
  let failed = null;
  try {
    await m({ op: "run", instruction: "exit 5" });
  } catch (e) {
    failed = { name: e.name, code: e.code ?? null };
  }
  return {
    first: first.cached, second: second.cached, sameHash: first.hash === second.hash,
    clean: status.clean, headIsFirst: head.hash === first.hash, layers: history.length,
    out: exec.stdout, failed, bigLen: big.stdout.length, bigCut: big.stdoutTruncated === true,
  };
}
"#;

#[test]
fn a_task_calling_the_machine_tool_twice_gets_a_cache_hit() {
    let sb = task("builder", MACHINE_TASK, None);
    let doc = sb
        .cmd(&["run", "builder", "--json"])
        .env("SEQUENTIAL_MACHINE_DIR", "m")
        .run()
        .ok()
        .json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    let out = &doc["output"];
    assert_eq!(out["first"], false, "{doc}");
    assert_eq!(out["second"], true, "{doc}");
    assert_eq!(out["sameHash"], true, "{doc}");
    assert_eq!(out["clean"], true, "{doc}");
    assert_eq!(out["headIsFirst"], true, "{doc}");
    assert_eq!(out["layers"], 2, "{doc}");
    assert_eq!(out["out"], "hi\n", "{doc}");
    assert_eq!(out["bigLen"], 65536, "{doc}");
    assert_eq!(out["bigCut"], true, "{doc}");
    assert_eq!(out["failed"]["name"], "MachineError", "{doc}");
    assert_eq!(out["failed"]["code"], 5, "{doc}");
    // the store is the one the environment named, relative to the current directory
    assert_eq!(sb.read("m/work/out/a.txt"), "hi\n");
    sb.machine(&["--dir", "m", "history", "--json"])
        .ok()
        .check("two layers", |o| {
            o.json().as_array().map(Vec::len) == Some(2)
        });
}

#[test]
fn a_progress_bar_is_drawn_on_a_terminal_only() {
    let sb = Sandbox::new();
    let many = "mkdir many && for i in $(seq 1 600); do echo $i > many/f$i; done";
    sb.machine(&["run", many])
        .ok()
        .check("nothing on stderr without a terminal", |o| {
            o.stderr.is_empty()
        });
    // `script` gives the command a pseudo-terminal; the bar goes to it.
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} --work w2 rebuild",
            env!("CARGO_BIN_EXE_sequential-machine")
        ))
        .arg("/dev/null")
        .current_dir(sb.path())
        .env_remove("NO_PROGRESS")
        .output()
        .expect("running script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("files"), "expected a progress bar: {text:?}");
    assert!(text.contains("HEAD is now"), "{text:?}");
    assert_eq!(sb.read("w2/many/f600"), "600\n");
}

/// Runs `sequential-machine args` on a pseudo-terminal (`script`), feeding `input`.
fn on_a_terminal(sb: &Sandbox, args: &str, input: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("script")
        .arg("-qec")
        .arg(format!(
            "{} {args}",
            env!("CARGO_BIN_EXE_sequential-machine")
        ))
        .arg("/dev/null")
        .current_dir(sb.path())
        .env("NO_PROGRESS", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running script(1)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn reset_asks_on_a_terminal_and_yes_skips_the_question() {
    let sb = Sandbox::new();
    let first = run_json(&sb, "echo 1 > a");
    let (ok, text) = on_a_terminal(&sb, "reset", "n\n");
    assert!(!ok, "{text}");
    assert!(text.contains("Continue? [y/N]"), "{text}");
    assert!(text.contains("reset cancelled"), "{text}");
    assert_eq!(head(&sb), first["hash"]);
    let (ok, text) = on_a_terminal(&sb, "reset --hard", "y\n");
    assert!(ok, "{text}");
    assert_eq!(head(&sb), Value::Null);
    assert!(sb.ls(WORK).is_empty());
    // --yes on a terminal does not ask
    run_json(&sb, "echo 2 > b");
    let (ok, text) = on_a_terminal(&sb, "reset --yes", "");
    assert!(ok, "{text}");
    assert!(!text.contains("Continue?"), "{text}");
    assert_eq!(head(&sb), Value::Null);
}

#[test]
fn two_concurrent_runs_of_the_same_command_execute_it_once() {
    let sb = Sandbox::new();
    run_json(&sb, "echo base > base");
    let instruction = "sleep 1; echo ran >> ../ran.log; echo x > x";
    let a = sb.machine_cmd(&["run", instruction, "--json"]).spawn();
    let b = sb.machine_cmd(&["run", instruction, "--json"]).spawn();
    let docs: Vec<Value> = [a, b]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    assert_eq!(docs[0]["hash"], docs[1]["hash"], "{docs:?}");
    assert_ne!(docs[0]["cached"], docs[1]["cached"], "{docs:?}");
    assert_eq!(sb.read(".sequential-machine/ran.log"), "ran\n");
}

#[test]
fn kill_9_during_a_run_leaves_a_store_that_verifies_and_works() {
    let sb = Sandbox::new();
    let first = run_json(&sb, "echo 1 > a");
    let fifo = sb.join("started");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut child = sb
        .machine_cmd(&["run", "echo 2 > b; echo go > ../../started; sleep 30"])
        .spawn();
    // Opening the fifo for reading blocks until the command has written to it.
    let started = std::fs::read_to_string(&fifo).unwrap();
    assert_eq!(started, "go\n");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sb.machine(&["verify", "--json"])
        .ok()
        .check("verify ok", |o| o.json()["ok"] == true);
    assert_eq!(head(&sb), first["hash"]);
    // b is an uncommitted change now; the next run captures it
    let next = run_json(&sb, "echo 3 > c");
    assert_eq!(next["parent"], first["hash"]);
    sb.machine(&["cat", "HEAD", "b"]).ok().stdout_has("2\n");
}
