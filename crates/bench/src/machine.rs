//! `sequential-bench machine`: the layer store's workloads W1–W13 (LAYER-STORE.md §Targets) on
//! trees from `shared/bench/gen_tree.py` (seed 42), with git and `tar | zstd -3 -T2` measured
//! side by side in the same session.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sequential_layer_store::{CheckoutOptions, Output, RunOptions, Store};

/// The tree generator shared by the benchmarks.
const GEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/bench/gen_tree.py"
);

fn quiet() -> RunOptions {
    RunOptions {
        env: Vec::new(),
        capture_failed: false,
        output: Output::Null,
    }
}

/// `sequential-bench machine-child <store> <work> <instruction>`: one `run` in this process;
/// prints `{"ms", "cached", "hash"}` (the parent reads this process's peak RSS).
pub fn child(args: &[String]) -> Result<()> {
    let [dir, work, instruction] = args else {
        bail!("usage: sequential-bench machine-child <store> <work> <instruction>");
    };
    let t = Instant::now();
    let store = Store::open(dir, work)?;
    let r = store.run(instruction, &quiet())?;
    println!(
        "{}",
        serde_json::json!({"ms": ms(t.elapsed()), "cached": r.cached, "hash": r.hash})
    );
    Ok(())
}

/// A finished child process: wall time, peak RSS, stdout.
struct Measured {
    wall: Duration,
    rss_mb: f64,
    stdout: String,
}

/// Runs `cmd` to completion, reading its peak RSS with `wait4`.
fn measured(mut cmd: Command) -> Result<Measured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let what = format!("{cmd:?}");
    let t = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    let mut stdout = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut stdout)
            .with_context(|| format!("reading the output of {what}"))?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; `pid` is our child, not yet reaped (`Child` is dropped
    // without waiting).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed();
    drop(child);
    if r < 0 {
        bail!("wait4 for {what}: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{what} failed (wait status {status})");
    }
    Ok(Measured {
        wall,
        rss_mb: ru.ru_maxrss as f64 / 1024.0,
        stdout,
    })
}

fn sh(script: &str, cwd: &Path) -> Result<Measured> {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).current_dir(cwd);
    measured(c)
}

/// git with its own directory outside the work tree (the store must not see `.git`).
struct Git {
    dir: PathBuf,
    work: PathBuf,
}

impl Git {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("git");
        c.args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
        ])
        .args(args)
        .current_dir(&self.work)
        .env("GIT_DIR", &self.dir)
        .env("GIT_WORK_TREE", &self.work)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_INDEX_FILE");
        c
    }

    fn run(&self, args: &[&str]) -> Result<Measured> {
        measured(self.cmd(args))
    }

    fn sh(&self, script: &str) -> Result<Measured> {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .current_dir(&self.work)
            .env("GIT_DIR", &self.dir)
            .env("GIT_WORK_TREE", &self.work)
            .env("GIT_CONFIG_NOSYSTEM", "1");
        measured(c)
    }

    fn head(&self) -> Result<String> {
        Ok(self.run(&["rev-parse", "HEAD"])?.stdout.trim().to_string())
    }

    fn status(&self) -> Result<Duration> {
        Ok(self.run(&["status", "--porcelain"])?.wall)
    }
}

