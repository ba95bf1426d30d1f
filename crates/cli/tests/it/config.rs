//! config show|get|set on `.sequentialrc.json`.

use serde_json::Value;

use crate::util::Sandbox;

#[test]
fn set_get_show_round_trip_with_dotted_keys_and_json_values() {
    let sb = Sandbox::new();
    sb.run(&["config", "set", "defaults.timeout", "600000"])
        .ok()
        .stdout_has("set defaults.timeout = 600000 in .sequentialrc.json");
    sb.run(&["config", "set", "owner", "payments team"]).ok();
    sb.run(&["config", "set", "flags", r#"{"beta": true}"#])
        .ok();
    sb.run(&["config", "set", "flags.gamma", "false"]).ok();

    let rc: Value = serde_json::from_str(&sb.read(".sequentialrc.json")).unwrap();
    assert_eq!(rc["defaults"]["timeout"], 600000);
    assert_eq!(rc["owner"], "payments team");
    assert_eq!(
        rc["flags"],
        serde_json::json!({"beta": true, "gamma": false})
    );

    sb.run(&["config", "get", "defaults.timeout"])
        .ok()
        .check("prints the number", |o| o.stdout == "600000\n");
    sb.run(&["config", "get", "owner"])
        .ok()
        .check("prints the raw string", |o| o.stdout == "payments team\n");
    let got = sb.run(&["config", "get", "flags", "--json"]).ok().json();
    assert_eq!(got["key"], "flags");
    assert_eq!(
        got["value"],
        serde_json::json!({"beta": true, "gamma": false})
    );

    sb.run(&["config", "show"])
        .ok()
        .stdout_has("\"timeout\": 600000")
        .stdout_has("# storage: folder:tasks");
    let shown = sb.run(&["config", "show", "--json"]).ok().json();
    assert_eq!(shown["exists"], true);
    assert_eq!(shown["config"], rc);

    // No temp files left behind by the atomic writes.
    assert_eq!(sb.ls("."), [".sequentialrc.json"]);
}

#[test]
fn set_adaptor_changes_the_storage_commands_use() {
    let sb = Sandbox::new();
    sb.run(&["init"]).ok();
    sb.run(&["config", "set", "adaptor", "sqlite:./project.db"])
        .ok();
    sb.run(&["config", "get", "adaptor"])
        .ok()
        .check("string", |o| o.stdout == "sqlite:./project.db\n");
    sb.run(&["create-task", "hello"]).ok();
    sb.run(&["sync-tasks"])
        .ok()
        .stdout_has("to sqlite:./project.db");
    assert!(sb.exists("project.db"));
}

#[test]
fn get_of_a_missing_key_and_set_through_a_non_object_are_errors() {
    let sb = Sandbox::new();
    sb.run(&["config", "get", "nope"])
        .usage_error()
        .stderr_has("\"nope\" is not set");
    sb.run(&["config", "set", "a", "1"]).ok();
    let before = sb.read(".sequentialrc.json");
    sb.run(&["config", "set", "a.b", "2"])
        .usage_error()
        .stderr_has("holds a number, not an object");
    sb.run(&["config", "set", "a..b", "2"])
        .code(2)
        .stderr_has("invalid key");
    assert_eq!(sb.read(".sequentialrc.json"), before);
}

#[test]
fn show_without_a_file_says_how_to_create_it() {
    let sb = Sandbox::new();
    sb.run(&["config", "show"])
        .ok()
        .stdout_has("does not exist");
    assert!(sb.ls(".").is_empty());
}
