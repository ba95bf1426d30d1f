//! The behaviours the original CLI reference documents (issue 15, item 6), each with the real
//! binary: `run --dry-run`, `defaults.<input>` and `engine.*`, `DATABASE_URL=./x.db`, `.env`,
//! `TASK_TIMEOUT`, timers within a minute, broken `tools/*.json`, `machine run --json` of a
//! failing command, and read-only commands that create nothing.

use sequential_test_support::http::CountingServer;
use serde_json::{Value, json};

use crate::util::Sandbox;

fn with_task(sb: &Sandbox, name: &str, code: &str, config: Option<&str>) {
    sb.write(&format!("tasks/{name}/code.js"), code);
    if let Some(c) = config {
        sb.write(&format!("tasks/{name}/config.json"), c);
    }
}

fn output(o: &crate::util::Outcome) -> Value {
    serde_json::from_str(&o.stdout).unwrap_or(Value::Null)
}

// ------------------------------------------------------------------------------ --dry-run

#[test]
fn dry_run_compiles_without_running_and_a_syntax_error_is_exit_2_with_file_line_and_column() {
    let sb = Sandbox::new();
    with_task(
        &sb,
        "broken",
        "export async function broken(input) {\n  const x = 1;\n  return x +;\n}\n",
        None,
    );
    sb.run(&["run", "broken", "--dry-run"])
        .code(2)
        .stderr_has("tasks/broken/code.js:3:13: SyntaxError")
        .stderr_has("nothing was stored or started");
    // an error on the first line keeps its column (the guard that stops the code is not counted)
    with_task(&sb, "first", "const a = (;\n", None);
    sb.run(&["run", "first", "--dry-run"])
        .code(2)
        .stderr_has("tasks/first/code.js:1:12: SyntaxError");

    // valid code that would fail if it ran: the dry run compiles it and runs nothing
    with_task(
        &sb,
        "valid",
        "export async function valid(input) {\n  throw new Error('this ran');\n}\n",
        None,
    );
    sb.run(&["run", "valid", "--dry-run"])
        .ok()
        .stdout_has("nothing was stored or started (--dry-run)")
        .stderr_lacks("this ran");
    // config and graph are still validated before anything
    with_task(
        &sb,
        "badconfig",
        "1",
        Some(r#"{"retry": {"attempts": "x"}}"#),
    );
    sb.run(&["run", "badconfig", "--dry-run"])
        .code(2)
        .stderr_has("retry");
    // nothing was stored: only the task folders exist
    assert_eq!(sb.ls("tasks"), ["badconfig", "broken", "first", "valid"]);
    assert_eq!(sb.ls("tasks/valid"), ["code.js"]);
    // and the real run does fail, so the dry run above really did not run it
    sb.run(&["run", "valid"]).code(1).stderr_has("this ran");
}

// ------------------------------------------------------------------------------ config

#[test]
fn config_defaults_supply_inputs_and_engine_settings_live_under_engine() {
    let sb = Sandbox::new();
    with_task(
        &sb,
        "greet",
        "export async function greet(input) {\n  return { userId: input.userId, lang: input.lang ?? null };\n}\n",
        Some(
            r#"{"name": "greet", "inputs": [{"name": "userId", "type": "string", "description": "who"}]}"#,
        ),
    );
    // without a default the declared input is missing
    sb.run(&["run", "greet"]).code(2).stderr_has("userId");
    sb.run(&["config", "set", "defaults.userId", "john"]).ok();
    sb.run(&["config", "set", "defaults.lang", "en"]).ok();
    let o = sb.run(&["run", "greet"]).ok();
    assert_eq!(output(&o), json!({"userId": "john", "lang": "en"}));
    // the run's input wins
    let o = sb
        .run(&["run", "greet", "--input", r#"{"userId": "ann"}"#])
        .ok();
    assert_eq!(output(&o), json!({"userId": "ann", "lang": "en"}));
    // a number set for a string input is its text
    sb.run(&["config", "set", "defaults.userId", "123"]).ok();
    let o = sb.run(&["run", "greet"]).ok();
    assert_eq!(output(&o)["userId"], "123");
    // describe shows what a run gets
    sb.run(&["describe", "greet"])
        .ok()
        .stdout_has(
            "userId (string) - who [default 123 from defaults.userId in .sequentialrc.json]",
        )
        .stdout_has("lang=\"en\" (.sequentialrc.json)");
    let d = sb.run(&["describe", "greet", "--json"]).ok().json();
    assert_eq!(d["defaults"], json!({"userId": 123, "lang": "en"}));

    // the engine's settings: engine.* (init writes them there) …
    let fresh = Sandbox::new();
    fresh.run(&["init"]).ok();
    let rc: Value = serde_json::from_str(&fresh.read(".sequentialrc.json")).unwrap();
    assert_eq!(rc["engine"]["timeout"], 300000, "{rc}");
    assert!(rc.get("defaults").is_none(), "{rc}");
    // … and the old defaults.* keys are still read, with a warning, and are not inputs
    sb.run(&["config", "set", "defaults.maxRetries", "0"]).ok();
    let o = sb.run(&["run", "greet"]).ok().stderr_has(
        "warning: defaults.maxRetries in .sequentialrc.json is read as engine.maxRetries",
    );
    assert_eq!(output(&o).get("maxRetries"), None);
    sb.run(&["config", "set", "engine.maxRetries", "x"]).ok();
    sb.run(&["run", "greet"])
        .code(2)
        .stderr_has("invalid engine.maxRetries in .sequentialrc.json \"x\"");
}

// ------------------------------------------------------------------------------ storage

#[test]
fn database_url_that_is_a_bare_path_ending_in_db_sqlite_or_sqlite3_is_sqlite() {
    for file in ["workflow.db", "data.sqlite", "data.sqlite3"] {
        let sb = Sandbox::new();
        with_task(&sb, "hello", "({ ok: true })", None);
        let url = format!("./{file}");
        sb.cmd(&["run", "hello"])
            .env("DATABASE_URL", &url)
            .run()
            .ok()
            .stdout_has("\"ok\": true");
        assert!(sb.exists(file), "{file} was not created: {:?}", sb.ls("."));
        let shown = sb
            .cmd(&["config", "show", "--json"])
            .env("DATABASE_URL", &url)
            .run()
            .ok()
            .json();
        assert_eq!(shown["storage"]["url"], format!("sqlite:{url}"), "{shown}");
        // the runs are in the database, not in the folder
        assert_eq!(sb.ls("tasks/hello"), ["code.js"]);
        let h = sb
            .cmd(&["history", "hello", "--json"])
            .env("DATABASE_URL", &url)
            .run()
            .ok()
            .json();
        assert_eq!(h["runs"].as_array().map(Vec::len), Some(1), "{h}");
    }
    // any other plain path is still a folder
    let sb = Sandbox::new();
    let shown = sb
        .cmd(&["config", "show", "--json"])
        .env("DATABASE_URL", "./store")
        .run()
        .ok()
        .json();
    assert_eq!(shown["storage"]["url"], "folder:./store");
}

#[test]
fn a_dotenv_file_in_the_working_directory_is_read_and_set_variables_win() {
    let sb = Sandbox::new();
    with_task(&sb, "hello", "({ ok: true })", None);
    sb.write(
        ".env",
        "# storage for this project\nDATABASE_URL=./from-dotenv.db\nexport TASK_MAX_RETRIES=2\n",
    );
    sb.run(&["run", "hello"]).ok();
    assert!(sb.exists("from-dotenv.db"), "{:?}", sb.ls("."));
    sb.run(&["config", "show"])
        .ok()
        .stdout_has("# storage: sqlite:./from-dotenv.db (from DATABASE_URL)");
    // a variable already set wins over .env
    sb.cmd(&["run", "hello"])
        .env("DATABASE_URL", "./from-env.db")
        .run()
        .ok();
    assert!(sb.exists("from-env.db"));
    // a malformed .env is a usage error naming it
    sb.write(".env", "DATABASE_URL=./x.db\nthis is not a setting\n");
    sb.run(&["list"]).code(2).stderr_has(".env");
}

// ------------------------------------------------------------------------------ TASK_TIMEOUT

#[test]
fn task_timeout_bounds_active_time_and_waiting_for_a_timer_does_not_count() {
    let server = CountingServer::start();
    let sb = Sandbox::new();
    // 1.5 s asleep, a moment active: well within a 1 s budget of active time
    with_task(
        &sb,
        "nap",
        "export async function nap(input) {\n  await new Promise((r) => setTimeout(r, 1500));\n  return 'rested';\n}\n",
        None,
    );
    sb.cmd(&["run", "nap", "--wait", "10s"])
        .env("TASK_TIMEOUT", "1000")
        .run()
        .ok()
        .stdout_has("\"rested\"");
    // a fetch that takes 5 s is active time: the run fails at 1 s, naming the variable
    with_task(
        &sb,
        "slow",
        "export async function slow(input) {\n  const r = await fetch(input.url);\n  return await r.json();\n}\n",
        None,
    );
    let input = json!({"url": format!("{}/slow/5000/1", server.url())}).to_string();
    let o = sb
        .cmd(&["run", "slow", "--input", &input, "--json"])
        .env("TASK_TIMEOUT", "1000")
        .run()
        .code(1);
    let doc = o.json();
    assert_eq!(doc["status"], "failed", "{doc}");
    assert_eq!(doc["error"]["name"], "TimeoutError", "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("TASK_TIMEOUT = 1000 ms"), "{message}");
    // the same from .sequentialrc.json names the key
    sb.run(&["config", "set", "engine.timeout", "1000"]).ok();
    sb.run(&["run", "slow", "--input", &input])
        .code(1)
        .stderr_has("TimeoutError")
        .stderr_has("engine.timeout in .sequentialrc.json (TASK_TIMEOUT) = 1000 ms");
    // the per-fetch timeout is TASK_FETCH_TIMEOUT now: the fetch times out, the run is not
    // failed by TASK_TIMEOUT (its retries spent, it pauses)
    let sb = Sandbox::new();
    with_task(
        &sb,
        "slow",
        "export async function slow(input) {\n  const r = await fetch(input.url);\n  return await r.json();\n}\n",
        None,
    );
    let o = sb
        .cmd(&["run", "slow", "--input", &input, "--json"])
        .env("TASK_FETCH_TIMEOUT", "200")
        .env("TASK_MAX_RETRIES", "0")
        .run()
        .code(3);
    let doc = o.json();
    assert_eq!(doc["status"], "paused", "{doc}");
    assert!(doc["error"].to_string().contains("timed out"), "{doc}");
    sb.cmd(&["run", "slow", "--input", &input])
        .env("TASK_FETCH_TIMEOUT", "soon")
        .run()
        .code(2)
        .stderr_has("TASK_FETCH_TIMEOUT");
}

// ------------------------------------------------------------------------------ timers

/// The retry pattern of the original CLI reference: the first attempt fails, the run waits
/// 1 s with `setTimeout` and tries again.
const RETRYABLE: &str = "export async function retryable(input) {
  let retries = 0;
  while (retries < 3) {
    try {
      const response = await fetch(retries === 0 ? input.first : input.then);
      if (!response.ok) throw new Error('HTTP ' + response.status);
      return await response.json();
    } catch (e) {
      retries++;
      if (retries >= 3) throw e;
      await new Promise((r) => setTimeout(r, 1000 * retries));
    }
  }
}
";

#[test]
fn run_continues_through_timers_due_within_a_minute_and_wait_0_stops_at_the_first() {
    let server = CountingServer::start();
    let sb = Sandbox::new();
    with_task(&sb, "retryable", RETRYABLE, None);
    let input = json!({
        "first": format!("{}/status/404", server.url()),
        "then": format!("{}/step/2", server.url()),
    })
    .to_string();
    let o = sb.run(&["run", "retryable", "--input", &input]).ok();
    assert_eq!(output(&o), json!({"i": 2, "ok": true}));
    assert_eq!(server.count("/status/404"), 1);
    assert_eq!(server.count("/step/2"), 1);

    // --wait 0: exit 3 at the first wait, with the resume hint
    let o = sb
        .run(&[
            "run",
            "retryable",
            "--input",
            &input,
            "--wait",
            "0",
            "--json",
        ])
        .code(3);
    assert_eq!(o.json()["status"], "waiting");
    assert!(o.stderr.contains("resume"), "{}", o.stderr);

    // a timer beyond the minute: exit 3 at once, as before
    with_task(
        &sb,
        "later",
        "export async function later(input) {\n  await new Promise((r) => setTimeout(r, 120000));\n  return 1;\n}\n",
        None,
    );
    let o = sb.run(&["run", "later", "--json"]).code(3);
    assert_eq!(o.json()["status"], "waiting");
    assert!(o.stderr.contains("resume"), "{}", o.stderr);
}

// ------------------------------------------------------------------------------ tools

#[test]
fn an_invalid_tool_file_fails_only_calls_to_that_tool_and_unknown_services_list_the_tools() {
    let server = CountingServer::start();
    let sb = Sandbox::new();
    sb.write(
        "tools/weather.json",
        &json!({"name": "weather", "request": {"url": format!("{}/step/{{{{city}}}}", server.url())}})
            .to_string(),
    );
    // no request.url
    sb.write(
        "tools/broken.json",
        r#"{"name": "broken", "request": {"method": "GET"}}"#,
    );
    with_task(
        &sb,
        "tools",
        "export async function tools(input) {
  const out = {};
  try { await __callHostTool__('broken', 'get', {}); } catch (e) { out.broken = e.name + ': ' + e.message; }
  try { await __callHostTool__('database', 'getUsers', {}); } catch (e) { out.unknown = e.name + ': ' + e.message; }
  const w = await __callHostTool__('weather', 'get', { city: 7 });
  out.weather = w.data;
  return out;
}
",
        None,
    );
    let o = sb.run(&["run", "tools"]).ok();
    let out = output(&o);
    assert_eq!(out["weather"], json!({"i": 7, "ok": true}), "{out}");
    let broken = out["broken"].as_str().unwrap();
    assert!(
        broken.starts_with("ToolConfigError") && broken.contains("tools/broken.json"),
        "{broken}"
    );
    assert!(broken.contains("missing field `url`"), "{broken}");
    let unknown = out["unknown"].as_str().unwrap();
    for name in ["database", "broken", "http", "machine", "weather", "task"] {
        assert!(unknown.contains(name), "{name} not in {unknown}");
    }
}

// ------------------------------------------------------------------------------ machine

#[test]
fn machine_run_json_of_a_failing_command_reports_its_exit_code_and_output_tails() {
    let sb = Sandbox::new();
    let long: String = "x".repeat(10_000);
    let o = sb
        .run(&[
            "machine",
            "run",
            "--json",
            &format!("echo {long}; echo last-out; echo oops >&2; exit 7"),
        ])
        .code(7)
        .stderr_has("failed with exit code 7");
    let doc = o.json();
    assert_eq!(doc["exitCode"], 7, "{doc}");
    let out = doc["stdoutTail"].as_str().unwrap();
    assert!(out.ends_with("last-out\n"), "{out}");
    assert!(
        out.len() <= 4096,
        "the tail is at most 4 KiB: {}",
        out.len()
    );
    assert_eq!(doc["stderrTail"], "oops\n");
    // the same through sequential-machine
    let doc = sb
        .machine(&["run", "--json", "echo hi; exit 3"])
        .code(3)
        .json();
    assert_eq!(doc["exitCode"], 3);
    assert_eq!(doc["stdoutTail"], "hi\n");
}

// ------------------------------------------------------------------------------ read-only

#[test]
fn read_only_commands_create_no_files_or_folders() {
    let id = "0190c3e2-7a4b-7c00-8000-000000000000";
    let commands: [&[&str]; 5] = [
        &["list"],
        &["describe", "hello"],
        &["history", "hello"],
        &["show", id],
        &["show", "hello", id],
    ];
    for storage in [None, Some("sqlite:./w.db"), Some("./w.db")] {
        let sb = Sandbox::new();
        for args in commands {
            run_read_only(&sb, args, storage);
            assert!(
                sb.ls(".").is_empty(),
                "{args:?} with DATABASE_URL={storage:?} created {:?}",
                sb.ls(".")
            );
        }
        // a tasks directory with task folders but nothing stored stays as it is too
        with_task(&sb, "hello", "({ ok: true })", None);
        for args in commands {
            run_read_only(&sb, args, storage);
            assert_eq!(sb.ls("."), ["tasks"], "{args:?} with {storage:?}");
            assert_eq!(sb.ls("tasks"), ["hello"], "{args:?} with {storage:?}");
            assert_eq!(
                sb.ls("tasks/hello"),
                ["code.js"],
                "{args:?} with {storage:?}"
            );
        }
    }
}

fn run_read_only(sb: &Sandbox, args: &[&str], storage: Option<&str>) {
    let mut cmd = sb.cmd(args);
    if let Some(url) = storage {
        cmd = cmd.env("DATABASE_URL", url);
    }
    let o = cmd.run();
    assert!(
        o.code == Some(0) || o.code == Some(2),
        "{args:?} with {storage:?}: {:?}\n{}",
        o.code,
        o.stderr
    );
}