/// Sets the mtime of `n` regular files spread over the tree to now (content unchanged).
fn touch_files(work: &Path, n: usize) -> Result<()> {
    let list = sh("find . -type f -links 1 | sort", work)?.stdout;
    let files: Vec<&str> = list.lines().collect();
    let step = (files.len() / n).max(1);
    for f in files.iter().step_by(step).take(n) {
        let p = work.join(f);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()))
            .with_context(|| format!("touching {}", p.display()))?;
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(d: Duration) -> String {
    let m = ms(d);
    if m >= 1000.0 {
        format!("{:.2} s", m / 1000.0)
    } else if m >= 10.0 {
        format!("{m:.0} ms")
    } else {
        format!("{m:.1} ms")
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let t = Instant::now();
    let r = f()?;
    Ok((t.elapsed(), r))
}

fn sync() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn du(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if md.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else {
        md.len()
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn progress(msg: &str) {
    eprintln!("[machine bench] {msg}");
}

/// One line of the results table.
struct Row {
    id: &'static str,
    workload: String,
    ours: String,
    peers: String,
    target: String,
    verdict: String,
}

fn verdict(ok: bool, why: &str) -> String {
    if ok {
        "met".to_string()
    } else if why.is_empty() {
        "**missed**".to_string()
    } else {
        format!("**missed**: {why}")
    }
}

/// Why a workload can miss its target (printed only for the rows that missed).
fn explain(id: &str) -> Option<&'static str> {
    Some(match id {
        "W1" => {
            "an unchanged status still lstats every tracked path (37k on tree A, 2 threads); git with the untracked cache does the same work, so both sit at the lstat floor and the ratio moves by ±10% between runs"
        }
        "W2" | "W3" => {
            "the first status after a change re-hashes the changed files and rewrites the index"
        }
        "W4" => {
            "a first capture reads every file, hashes it with sha256 (the content id), compresses it with zstd -3 and fsyncs the packs; the tar | zstd floor neither hashes nor fsyncs"
        }
        "W5" => "as W4, on few big files: sha256 plus zstd of 1 GiB on two cores",
        "W6" | "W7" => {
            "the capture pre-scans the whole tree (lstat of every path) before storing the changes"
        }
        "W8" | "W9" => {
            "a checkout scans the work dir for uncommitted changes before writing the differing paths"
        }
        "W10" | "W12" => {
            "file creation dominates a full checkout on this ext4 (tens of µs per entry) and varies by ±50% with the state of the page cache and writeback"
        }
        "W11" => {
            "`diff` of two states of tree A reads, decompresses and merges two 37k-entry manifests; the 100-layer figures on the small tree are far below the target"
        }
        _ => return None,
    })
}

/// The release `sequential-machine` binary (set by `cargo xtask bench machine`), if built.
fn cli_bin() -> Option<PathBuf> {
    std::env::var_os("SEQUENTIAL_MACHINE_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
}

/// Wall time of `sequential-machine --dir <store> --work <work> <args>` (process start included).
fn cli_wall(bin: &Path, store: &Path, work: &Path, args: &[&str]) -> Result<Duration> {
    let mut c = Command::new(bin);
    c.arg("--dir")
        .arg(store)
        .arg("--work")
        .arg(work)
        .args(args)
        .env("NO_PROGRESS", "1");
    Ok(measured(c)?.wall)
}

fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("locating the benchmark binary")
}

fn child_run(
    store: &Path,
    work: &Path,
    instruction: &str,
) -> Result<(Measured, serde_json::Value)> {
    let mut c = Command::new(self_exe()?);
    c.arg("machine-child").arg(store).arg(work).arg(instruction);
    let m = measured(c)?;
    let v: serde_json::Value =
        serde_json::from_str(m.stdout.trim()).context("reading the child's JSON")?;
    Ok((m, v))
}

/// Runs the benchmark; returns the Markdown section.
pub fn run() -> Result<String> {
    let base = std::env::var_os("MACHINE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("machine-bench-")
        .tempdir_in(&base)
        .context("creating the benchmark directory")?;
    let small = std::env::var_os("MACHINE_BENCH_SMALL").is_some();
    let a_args = if small { "--files 3000 --mb 30" } else { "" };
    let b_args = if small { "--files 4 --mb 96" } else { "" };
    let skip_b = std::env::var_os("MACHINE_BENCH_SKIP_B").is_some();
    let r = root.path();
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // ---- tree A -------------------------------------------------------------------------------
    let work = r.join("a-work");
    let store_dir = r.join("a-store");
    progress("generating tree A");
    let gen_a = sh(
        &format!("python3 {GEN} a {} --seed 42 {a_args}", work.display()),
        r,
    )?;
    let entries = sh("find . | wc -l", &work)?.stdout.trim().parse::<u64>()?;
    let a_bytes = du(&work);
    progress(&format!(
        "tree A: {entries} entries, {} (generated in {})",
        mib(a_bytes),
        fmt_ms(gen_a.wall)
    ));
    sync();

    // W4: first capture, in a child process for its peak RSS.
    progress("W4: first capture of A");
    let (w4, w4_json) = child_run(&store_dir, &work, "true")?;
    let s1 = w4_json["hash"].as_str().unwrap_or_default().to_string();
    let store_bytes = du(&store_dir);
    sync();
    progress("floor: tar | zstd -3 -T2");
    let tar_zst = r.join("a.tar.zst");
    let floor = sh(
        &format!("tar -cf - . | zstd -3 -T2 -q -o {}", tar_zst.display()),
        &work,
    )?;
    progress("git: first capture");
    let git = Git {
        dir: r.join("a-git"),
        work: work.clone(),
    };
    git.run(&["init", "-q"])?;
    for (k, v) in [
        ("core.untrackedCache", "true"),
        ("gc.auto", "0"),
        ("core.fsmonitor", "false"),
    ] {
        git.run(&["config", k, v])?;
    }
    let git_add = git.run(&["add", "-A"])?;
    let git_commit = git.run(&["commit", "-q", "-m", "A"])?;
    let git_first = git_add.wall + git_commit.wall;
    let c1 = git.head()?;
    let git_bytes = du(&git.dir);
    sync();
    rows.push(Row {
        id: "W4",
        workload: format!(
            "first `run` capturing all of A ({entries} entries, {})",
            mib(a_bytes)
        ),
        ours: format!(
            "{} ({:.0} MB/s), peak RSS {:.0} MB; store {}",
            fmt_ms(w4.wall),
            a_bytes as f64 / 1e6 / w4.wall.as_secs_f64(),
            w4.rss_mb,
            mib(store_bytes)
        ),
        peers: format!(
            "git add+commit {} (RSS {:.0} MB, .git {}); tar\\|zstd -3 -T2 {} ({})",
            fmt_ms(git_first),
            git_add.rss_mb.max(git_commit.rss_mb),
            mib(git_bytes),
            fmt_ms(floor.wall),
            mib(du(&tar_zst))
        ),
        target: "≤ 2.0 s, ≥ 70% of tar\\|zstd speed, RSS ≤ 200 MB".into(),
        verdict: verdict(
            w4.wall <= Duration::from_secs(2)
                && w4.wall.as_secs_f64() <= floor.wall.as_secs_f64() / 0.7
                && w4.rss_mb <= 200.0,
            "",
        ),
    });

    // W10: full checkout of A into an empty dir, vs zstd -d | tar -x.
    progress("W10: rebuild of A into an empty dir, and zstd -d | tar -x (2 rounds each)");
    let mut rebuilds = Vec::new();
    let mut untars = Vec::new();
    for round in 0..2 {
        let untar = r.join(format!("a-untar-{round}"));
        std::fs::create_dir_all(&untar)?;
        sync();
        untars.push(
            sh(
                &format!(
                    "zstd -d -q -c {} | tar -xf - -C {}",
                    tar_zst.display(),
                    untar.display()
                ),
                r,
            )?
            .wall,
        );
        sync();
        let fresh = r.join(format!("a-rebuild-{round}"));
        rebuilds.push(timed(|| Ok(Store::open(&store_dir, &fresh)?.rebuild()?))?.0);
        sync();
    }
    let w10 = rebuilds.iter().copied().min().unwrap_or_default();
    let untar_min = untars.iter().copied().min().unwrap_or_default();
    let w10_ratio = w10.as_secs_f64() / untar_min.as_secs_f64();
    rows.push(Row {
        id: "W10",
        workload: "checkout (rebuild) of full A into an empty dir (best of 2, `sync` before each)"
            .into(),
        ours: format!(
            "{} ({w10_ratio:.2}× untar; rounds {} / {})",
            fmt_ms(w10),
            fmt_ms(rebuilds[0]),
            fmt_ms(rebuilds[1])
        ),
        peers: format!(
            "zstd -d \\| tar -x {} (rounds {} / {})",
            fmt_ms(untar_min),
            fmt_ms(untars[0]),
            fmt_ms(untars[1])
        ),
        target: "≤ 1.2× `zstd -d \\| tar -x` (fresh space ≤ 3 s)".into(),
        verdict: verdict(w10_ratio <= 1.2, ""),
    });

    // W1: status of the unchanged tree.
    progress("W1: status, unchanged");
    let status = || -> Result<(Duration, sequential_layer_store::StatusReport)> {
        timed(|| Ok(Store::open(&store_dir, &work)?.status()?))
    };
    for _ in 0..2 {
        status()?;
        git.status()?;
    }
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut clean = true;
    for _ in 0..7 {
        let (d, st) = status()?;
        clean &= st.clean;
        ours.push(d);
        theirs.push(git.status()?);
    }
    let (w1, g1) = (median(ours), median(theirs));
    let cli = cli_bin();
    let w1_cli = match &cli {
        Some(bin) => {
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(cli_wall(bin, &store_dir, &work, &["status", "--json"])?);
            }
            format!("; CLI `status --json` {}", fmt_ms(median(v)))
        }
        None => String::new(),
    };
    rows.push(Row {
        id: "W1",
        workload: "`status`, unchanged tree (median of 7)".into(),
        ours: format!(
            "{}{}{w1_cli}",
            fmt_ms(w1),
            if clean { ", clean" } else { ", NOT clean" }
        ),
        peers: format!("git status (untracked cache) {}", fmt_ms(g1)),
        target: "≤ 80 ms and ≤ 1.0× git+UC".into(),
        verdict: verdict(clean && w1 <= Duration::from_millis(80) && w1 <= g1, ""),
    });

    // W2: touch 10 files.
    progress("W2: status after touching 10 files");
    touch_files(&work, 10)?;
    let (w2, st2) = status()?;
    let g2 = git.status()?;
    rows.push(Row {
        id: "W2",
        workload: "`status` after touching 10 files (mtime only), first call".into(),
        ours: format!(
            "{}{}",
            fmt_ms(w2),
            if st2.clean { ", clean" } else { ", NOT clean" }
        ),
        peers: format!("git status {}", fmt_ms(g2)),
        target: "≤ 100 ms, clean".into(),
        verdict: verdict(st2.clean && w2 <= Duration::from_millis(100), ""),
    });

    // W3: status after mutate-a.
    progress("W3: status after mutate-a");
    let mutate = |seed: u32| format!("python3 {GEN} mutate-a . --seed {seed}");
    let mut_cmd = sh(&mutate(42), &work)?.wall;
    let (w3, st3) = status()?;
    let g3m = git.run(&["status", "--porcelain"])?;
    let (g3, g3_lines) = (g3m.wall, g3m.stdout.lines().count());
    let counts = format!(
        "{} modified / {} added / {} deleted",
        st3.modified.len(),
        st3.added.len(),
        st3.deleted.len()
    );
    rows.push(Row {
        id: "W3",
        workload: "`status` after `mutate-a`, first call".into(),
        ours: format!("{}; {counts}", fmt_ms(w3)),
        peers: format!("git status {}", fmt_ms(g3)),
        target: "≤ 150 ms; 100 M / 100 A / 50 D".into(),
        verdict: verdict(w3 <= Duration::from_millis(150), ""),
    });

    // git's incremental commit of the same change.
    let g6 = git.sh("git add -A && git -c user.name=b -c user.email=b@x commit -q -m mut")?;
    let c2 = git.head()?;

    // W6: the same change as a `run` of the mutating command, from S1.
    progress("W6: run producing mutate-a");
    Store::open(&store_dir, &work)?.checkout(&s1, CheckoutOptions { force: true })?;
    let (w6_total, r6) = timed(|| Ok(Store::open(&store_dir, &work)?.run(&mutate(42), &quiet())?))?;
    let s2 = r6.hash.clone();
    let insp = Store::open(&store_dir, &work)?.inspect(&s2)?;
    let w6 = w6_total.saturating_sub(mut_cmd);
    rows.push(Row {
        id: "W6",
        workload: "`run` producing `mutate-a` (incremental layer), command time subtracted".into(),
        ours: format!(
            "{} ({} total − {} command); layer {} entries, {} stored",
            fmt_ms(w6),
            fmt_ms(w6_total),
            fmt_ms(mut_cmd),
            insp.files,
            mib(insp.compressed_size)
        ),
        peers: format!("git add -A + commit {}", fmt_ms(g6.wall)),
        target: "≤ 300 ms; 250 changes + 50 whiteouts".into(),
        verdict: verdict(w6 <= Duration::from_millis(300), ""),
    });

    // W9: checkout between S1 and S2, and git between C1 and C2.
    progress("W9: checkout between nearby states");
    let mut ours = Vec::new();
    for _ in 0..3 {
        for s in [&s1, &s2] {
            let (d, _) = timed(|| {
                Ok(Store::open(&store_dir, &work)?.checkout(s, CheckoutOptions::default())?)
            })?;
            ours.push(d);
        }
    }
    git.status()?; // refresh git's stat data after the store rewrote files
    let mut theirs = Vec::new();
    for _ in 0..3 {
        for c in [&c1, &c2] {
            theirs.push(git.run(&["checkout", "-q", "--detach", c])?.wall);
        }
    }
    let (w9, g9) = (median(ours), median(theirs));
    rows.push(Row {
        id: "W9",
        workload: "checkout between two states differing by `mutate-a` (median of 6)".into(),
        ours: fmt_ms(w9),
        peers: format!("git checkout {}", fmt_ms(g9)),
        target: "≤ 150 ms and ≤ 1.0× git".into(),
        verdict: verdict(w9 <= Duration::from_millis(150) && w9 <= g9, ""),
    });

    // W8: cache hit.
    progress("W8: cache hit");
    // forced: git's checkouts removed directories they emptied (git does not track directories)
    Store::open(&store_dir, &work)?.checkout(&s1, CheckoutOptions { force: true })?;
    let (w8, r8) = timed(|| Ok(Store::open(&store_dir, &work)?.run(&mutate(42), &quiet())?))?;
    let st8 = Store::open(&store_dir, &work)?.status()?;
    let w8_cli = match &cli {
        Some(bin) => {
            Store::open(&store_dir, &work)?.checkout(&s1, CheckoutOptions::default())?;
            Some(cli_wall(
                bin,
                &store_dir,
                &work,
                &["run", &mutate(42), "--json"],
            )?)
        }
        None => None,
    };
    let mut w8_row = Row {
        id: "W8",
        workload: "cache hit: same instruction, same parent (lookup + applying a `mutate-a` layer)"
            .into(),
        ours: format!(
            "{}{}{}",
            fmt_ms(w8),
            if r8.cached {
                ", cached"
            } else {
                ", NOT cached"
            },
            if st8.clean {
                ", clean after"
            } else {
                ", dirty after"
            }
        ),
        peers: "— (original: full re-extract)".into(),
        target: "≤ 150 ms to apply; CLI wall ≤ 200 ms".into(),
        verdict: verdict(
            r8.cached
                && st8.clean
                && w8 <= Duration::from_millis(150)
                && w8_cli.is_none_or(|d| d <= Duration::from_millis(200)),
            "",
        ),
    };
    if let Some(d) = w8_cli {
        w8_row
            .ours
            .push_str(&format!("; CLI `run` cache hit {}", fmt_ms(d)));
    }

    // W12: 10 layers of mutate-a, then rebuild.
    progress("W12: 9 more mutate-a layers, then rebuild");
    let mut runs = Vec::new();
    for seed in 43..=51 {
        let (d, _) = timed(|| Ok(Store::open(&store_dir, &work)?.run(&mutate(seed), &quiet())?))?;
        runs.push(d);
    }
    let per_layer = median(runs);
    sync();
    let fresh2 = r.join("a-rebuild-10");
    sync();
    let (w12, _) = timed(|| Ok(Store::open(&store_dir, &fresh2)?.rebuild()?))?;
    sync();
    let (diff_t, diff) = timed(|| Ok(Store::open(&store_dir, &work)?.diff(&s1, None)?))?;
    rows.push(Row {
        id: "W12",
        workload: "10 layers of `mutate-a`, then `rebuild` into an empty dir".into(),
        ours: format!(
            "{} ({:.2}× W10); each layer's `run` {} incl. command",
            fmt_ms(w12),
            w12.as_secs_f64() / w10.as_secs_f64(),
            fmt_ms(per_layer)
        ),
        peers: "—".into(),
        target: "≤ 1.2× W10".into(),
        verdict: verdict(w12.as_secs_f64() <= 1.2 * w10.as_secs_f64(), ""),
    });

    // W11: 100 layers on a small tree.
    progress("W11: 100 layers");
    let sdir = r.join("s-store");
    let swork = r.join("s-work");
    {
        let s = Store::open(&sdir, &swork)?;
        for i in 0..100 {
            s.run(&format!("echo {i} > f{}", i % 20), &quiet())?;
            if i % 10 == 0 {
                s.tag(&format!("t{i}"), None)?;
            }
        }
    }
    let op = |f: &dyn Fn(&Store) -> Result<()>| -> Result<Duration> {
        let mut v = Vec::new();
        for _ in 0..5 {
            let (d, ()) = timed(|| f(&Store::open(&sdir, &swork)?))?;
            v.push(d);
        }
        Ok(median(v))
    };
    let d11 = op(&|s| {
        s.diff("HEAD~99", None)?;
        Ok(())
    })?;
    let h11 = op(&|s| {
        s.history()?;
        Ok(())
    })?;
    let i11 = op(&|s| {
        s.inspect("HEAD~50")?;
        Ok(())
    })?;
    let t11 = op(&|s| {
        s.tags()?;
        Ok(())
    })?;
    let worst = d11.max(h11).max(i11).max(t11);
    // A cache hit on the small tree: the key lookup plus a one-file apply.
    let last = "echo 99 > f19";
    Store::open(&sdir, &swork)?.checkout("HEAD~1", CheckoutOptions::default())?;
    let (hit, hr) = timed(|| Ok(Store::open(&sdir, &swork)?.run(last, &quiet())?))?;
    let hit_cli = match &cli {
        Some(bin) => {
            Store::open(&sdir, &swork)?.checkout("HEAD~1", CheckoutOptions::default())?;
            format!(
                ", CLI {}",
                fmt_ms(cli_wall(bin, &sdir, &swork, &["run", last, "--json"])?)
            )
        }
        None => String::new(),
    };
    w8_row.ours.push_str(&format!(
        "; on a 20-file tree (≈ the key lookup) {}{}{hit_cli}",
        fmt_ms(hit),
        if hr.cached { "" } else { " NOT cached" }
    ));
    w8_row.target = "key lookup ≤ 5 ms; applying ≤ 150 ms; CLI wall ≤ 200 ms".into();
    if !(hr.cached && hit <= Duration::from_millis(5)) {
        w8_row.verdict = verdict(false, "");
    }
    rows.push(w8_row);
    let h11_cli = match &cli {
        Some(bin) => format!(
            "; CLI `history --json` {}",
            fmt_ms(cli_wall(bin, &sdir, &swork, &["history", "--json"])?)
        ),
        None => String::new(),
    };
    rows.push(Row {
        id: "W11",
        workload: "`diff`, `history`, `inspect`, `tags` with 100 layers (open included)".into(),
        ours: format!(
            "diff {} / history {} / inspect {} / tags {}{h11_cli}; diff S1..head on A ({} paths) {}",
            fmt_ms(d11),
            fmt_ms(h11),
            fmt_ms(i11),
            fmt_ms(t11),
            diff.added.len() + diff.modified.len() + diff.deleted.len(),
            fmt_ms(diff_t)
        ),
        peers: "—".into(),
        target: "≤ 20 ms each".into(),
        verdict: verdict(
            worst <= Duration::from_millis(20) && diff_t <= Duration::from_millis(20),
            if diff_t > Duration::from_millis(20) {
                "diff on tree A reads two 37k-entry manifests"
            } else {
                ""
            },
        ),
    });

    // W13: two concurrent runs of one key.
    progress("W13: two concurrent runs of the same key");
    let cdir = r.join("c-store");
    let cwork = r.join("c-work");
    Store::open(&cdir, &cwork)?.run("echo base > base", &quiet())?;
    let instr = "sleep 1; date +%s%N >> ../ran; echo x > x";
    let spawn = |()| -> Result<std::thread::JoinHandle<Result<serde_json::Value>>> {
        let (d, w) = (cdir.clone(), cwork.clone());
        Ok(std::thread::spawn(move || Ok(child_run(&d, &w, instr)?.1)))
    };
    let (w13, (a, b)) = timed(|| {
        let ha = spawn(())?;
        let hb = spawn(())?;
        let a = ha
            .join()
            .map_err(|_| anyhow::anyhow!("thread panicked"))??;
        let b = hb
            .join()
            .map_err(|_| anyhow::anyhow!("thread panicked"))??;
        Ok((a, b))
    })?;
    let executed = std::fs::read_to_string(r.join("ran"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let one_hit = (a["cached"] == true) != (b["cached"] == true) && a["hash"] == b["hash"];
    let verify = Store::open(&cdir, &cwork)?.verify()?;
    rows.push(Row {
        id: "W13",
        workload: "two concurrent `run`s of the same key (two processes)".into(),
        ours: format!(
            "command executed {executed}×; cached: {} / {}; same state: {}; verify ok: {}; wall {}",
            a["cached"],
            b["cached"],
            a["hash"] == b["hash"],
            verify.ok,
            fmt_ms(w13)
        ),
        peers: "—".into(),
        target: "one executes, the other waits and reports a cache hit".into(),
        verdict: verdict(one_hit && executed == 1 && verify.ok, ""),
    });
    notes.push(format!(
        "W3 counts: `added` lists new directories as well as the new files; git reports the \
         same change in {g3_lines} `--porcelain` lines (an untracked directory is one line)."
    ));
    notes.push("W13's crash half (`kill -9` at random moments, then `verify`) is the library's test `process::kill_9_*`, not timed here.".into());

    // ---- tree B -------------------------------------------------------------------------------
    if skip_b {
        notes.push("Tree B (W5, W7) skipped (MACHINE_BENCH_SKIP_B).".into());
    } else {
        let bwork = r.join("b-work");
        let bstore = r.join("b-store");
        progress("generating tree B");
        sh(
            &format!("python3 {GEN} b {} --seed 42 {b_args}", bwork.display()),
            r,
        )?;
        let b_bytes = du(&bwork);
        sync();
        progress("W5: first capture of B");
        let (w5, _) = child_run(&bstore, &bwork, "true")?;
        sync();
        let bfloor = sh(
            &format!(
                "tar -cf - . | zstd -3 -T2 -q -o {}",
                r.join("b.tar.zst").display()
            ),
            &bwork,
        )?;
        rows.push(Row {
            id: "W5",
            workload: format!("first `run` capturing B ({})", mib(b_bytes)),
            ours: format!(
                "{} ({:.0} MB/s), peak RSS {:.0} MB; store {}",
                fmt_ms(w5.wall),
                b_bytes as f64 / 1e6 / w5.wall.as_secs_f64(),
                w5.rss_mb,
                mib(du(&bstore))
            ),
            peers: format!(
                "tar\\|zstd -3 -T2 {} ({}); git not run on B",
                fmt_ms(bfloor.wall),
                mib(du(&r.join("b.tar.zst")))
            ),
            target: "≤ 4.5 s, ≥ 80% of tar\\|zstd speed, RSS ≤ 300 MB".into(),
            verdict: verdict(
                w5.wall <= Duration::from_millis(4500)
                    && w5.wall.as_secs_f64() <= bfloor.wall.as_secs_f64() / 0.8
                    && w5.rss_mb <= 300.0,
                "",
            ),
        });
        progress("W7: run after mutate-b");
        let mb = format!("python3 {GEN} mutate-b . --seed 42");
        let (w7_total, r7) = timed(|| Ok(Store::open(&bstore, &bwork)?.run(&mb, &quiet())?))?;
        // The same command again writes the same bytes: its own time, without a capture.
        let cmd_b = sh(&mb, &bwork)?.wall;
        let i7 = Store::open(&bstore, &bwork)?.inspect(&r7.hash)?;
        let w7 = w7_total.saturating_sub(cmd_b);
        rows.push(Row {
            id: "W7",
            workload: "`run` after `mutate-b` (16 × 4 KiB in a 75 MiB file), command subtracted"
                .into(),
            ours: format!(
                "{} ({} total); layer stores {}",
                fmt_ms(w7),
                fmt_ms(w7_total),
                mib(i7.compressed_size)
            ),
            peers: "—".into(),
            target: "≤ 500 ms; layer ≤ 2 MiB with chunking".into(),
            verdict: verdict(
                w7 <= Duration::from_millis(500) && i7.compressed_size <= 2 * 1024 * 1024,
                "",
            ),
        });
    }

    progress("cleaning up");
    drop(root);

    // ---- report -------------------------------------------------------------------------------
    let order = [
        "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11", "W12", "W13",
    ];
    rows.sort_by_key(|row| order.iter().position(|o| *o == row.id));
    let git_version = Command::new("git")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "git".into());
    let mut md = String::new();
    md.push_str("## Layer store (`cargo xtask bench machine`)\n\n");
    md.push_str(&crate::machine_line());
    md.push_str("\n\n");
    md.push_str(&format!(
        "Trees from `shared/bench/gen_tree.py` (seed 42{}): A = {entries} entries, {}; warm page cache. \
         The store is driven through the `sequential-layer-store` library (each operation opens the \
         store, as the CLI does; no process start counted except where a child process is named). \
         {git_version} runs in the same session on the same work tree (`GIT_DIR` outside it, \
         `core.untrackedCache=true`); first captures run in a child process whose peak RSS is read \
         with `wait4`. A first capture is `run \"true\"` on a work dir that already holds the tree \
         (the run captures the uncommitted tree).\n\n",
        if small { ", reduced size: MACHINE_BENCH_SMALL" } else { "" },
        mib(a_bytes)
    ));
    md.push_str(
        "| # | workload | sequential-machine | git / floor (same session) | target | verdict |\n",
    );
    md.push_str("|---|---|---|---|---|---|\n");
    for row in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.id, row.workload, row.ours, row.peers, row.target, row.verdict
        ));
    }
    for row in rows.iter().filter(|r| r.verdict.starts_with("**missed")) {
        if let Some(why) = explain(row.id) {
            notes.push(format!("{} missed: {why}", row.id));
        }
    }
    if !notes.is_empty() {
        md.push('\n');
        for n in notes {
            md.push_str(&format!("- {n}\n"));
        }
    }
    Ok(md)
}
