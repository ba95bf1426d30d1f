//! init, create-task, list, describe, delete as a user runs them.

use serde_json::Value;

use crate::util::Sandbox;

#[test]
fn init_creates_tasks_dir_and_settings_then_keeps_them() {
    let sb = Sandbox::new();
    sb.run(&["init"])
        .ok()
        .stdout_has("created tasks/")
        .stdout_has("created .sequentialrc.json");
    assert!(sb.join("tasks").is_dir());
    let rc: Value = serde_json::from_str(&sb.read(".sequentialrc.json")).unwrap();
    assert_eq!(rc["version"], 1);
    assert_eq!(rc["adaptor"], "folder");

    sb.write(
        ".sequentialrc.json",
        "{\"version\": 1, \"adaptor\": \"sqlite\"}\n",
    );
    let out = sb.run(&["init", "--json"]).ok().stdout_lacks("created");
    let json = out.json();
    assert_eq!(json["tasks_dir"]["action"], "kept");
    assert_eq!(json["config_file"]["action"], "kept");
    assert_eq!(
        sb.read(".sequentialrc.json"),
        "{\"version\": 1, \"adaptor\": \"sqlite\"}\n",
        "init must not rewrite an existing settings file"
    );
}

#[test]
fn create_task_scaffolds_valid_files() {
    let sb = Sandbox::new();
    sb.run(&[
        "create-task",
        "hello",
        "--inputs",
        "name,count:number",
        "--description",
        "Greets someone",
    ])
    .ok()
    .stdout_has("created task hello")
    .stdout_has("tasks/hello/code.js");
    assert_eq!(
        sb.ls("tasks/hello"),
        ["code.js", "config.json", "meta.json"]
    );
    let config: Value = serde_json::from_str(&sb.read("tasks/hello/config.json")).unwrap();
    assert_eq!(config["name"], "hello");
    assert_eq!(config["description"], "Greets someone");
    assert_eq!(config["inputs"][0]["name"], "name");
    assert_eq!(config["inputs"][0]["type"], "string");
    assert_eq!(config["inputs"][1]["name"], "count");
    assert_eq!(config["inputs"][1]["type"], "number");
    assert!(config["inputs"][1]["description"].is_string());
    let meta: Value = serde_json::from_str(&sb.read("tasks/hello/meta.json")).unwrap();
    assert_eq!(meta["version"], 1);
    let created = meta["created"].as_str().unwrap();
    assert_eq!(meta["updated"], created);
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "RFC 3339 UTC: {created}"
    );
    let code = sb.read("tasks/hello/code.js");
    assert!(
        code.contains("export default async function (input, ctx)"),
        "{code}"
    );
    assert!(
        code.contains("await fetch('data:application/json,"),
        "{code}"
    );
    assert!(code.contains("const { name, count } = input"), "{code}");
}

#[test]
fn create_task_with_graph_writes_a_version_1_graph_whose_states_have_handlers() {
    let sb = Sandbox::new();
    sb.run(&[
        "create-task",
        "order-flow",
        "--with-graph",
        "--inputs",
        "orderId",
    ])
    .ok()
    .stdout_has("tasks/order-flow/graph.json");
    let graph: Value = serde_json::from_str(&sb.read("tasks/order-flow/graph.json")).unwrap();
    assert_eq!(graph["version"], 1);
    assert_eq!(graph["id"], "order-flow");
    let states = graph["states"].as_object().unwrap();
    let initial = graph["initial"].as_str().unwrap();
    assert!(states.contains_key(initial));
    let code = sb.read("tasks/order-flow/code.js");
    let mut finals = 0;
    for (name, state) in states {
        let ty = state["type"].as_str().unwrap_or("task");
        if ty == "final" {
            finals += 1;
            continue;
        }
        assert_eq!(ty, "task");
        assert!(
            code.contains(&format!("export async function {name}(")),
            "state {name} needs a handler in code.js:\n{code}"
        );
        let next = state["onDone"].as_str().unwrap();
        assert!(states.contains_key(next), "{name} → unknown {next}");
    }
    assert_eq!(finals, 1);
}

