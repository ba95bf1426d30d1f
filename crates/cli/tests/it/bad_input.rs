//! Bad input: each case exits 2 with `error:` + `hint:` naming the input and what is valid,
//! and changes nothing.

use crate::util::Sandbox;

const RULE: &str = "1-64 characters of ASCII letters, digits, '-' and '_'";

fn rejects_task_name(name: &str) {
    let sb = Sandbox::new();
    sb.run(&["create-task", name])
        .usage_error()
        .stderr_has("invalid task name")
        .stderr_has(&format!("{name:?}"))
        .stderr_has(RULE);
    assert!(
        sb.ls(".").is_empty(),
        "nothing may be created: {:?}",
        sb.ls(".")
    );
    sb.run(&["describe", name]).usage_error().stderr_has(RULE);
    sb.run(&["delete", name]).usage_error().stderr_has(RULE);
    sb.run(&["sync-tasks", "--task", name])
        .usage_error()
        .stderr_has(RULE);
}

#[test]
fn empty_task_name_is_rejected_with_the_rule() {
    rejects_task_name("");
}

#[test]
fn path_traversal_task_name_is_rejected_with_the_rule() {
    rejects_task_name("../x");
}

#[test]
fn task_name_with_spaces_is_rejected_with_the_rule() {
    rejects_task_name("my task");
}

#[test]
fn task_name_over_64_chars_is_rejected_with_the_rule() {
    let ok = "a".repeat(64);
    let sb = Sandbox::new();
    sb.run(&["create-task", &ok]).ok();
    rejects_task_name(&"a".repeat(65));
}

#[test]
fn malformed_config_json_names_file_line_and_column() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    sb.write(
        "tasks/hello/config.json",
        "{\n  \"name\": \"hello\",\n  \"inputs\": [,]\n}\n",
    );
    for args in [&["list"][..], &["describe", "hello"], &["sync-tasks"]] {
        sb.run(args)
            .usage_error()
            .stderr_has("tasks/hello/config.json")
            .stderr_has("line 3, column 14");
    }
}

#[test]
fn config_json_of_the_wrong_shape_names_file_line_and_column() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    sb.write("tasks/hello/config.json", "{\n  \"inputs\": 42\n}\n");
    sb.run(&["describe", "hello"])
        .usage_error()
        .stderr_has("tasks/hello/config.json at line 2, column");
}

#[test]
fn unreadable_config_json_names_the_file() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    std::fs::remove_file(sb.join("tasks/hello/config.json")).unwrap();
    std::fs::create_dir(sb.join("tasks/hello/config.json")).unwrap();
    sb.run(&["sync-tasks"])
        .usage_error()
        .stderr_has("cannot read tasks/hello/config.json");
}

#[test]
fn malformed_meta_json_names_file_line_and_column() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    sb.write(
        "tasks/hello/meta.json",
        "{\n  \"created\": \"2026-01-01T00:00:00Z\"\n  \"version\": 1\n}\n",
    );
    sb.run(&["describe", "hello"])
        .usage_error()
        .stderr_has("tasks/hello/meta.json")
        .stderr_has("line 3, column 3");
}

#[test]
fn malformed_graph_json_names_file_line_and_column() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello", "--with-graph"]).ok();
    sb.write("tasks/hello/graph.json", "{\"initial\": }");
    sb.run(&["sync-tasks"])
        .usage_error()
        .stderr_has("tasks/hello/graph.json at line 1, column 13");
}

#[test]
fn malformed_settings_file_names_file_line_and_column() {
    let sb = Sandbox::new();
    let bad = "{\n  \"adaptor\": \"folder\",\n}\n";
    sb.write(".sequentialrc.json", bad);
    for args in [
        &["list"][..],
        &["config", "show"],
        &["config", "set", "a", "1"],
        &["init"],
    ] {
        sb.run(args)
            .usage_error()
            .stderr_has(".sequentialrc.json")
            .stderr_has("line 3, column 1");
    }
    assert_eq!(
        sb.read(".sequentialrc.json"),
        bad,
        "a malformed file is never rewritten"
    );
}

#[test]
fn settings_file_with_a_non_string_adaptor_names_file_line_and_column() {
    let sb = Sandbox::new();
    sb.write(".sequentialrc.json", "{\n  \"adaptor\": 7\n}\n");
    sb.run(&["list"])
        .usage_error()
        .stderr_has(".sequentialrc.json at line 2, column 14");
}

#[test]
fn unreadable_settings_file_names_the_file() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.join(".sequentialrc.json")).unwrap();
    sb.run(&["config", "show"])
        .usage_error()
        .stderr_has("cannot read .sequentialrc.json");
}

#[test]
fn create_task_of_an_existing_name_overwrites_nothing() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    sb.write("tasks/hello/code.js", "// my precious code\n");
    let config = sb.read("tasks/hello/config.json");
    sb.run(&[
        "create-task",
        "hello",
        "--with-graph",
        "--description",
        "other",
    ])
    .usage_error()
    .stderr_has("task \"hello\" already exists");
    assert_eq!(sb.read("tasks/hello/code.js"), "// my precious code\n");
    assert_eq!(sb.read("tasks/hello/config.json"), config);
    assert!(!sb.exists("tasks/hello/graph.json"));
}

#[test]
fn delete_of_a_missing_task_is_an_error() {
    let sb = Sandbox::new();
    sb.run(&["init"]).ok();
    sb.run(&["delete", "ghost"])
        .usage_error()
        .stderr_has("task \"ghost\" not found");
    sb.run(&["describe", "ghost"])
        .usage_error()
        .stderr_has("task \"ghost\" not found");
}

#[test]
fn bad_inputs_flag_names_the_input_and_valid_types() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello", "--inputs", "id:uuid"])
        .usage_error()
        .stderr_has("\"uuid\"")
        .stderr_has("string, number");
    sb.run(&["create-task", "hello", "--inputs", "a,,b"])
        .usage_error()
        .stderr_has("invalid input name \"\"");
    sb.run(&["create-task", "hello", "--inputs", "a,a"])
        .usage_error()
        .stderr_has("twice");
    assert!(sb.ls(".").is_empty());
}

#[test]
fn settings_file_of_a_newer_format_is_refused() {
    let sb = Sandbox::new();
    let newer = "{\"version\": 99, \"adaptor\": \"folder\"}\n";
    sb.write(".sequentialrc.json", newer);
    sb.run(&["config", "set", "a", "1"])
        .usage_error()
        .stderr_has(".sequentialrc.json has format version 99");
    assert_eq!(sb.read(".sequentialrc.json"), newer);
}

#[test]
fn code_js_that_is_not_utf8_names_the_file() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "hello"]).ok();
    std::fs::write(
        sb.join("tasks/hello/code.js"),
        b"export default 1; // \xff\xfe",
    )
    .unwrap();
    sb.run(&["sync-tasks"])
        .usage_error()
        .stderr_has("tasks/hello/code.js is not UTF-8");
}
