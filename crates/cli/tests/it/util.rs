//! The test harness: run the binary in a temp dir with a clean environment; on failure print
//! the command, cwd, exit status, stdout and stderr.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Environment variables the binary reads; cleared for every command unless a test sets them.
const CLEARED: [&str; 17] = [
    "SEQUENTIAL_REMOTE",
    "SEQUENTIAL_API_TOKEN",
    "DATABASE_URL",
    "SUPABASE_DB_URL",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "SEQUENTIAL_TASKS_DIR",
    "RUST_LOG",
    "DEBUG",
    "NO_COLOR",
    "TASK_TIMEOUT",
    "TASK_FETCH_TIMEOUT",
    "TASK_MAX_RETRIES",
    "TASK_CPU_SLICE_MS",
    "NO_PROGRESS",
    "SEQUENTIAL_MACHINE_DIR",
    "SEQUENTIAL_MACHINE_WORK",
];

/// A temporary working directory.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A command with `args`, run in the sandbox.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        Cmd {
            bin: Bin::Ecosystem,
            cwd: self.path().to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: Vec::new(),
            stdin: None,
        }
    }

    /// A `sequential-machine` command with `args`, run in the sandbox.
    pub fn machine_cmd(&self, args: &[&str]) -> Cmd {
        Cmd {
            bin: Bin::Machine,
            ..self.cmd(args)
        }
    }

    /// Runs `sequential-machine args` with a clean environment.
    pub fn machine(&self, args: &[&str]) -> Outcome {
        self.machine_cmd(args).run()
    }

    /// Copies the repository's `tasks/` examples into the sandbox's `tasks/`.
    pub fn with_examples(self) -> Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks");
        for entry in fs::read_dir(&src).expect("reading the repository's tasks/") {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_dir()
                || entry.file_name().to_string_lossy().starts_with('.')
            {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            for file in ["code.js", "config.json", "meta.json", "graph.json"] {
                let from = entry.path().join(file);
                if from.exists() {
                    self.write(
                        &format!("tasks/{name}/{file}"),
                        &fs::read_to_string(from).unwrap(),
                    );
                }
            }
        }
        self
    }

    /// Runs `args` with a clean environment.
    pub fn run(&self, args: &[&str]) -> Outcome {
        self.cmd(args).run()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).exists()
    }

    /// The sorted names in a directory of the sandbox (empty when it does not exist).
    pub fn ls(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.join(rel)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }
}

/// Which binary of the package.
#[derive(Clone, Copy)]
enum Bin {
    Ecosystem,
    Machine,
}

impl Bin {
    fn path(self) -> &'static str {
        match self {
            Bin::Ecosystem => env!("CARGO_BIN_EXE_sequential-ecosystem"),
            Bin::Machine => env!("CARGO_BIN_EXE_sequential-machine"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bin::Ecosystem => "sequential-ecosystem",
            Bin::Machine => "sequential-machine",
        }
    }
}

/// A command about to run.
pub struct Cmd {
    bin: Bin,
    cwd: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    stdin: Option<String>,
}

impl Cmd {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.envs.push((key.to_string(), value.into()));
        self
    }

    /// Feeds `text` to the command's stdin.
    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.bin.path());
        cmd.args(&self.args).current_dir(&self.cwd);
        for key in CLEARED {
            cmd.env_remove(key);
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the command in the background (stdout and stderr piped).
    pub fn spawn(self) -> std::process::Child {
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sequential-ecosystem")
    }

    pub fn run(self) -> Outcome {
        let mut cmd = self.command();
        let out = match &self.stdin {
            None => cmd.output().expect("running sequential-ecosystem"),
            Some(text) => {
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("running sequential-ecosystem");
                let mut pipe = child.stdin.take().unwrap();
                let text = text.clone();
                let writer = std::thread::spawn(move || {
                    let _ = pipe.write_all(text.as_bytes());
                });
                let out = child
                    .wait_with_output()
                    .expect("waiting for sequential-ecosystem");
                writer.join().unwrap();
                out
            }
        };
        let env_prefix: String = self
            .envs
            .iter()
            .map(|(k, v)| format!("{k}={v:?} "))
            .collect();
        Outcome {
            command: format!(
                "{env_prefix}{} {}",
                self.bin.name(),
                shell_words(&self.args)
            ),
            cwd: self.cwd,
            code: out.status.code(),
            status: format!("{}", out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                format!("{a:?}")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a command did.
pub struct Outcome {
    pub command: String,
    pub cwd: PathBuf,
    pub code: Option<i32>,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    #[track_caller]
    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n  command: {}\n  cwd:     {}\n  status:  {}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
            self.command,
            self.cwd.display(),
            self.status,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        if self.code != Some(0) {
            self.fail("expected exit code 0");
        }
        self
    }

    /// Asserts the exit code.
    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        if self.code != Some(code) {
            self.fail(&format!("expected exit code {code}"));
        }
        self
    }

    /// Asserts stdout contains `s`.
    #[track_caller]
    pub fn stdout_has(self, s: &str) -> Self {
        if !self.stdout.contains(s) {
            self.fail(&format!("expected stdout to contain {s:?}"));
        }
        self
    }

    /// Asserts stdout does not contain `s`.
    #[track_caller]
    pub fn stdout_lacks(self, s: &str) -> Self {
        if self.stdout.contains(s) {
            self.fail(&format!("expected stdout NOT to contain {s:?}"));
        }
        self
    }

    /// Asserts stderr does not contain `s`.
    #[track_caller]
    pub fn stderr_lacks(self, s: &str) -> Self {
        if self.stderr.contains(s) {
            self.fail(&format!("expected stderr NOT to contain {s:?}"));
        }
        self
    }

    /// Asserts stderr contains `s`.
    #[track_caller]
    pub fn stderr_has(self, s: &str) -> Self {
        if !self.stderr.contains(s) {
            self.fail(&format!("expected stderr to contain {s:?}"));
        }
        self
    }

    /// Asserts a failure report: `error: …` on stderr followed by a `hint: …` line, nothing on
    /// stdout, exit code 2.
    #[track_caller]
    pub fn usage_error(self) -> Self {
        let s = self.code(2);
        if !s.stderr.starts_with("error: ") || !s.stderr.contains("\nhint: ") {
            s.fail("expected stderr to be `error: …` plus a `hint: …` line");
        }
        if !s.stdout.is_empty() {
            s.fail("expected nothing on stdout");
        }
        s
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| self.fail(&format!("stdout is not JSON: {e}")))
    }

    /// Asserts `check` holds, printing the outcome otherwise.
    #[track_caller]
    pub fn check(self, what: &str, check: impl FnOnce(&Self) -> bool) -> Self {
        if !check(&self) {
            self.fail(&format!("check failed: {what}"));
        }
        self
    }
}