#[test]
fn list_and_describe_show_folders_and_stored_versions() {
    let sb = Sandbox::new();
    sb.run(&["init"]).ok();
    sb.run(&[
        "create-task",
        "hello",
        "--inputs",
        "name",
        "--description",
        "Greets",
    ])
    .ok();
    sb.run(&["create-task", "flow", "--with-graph"]).ok();

    sb.run(&["list"]).ok().stdout_has("NAME").check(
        "hello row: not stored, inputs, description",
        |o| {
            o.stdout.lines().any(|l| {
                l.starts_with("hello")
                    && l.contains("not stored")
                    && l.contains("name")
                    && l.contains("Greets")
            })
        },
    );
    let list = sb.run(&["list", "--json"]).ok().json();
    assert_eq!(list["storage"], "folder:tasks");
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["name"], "flow");
    assert_eq!(tasks[1]["name"], "hello");
    assert_eq!(tasks[1]["inputs"], serde_json::json!(["name"]));
    assert_eq!(tasks[1]["stored_version"], Value::Null);
    assert_eq!(tasks[1]["state"], "not-stored");

    sb.run(&["sync-tasks"]).ok();
    let list = sb.run(&["--json", "list"]).ok().json();
    assert_eq!(list["tasks"][1]["stored_version"], 1);
    assert_eq!(list["tasks"][1]["state"], "in-sync");

    sb.run(&["describe", "hello"])
        .ok()
        .stdout_has("task:        hello")
        .stdout_has("description: Greets")
        .stdout_has("name (string)")
        .stdout_has("in sync with v1");
    let d = sb.run(&["describe", "flow", "--json"]).ok().json();
    assert_eq!(d["name"], "flow");
    assert_eq!(d["has_graph"], true);
    assert_eq!(d["stored"]["version"], 1);
    assert_eq!(d["stored"]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        d["files"],
        serde_json::json!(["code.js", "config.json", "meta.json", "graph.json"])
    );

    // An edit shows up as "modified" until it is synced again.
    let code = sb.read("tasks/hello/code.js");
    sb.write("tasks/hello/code.js", &format!("{code}\n// edited\n"));
    let d = sb.run(&["describe", "hello", "--json"]).ok().json();
    assert_eq!(d["state"], "modified");
    sb.run(&["list"]).ok().stdout_has("modified");
}

#[test]
fn list_in_an_empty_directory_says_so_and_creates_nothing() {
    let sb = Sandbox::new();
    sb.run(&["list"]).ok().stdout_has("no tasks");
    assert!(
        sb.ls(".").is_empty(),
        "list must not create files: {:?}",
        sb.ls(".")
    );
    let json = sb.run(&["list", "--json"]).ok().json();
    assert_eq!(json["tasks"], serde_json::json!([]));
}

#[test]
fn delete_removes_the_folder_and_the_stored_versions() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    sb.run(&["create-task", "keep"]).ok();
    sb.run(&["sync-tasks"]).ok();
    assert!(
        sb.exists("tasks/hello/versions"),
        "{:?}",
        sb.ls("tasks/hello")
    );

    let out = sb.run(&["delete", "hello", "--json"]).ok().json();
    assert_eq!(out["deleted_from_storage"], true);
    assert_eq!(out["removed_folder"], "tasks/hello");
    assert!(!sb.exists("tasks/hello"));
    assert!(sb.exists("tasks/keep/code.js"));
    let list = sb.run(&["list", "--json"]).ok().json();
    assert_eq!(list["tasks"].as_array().unwrap().len(), 1);

    // A folder that was never synced is deleted too (nothing in storage).
    sb.run(&["create-task", "draft"]).ok();
    sb.run(&["delete", "draft"])
        .ok()
        .stdout_has("removed tasks/draft/");
    assert!(!sb.exists("tasks/draft"));
}

#[test]
fn delete_of_a_task_with_an_active_run_needs_force() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "busy"]).ok();
    sb.run(&["sync-tasks"]).ok();
    // A queued run, created through the real folder backend the CLI uses.
    let root = sb.join("tasks");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sequential_adaptor::{NewRun, StorageAdapter, TaskName};
            let store = sequential_adaptor_folder::FolderStore::open(&root).unwrap();
            store
                .create_run(NewRun::new(
                    TaskName::new("busy").unwrap(),
                    1,
                    serde_json::json!({}),
                ))
                .await
                .unwrap();
        });

    sb.run(&["delete", "busy"])
        .usage_error()
        .stderr_has("active run")
        .stderr_has("--force");
    assert!(
        sb.exists("tasks/busy/code.js"),
        "nothing may be deleted without --force"
    );
    assert!(sb.exists("tasks/busy/versions"));

    sb.run(&["delete", "busy", "--force"]).ok();
    assert!(!sb.exists("tasks/busy"));
}

#[test]
fn debug_logs_go_to_stderr_and_json_stdout_stays_clean() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    let out = sb
        .cmd(&["sync-tasks", "--json"])
        .env("DEBUG", "1")
        .run()
        .ok()
        .stderr_has("DEBUG");
    assert_eq!(out.json()["created"], 1);
    let out = sb
        .cmd(&["list", "--json"])
        .env("RUST_LOG", "debug")
        .run()
        .ok()
        .stderr_has("opening storage");
    assert_eq!(out.json()["tasks"][0]["name"], "hello");
    // Without DEBUG/RUST_LOG, a successful command prints nothing on stderr.
    sb.run(&["list"])
        .ok()
        .check("stderr empty", |o| o.stderr.is_empty());
}

#[test]
fn create_task_says_which_run_command_works_next() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "plain"])
        .ok()
        .stdout_has("next: `sequential-ecosystem run plain` (it runs as is)");
    sb.run(&["run", "plain"]).ok();
    let out = sb.run(&[
        "create-task",
        "greet",
        "--inputs",
        "name,count:number",
        "--json",
    ]);
    let next = out.ok().json()["next"].as_str().unwrap().to_string();
    assert!(
        next.contains(r#"run greet --input '{"name": "…", "count": 1}'"#),
        "{next}"
    );
    sb.run(&["run", "greet", "--input", r#"{"name": "x", "count": 1}"#])
        .ok();
}
