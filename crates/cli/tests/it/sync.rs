//! sync-tasks: idempotent upload of task folders, on folder storage and on SQLite.

use crate::util::Sandbox;

fn two_tasks() -> Sandbox {
    let sb = Sandbox::new();
    sb.run(&["create-task", "alpha", "--inputs", "x"]).ok();
    sb.run(&["create-task", "beta", "--with-graph"]).ok();
    sb
}

#[test]
fn sync_twice_on_folder_storage_creates_nothing_the_second_time() {
    let sb = two_tasks();
    sb.run(&["sync-tasks"])
        .ok()
        .stdout_has("alpha  created v1")
        .stdout_has("beta   created v1")
        .stdout_has("2 created, 0 unchanged");
    assert_eq!(sb.ls("tasks/alpha/versions"), ["1.json"]);

    sb.run(&["sync-tasks"])
        .ok()
        .stdout_has("alpha  unchanged v1")
        .stdout_has("beta   unchanged v1")
        .stdout_has("nothing new")
        .stdout_lacks("created v");
    assert_eq!(sb.ls("tasks/alpha/versions"), ["1.json"]);
    assert_eq!(sb.ls("tasks/beta/versions"), ["1.json"]);
}

#[test]
fn sync_twice_on_sqlite_creates_nothing_the_second_time() {
    let sb = two_tasks();
    let url = format!("sqlite:{}", sb.join("db.sqlite").display());
    let first = sb
        .cmd(&["sync-tasks", "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .json();
    assert_eq!(first["storage"], url.as_str());
    assert_eq!(first["created"], 2);
    assert_eq!(first["unchanged"], 0);
    assert_eq!(first["tasks"][0]["name"], "alpha");
    assert_eq!(first["tasks"][0]["status"], "created");
    assert_eq!(first["tasks"][0]["version"], 1);

    sb.cmd(&["sync-tasks"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .stdout_has("alpha  unchanged v1")
        .stdout_has("nothing new: 2 tasks already stored in sqlite:");
    // The folder default stayed untouched: nothing went to tasks/<name>/versions.
    assert!(!sb.exists("tasks/alpha/versions"));

    // The same database through --adaptor, and list/describe reading it via DATABASE_URL.
    let again = sb
        .run(&["sync-tasks", "--adaptor", &url, "--json"])
        .ok()
        .json();
    assert_eq!(again["created"], 0);
    assert_eq!(again["unchanged"], 2);
    let list = sb
        .cmd(&["list", "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .json();
    assert_eq!(list["tasks"][0]["stored_version"], 1);
    assert_eq!(list["tasks"][0]["state"], "in-sync");

    // A task whose folder is gone is still listed and described from storage.
    std::fs::remove_dir_all(sb.join("tasks/alpha")).unwrap();
    let list = sb
        .cmd(&["list", "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .json();
    assert_eq!(list["tasks"][0]["name"], "alpha");
    assert_eq!(list["tasks"][0]["state"], "stored-only");
    assert_eq!(list["tasks"][0]["inputs"], serde_json::json!(["x"]));
    sb.cmd(&["describe", "alpha"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .stdout_has("stored only");
}

#[test]
fn changed_content_becomes_the_next_version() {
    let sb = two_tasks();
    sb.run(&["sync-tasks"]).ok();
    let config = sb.read("tasks/alpha/config.json");
    sb.write(
        "tasks/alpha/config.json",
        &config.replace("The alpha task", "Alpha, second edition"),
    );
    sb.run(&["sync-tasks"])
        .ok()
        .stdout_has("alpha  created v2")
        .stdout_has("beta   unchanged v1")
        .stdout_has("1 created, 1 unchanged");
    assert_eq!(sb.ls("tasks/alpha/versions"), ["1.json", "2.json"]);
}

#[test]
fn sync_one_task_with_the_task_flag() {
    let sb = two_tasks();
    let out = sb
        .run(&["sync-tasks", "--task", "beta", "--json"])
        .ok()
        .json();
    assert_eq!(out["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(out["tasks"][0]["name"], "beta");
    assert!(!sb.exists("tasks/alpha/versions"));
    sb.run(&["sync-tasks", "--task", "gamma"])
        .usage_error()
        .stderr_has("\"gamma\" not found");
}

#[test]
fn adaptor_sqlite_means_database_url_if_sqlite_else_the_default_file() {
    let sb = two_tasks();
    sb.run(&["sync-tasks", "--adaptor", "sqlite"])
        .ok()
        .stdout_has("to sqlite:./sequential.db");
    assert!(sb.exists("sequential.db"));

    let url = format!("sqlite:{}", sb.join("other.db").display());
    sb.cmd(&["sync-tasks", "--adaptor", "sqlite", "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .check("DATABASE_URL (SQLite) is used", |o| {
            o.json()["storage"] == url.as_str()
        });
    assert!(sb.exists("other.db"));

    // --adaptor folder is the folder default even when DATABASE_URL says otherwise.
    sb.cmd(&["sync-tasks", "--adaptor", "folder", "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .check("folder default", |o| o.json()["storage"] == "folder:tasks");
    assert!(sb.exists("tasks/alpha/versions/1.json"));
}

#[test]
fn sync_checks_every_folder_before_storing_anything() {
    let sb = two_tasks();
    sb.write("tasks/beta/config.json", "{ \"name\": \"beta\", }");
    sb.run(&["sync-tasks"])
        .usage_error()
        .stderr_has("tasks/beta/config.json");
    assert!(
        !sb.exists("tasks/alpha/versions"),
        "alpha must not be stored"
    );
}

#[test]
fn sync_with_no_task_folders_says_so() {
    let sb = Sandbox::new();
    sb.run(&["sync-tasks"]).ok().stdout_has("no task folders");
    assert!(sb.ls(".").is_empty(), "nothing to store, nothing created");
    // A relative folder that does not exist yet is created when there is something to store.
    sb.run(&["create-task", "hello"]).ok();
    sb.run(&["sync-tasks", "--adaptor", "folder:fresh"])
        .ok()
        .stdout_has("hello  created v1");
    assert!(sb.exists("fresh/hello/versions/1.json"));
}
