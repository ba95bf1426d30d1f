//! The storage policy: DATABASE_URL › .sequentialrc.json › the folder default, and the errors
//! for settings that cannot work.

use crate::util::Sandbox;

fn storage_of(sb: &Sandbox, envs: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = sb.cmd(&["config", "show", "--json"]);
    for (k, v) in envs {
        cmd = cmd.env(k, *v);
    }
    cmd.run().ok().json()["storage"].clone()
}

#[test]
fn default_is_folder_storage_under_tasks_or_sequential_tasks_dir() {
    let sb = Sandbox::new();
    let s = storage_of(&sb, &[]);
    assert_eq!(s["url"], "folder:tasks");
    assert_eq!(s["source"], "default");
    let s = storage_of(&sb, &[("SEQUENTIAL_TASKS_DIR", "work/my-tasks")]);
    assert_eq!(s["url"], "folder:work/my-tasks");

    sb.cmd(&["create-task", "hello"])
        .env("SEQUENTIAL_TASKS_DIR", "work/my-tasks")
        .run()
        .ok();
    assert!(sb.exists("work/my-tasks/hello/code.js"));
    assert!(!sb.exists("tasks"));
    sb.cmd(&["sync-tasks"])
        .env("SEQUENTIAL_TASKS_DIR", "work/my-tasks")
        .run()
        .ok()
        .stdout_has("to folder:work/my-tasks");
    assert!(sb.exists("work/my-tasks/hello/versions/1.json"));
}

#[test]
fn database_url_wins_over_the_settings_file_which_wins_over_the_default() {
    let sb = Sandbox::new();
    sb.write(
        ".sequentialrc.json",
        r#"{"version": 1, "adaptor": "sqlite:from-rc.db"}"#,
    );
    let s = storage_of(&sb, &[]);
    assert_eq!(s["url"], "sqlite:from-rc.db");
    assert_eq!(s["source"], "rc-file");
    let s = storage_of(&sb, &[("DATABASE_URL", "sqlite:from-env.db")]);
    assert_eq!(s["url"], "sqlite:from-env.db");
    assert_eq!(s["source"], "database-url");
    let s = storage_of(&sb, &[("SUPABASE_DB_URL", "sqlite:alias.db")]);
    assert_eq!(s["url"], "sqlite:alias.db");
    assert_eq!(s["source"], "supabase-db-url");

    // And the choice is what commands really use.
    sb.run(&["create-task", "hello"]).ok();
    sb.run(&["sync-tasks"])
        .ok()
        .stdout_has("to sqlite:from-rc.db");
    assert!(sb.exists("from-rc.db"));
    sb.cmd(&["sync-tasks"])
        .env("DATABASE_URL", "sqlite:from-env.db")
        .run()
        .ok();
    assert!(sb.exists("from-env.db"));
}

#[test]
fn a_plain_path_means_folder_storage() {
    let sb = Sandbox::new();
    let s = storage_of(&sb, &[("DATABASE_URL", "./elsewhere")]);
    assert_eq!(s["url"], "folder:./elsewhere");
    sb.run(&["create-task", "hello"]).ok();
    sb.cmd(&["sync-tasks"])
        .env("DATABASE_URL", "./elsewhere")
        .run()
        .ok();
    assert!(sb.exists("elsewhere/hello/versions/1.json"));
}

#[test]
fn sqlite_memory_works() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    sb.cmd(&["sync-tasks"])
        .env("DATABASE_URL", "sqlite::memory:")
        .run()
        .ok()
        .stdout_has("hello  created v1");
}

#[test]
fn memory_storage_runs_a_task_and_keeps_nothing_after_the_process() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    let doc = sb
        .cmd(&["run", "hello", "--json"])
        .env("DATABASE_URL", "memory:")
        .run()
        .ok()
        .json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    // the run lived as long as that process: a new process sees no runs
    let h = sb
        .cmd(&["history", "hello", "--json"])
        .env("DATABASE_URL", "memory:")
        .run()
        .ok()
        .json();
    assert_eq!(h["runs"].as_array().map(Vec::len), Some(0), "{h}");
    assert!(
        !sb.exists("tasks/hello/runs"),
        "memory: storage writes nothing into the task folders"
    );
}

#[test]
fn unknown_database_url_scheme_exits_2_listing_valid_forms() {
    let sb = Sandbox::new();
    sb.cmd(&["list"])
        .env("DATABASE_URL", "mysql://root@localhost/db")
        .run()
        .usage_error()
        .stderr_has("mysql://root@localhost/db")
        .stderr_has("folder:PATH")
        .stderr_has("sqlite:PATH")
        .stderr_has("sqlite::memory:")
        .stderr_has("memory:");
}

#[test]
fn postgres_urls_open_postgresql_and_name_a_server_that_is_not_there() {
    let sb = Sandbox::new();
    // port 1: nothing listens there
    for url in [
        "postgres://u@127.0.0.1:1/db",
        "postgresql://u:pw@127.0.0.1:1/db",
    ] {
        sb.cmd(&["list"])
            .env("DATABASE_URL", url)
            .run()
            .usage_error()
            .stderr_has("cannot connect to PostgreSQL at 127.0.0.1:1")
            .stderr_has("is the server running")
            .stderr_lacks(":pw@");
    }
    sb.run(&["create-task", "hello"]).ok();
    sb.run(&["sync-tasks", "--adaptor", "postgres"])
        .usage_error()
        .stderr_has("names PostgreSQL but not which database")
        .stderr_has("--adaptor postgres://");
}

#[test]
fn supabase_rest_settings_alone_explain_database_url() {
    let sb = Sandbox::new();
    sb.cmd(&["list"])
        .env("SUPABASE_URL", "https://abc.supabase.co")
        .env("SUPABASE_KEY", "anon-key")
        .run()
        .usage_error()
        .stderr_has("SUPABASE_URL")
        .stderr_has("DATABASE_URL")
        .stderr_has("PostgreSQL connection string");
    // With DATABASE_URL set as well, the REST settings are irrelevant.
    sb.cmd(&["list"])
        .env("SUPABASE_URL", "https://abc.supabase.co")
        .env("DATABASE_URL", "sqlite::memory:")
        .run()
        .ok();
}

#[test]
fn a_sqlite_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    let text = "these are my notes, not a database\n";
    sb.write("notes.db", text);
    sb.run(&["sync-tasks", "--adaptor", "sqlite:notes.db"])
        .usage_error()
        .stderr_has("notes.db")
        .stderr_has("not a database");
    assert_eq!(sb.read("notes.db"), text);
    assert_eq!(
        sb.ls("."),
        ["notes.db", "tasks"],
        "no -wal/-shm files left behind"
    );
}

#[test]
fn a_folder_store_of_a_newer_format_is_refused_and_left_untouched() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    let newer = "{\"version\": 99}\n";
    sb.write("tasks/.sequential/format.json", newer);
    sb.run(&["sync-tasks"])
        .usage_error()
        .stderr_has("format")
        .stderr_has("newer");
    sb.run(&["list"]).usage_error();
    assert_eq!(sb.read("tasks/.sequential/format.json"), newer);
    assert_eq!(
        sb.ls("tasks/hello"),
        ["code.js", "config.json", "meta.json"]
    );
}
