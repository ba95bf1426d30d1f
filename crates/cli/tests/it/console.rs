//! The web console in a real browser: headless Chromium driven over the WebDriver protocol
//! (chromedriver, plain HTTP with reqwest) against the real `serve` binary on 127.0.0.1:0 with
//! SQLite storage. Without Chromium and chromedriver the tests skip with one line, unless
//! `REQUIRE_BROWSER=1` (CI sets it). Screenshots go to `target/tmp/console-screenshots/`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::serve::Server;
use crate::util::Sandbox;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `(chromium, chromedriver)` on PATH, or `None` after one line saying why the test skips.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find(|p| p.is_file())
    };
    match (
        find(&["chromium", "chromium-browser", "google-chrome"]),
        find(&["chromedriver"]),
    ) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var("REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!(
                "REQUIRE_BROWSER=1 but chromium or chromedriver is not on PATH (apt-get install chromium chromium-driver)"
            )
        }
        _ => {
            eprintln!(
                "skipping the browser test: chromium and chromedriver are not on PATH (set REQUIRE_BROWSER=1 to fail instead)"
            );
            None
        }
    }
}

/// One headless Chromium session through chromedriver; both end when dropped.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Browser {
    fn start() -> Option<Browser> {
        let (chromium, chromedriver) = browser()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        // chromedriver says "... started successfully on port N" once it listens
        let mut out = BufReader::new(driver.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("successfully") {
            line.clear();
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
        };
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--hide-scrollbars"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let v = b.raw("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        b.viewport(1280, 800);
        Some(b)
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_raw(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url),
        };
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => req,
        };
        let text = self
            .rt
            .block_on(async { req.send().await?.text().await })
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v["value"]["error"].is_string() {
            return Err(format!(
                "{}: {}",
                v["value"]["error"], v["value"]["message"]
            ));
        }
        Ok(v["value"].clone())
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method != "GET" && method != "DELETE").then_some(body);
        self.raw(method, &format!("/session/{}{}", self.session, path), body)
    }

    /// Sets the viewport (the page's size, not the window's) exactly.
    fn viewport(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setDeviceMetricsOverride",
                    "params": { "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false } }),
        );
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    /// Polls `expr` (a JavaScript expression) until it is truthy; its value. Fails after 30 s
    /// with the page's text.
    fn wait(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(&format!(
                "try {{ return ({expr}); }} catch (e) {{ return null; }}"
            ));
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} ({expr}); at {} the page says:\n{}",
                    self.js("return location.href"),
                    self.js("return document.body.innerText")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, css: &str) -> String {
        self.wait(
            css,
            &format!("document.querySelector({}).innerText", json!(css)),
        )
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    fn element(&self, css: &str) -> String {
        self.wait(
            &format!("{css} to be visible"),
            &format!(
                "(() => {{ const e = document.querySelector({}); return e && e.offsetParent !== null; }})()",
                json!(css)
            ),
        );
        let v = self.cmd(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("finding {css}: {v}"))
            .to_string()
    }

    /// Clicks `css`; an element re-rendered between finding and clicking is found again.
    fn click(&self, css: &str) {
        for attempt in 0.. {
            let id = self.element(css);
            let path = format!("/session/{}/element/{id}/click", self.session);
            match self.try_raw("POST", &path, Some(json!({}))) {
                Ok(_) => return,
                Err(e) if attempt < 20 && (e.contains("stale") || e.contains("intercepted")) => {
                    std::thread::sleep(Duration::from_millis(150))
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    fn fill(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/clear"), json!({}));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    fn key(&self, key: &str) {
        self.cmd(
            "POST",
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": [
                { "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }] }] }),
        );
    }

    /// Writes a PNG of the viewport to target/tmp/console-screenshots/NAME.png.
    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Writes a PNG of one element (scrolled into view) next to the page screenshots.
    fn screenshot_of(&self, css: &str, name: &str) -> PathBuf {
        let id = self.element(css);
        let b64 = self.cmd("GET", &format!("/element/{id}/screenshot"), Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// The browser's console and network log since the last call.
    fn log(&self) -> Vec<Value> {
        self.raw(
            "POST",
            &format!("/session/{}/se/log", self.session),
            Some(json!({ "type": "browser" })),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// Fails on any warning or error in the browser's log, except the network entries of
    /// requests the test provoked on purpose (`expected` substrings).
    fn assert_quiet(&self, expected: &[&str]) {
        let bad: Vec<Value> = self
            .log()
            .into_iter()
            .filter(|e| matches!(e["level"].as_str(), Some("WARNING" | "SEVERE")))
            .filter(|e| {
                let m = e["message"].as_str().unwrap_or("");
                !(e["source"] == "network" && expected.iter().any(|x| m.contains(x)))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "the browser console has warnings or errors: {bad:#?}"
        );
    }

    /// No horizontal scroll at `width`×`height`; a screenshot of each size.
    fn both_sizes(&self, name: &str) {
        for (w, h) in [(1280, 800), (390, 844)] {
            self.viewport(w, h);
            self.wait(
                "the new window size",
                &format!("window.innerWidth === {w} && window.innerHeight === {h}"),
            );
            let sizes = self.js(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]",
            );
            assert!(
                sizes[0].as_u64() <= sizes[1].as_u64(),
                "{name} scrolls sideways at {w}x{h}: {sizes}; too wide: {}",
                self.js("const w = document.documentElement.clientWidth; return [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > w + 1).slice(0, 5).map((e) => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))")
            );
            self.screenshot(&format!("{name}-{w}x{h}"));
        }
        self.viewport(1280, 800);
    }

    /// Every control on the page has an accessible name, and Tab reaches each of them.
    fn assert_keyboard_reachable(&self, page: &str) {
        // the page has drawn what it loaded: no document request is in flight
        self.wait(
            "the page to finish loading",
            "document.readyState === 'complete' && document.body.getAttribute('aria-busy') !== 'true'",
        );
        let unnamed = self.js(
            r#"const sel = 'a[href], button, input, select, textarea, summary, [tabindex]:not([tabindex="-1"])';
               const visible = (e) => !e.disabled && (e.offsetParent !== null || e.tagName === 'SUMMARY');
               const name = (e) => {
                 if (e.getAttribute('aria-label')) return e.getAttribute('aria-label');
                 if (e.getAttribute('aria-labelledby')) return document.getElementById(e.getAttribute('aria-labelledby'))?.innerText;
                 if (e.labels && e.labels.length) return e.labels[0].innerText;
                 return (e.innerText || e.value || e.title || '').trim();
               };
               const all = [...document.querySelectorAll(sel)].filter(visible);
               all.forEach((e, i) => e.dataset.tabProbe = i);
               window.__controls = all.length;
               return all.filter((e) => !name(e)).map((e) => e.outerHTML.slice(0, 120));"#,
        );
        assert_eq!(
            unnamed,
            json!([]),
            "{page}: controls without an accessible name"
        );
        let total = self.js("return window.__controls").as_u64().unwrap();
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); return 1");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..total + 3 {
            self.key("\u{E004}");
            if let Some(i) = self
                .js("return document.activeElement.dataset.tabProbe ?? null")
                .as_str()
            {
                seen.insert(i.to_string());
            }
        }
        assert_eq!(
            seen.len() as u64,
            total,
            "{page}: Tab reaches {} of {total} controls",
            seen.len()
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self
                .rt
                .block_on(async { self.http.delete(&url).send().await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A server over a SQLite file in the sandbox, and the browser.
fn setup(sb: &Sandbox, envs: &[(&str, &str)]) -> Option<(Server, Browser)> {
    let browser = Browser::start()?;
    let db = format!("sqlite:{}", sb.join("console.db").display());
    let mut all = vec![("DATABASE_URL", db.as_str())];
    all.extend_from_slice(envs);
    let server = Server::start(sb, &all, &[]);
    Some((server, browser))
}

/// An API request from the test (not the browser).
fn api(
    b: &Browser,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let req = match method {
        "GET" => b.http.get(url),
        _ => b.http.post(url),
    };
    let req = match token {
        Some(t) => req.header("authorization", format!("Bearer {t}")),
        None => req,
    };
    let req = match body {
        Some(v) => req
            .header("content-type", "application/json")
            .body(v.to_string()),
        None => req,
    };
    b.rt.block_on(async {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

fn upload(b: &Browser, s: &Server, token: Option<&str>, name: &str, code: &str, config: Value) {
    let (st, v) = api(
        b,
        "POST",
        &format!("{}/api/v1/tasks", s.url),
        token,
        Some(json!({ "name": name, "code": code, "config": config })),
    );
    assert_eq!(st, 201, "uploading {name}: {v}");
}

fn example(rel: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tasks")
            .join(rel),
    )
    .unwrap()
}

fn upload_approval(b: &Browser, s: &Server, token: Option<&str>) {
    let config: Value = serde_json::from_str(&example("approval/config.json")).unwrap();
    upload(
        b,
        s,
        token,
        "approval",
        &example("approval/code.js"),
        config,
    );
}

#[test]
fn approval_starts_from_the_task_form_waits_and_succeeds_on_an_event_sent_from_the_page() {
    let sb = Sandbox::new();
    let Some((s, b)) = setup(&sb, &[]) else {
        return;
    };
    upload_approval(&b, &s, None);

    // the tasks list: versions and hashes
    b.goto(&format!("{}/ui/tasks", s.url));
    let row = b.text("#tasks-body");
    assert!(row.contains("approval") && row.contains("v1"), "{row}");
    let hash = b.js("return document.querySelector('#tasks-body td.mono').title");
    assert!(hash.as_str().is_some_and(|h| h.len() >= 32), "{hash}");
    b.both_sizes("tasks-list");
    b.click("#tasks-body a");

    // the task page: code, inputs from config.json, and the generated start form
    b.wait(
        "the task page",
        "location.pathname === '/ui/tasks/approval'",
    );
    assert!(b.text("#task-code").contains("waitForEvent"));
    assert!(b.text("main").contains("The amount asked for"));
    b.both_sizes("task-page");
    b.assert_keyboard_reachable("task page");
    // a value of the wrong type is refused under its field, and nothing starts
    b.fill("#input-1", "a lot");
    b.click("#start-run");
    assert!(b.text("#input-1-error").contains("must be a number"));
    b.fill("#input-1", "1200");
    b.fill("#idempotency-key", "console-order-17");
    b.click("#start-run");
    let id = b
        .wait(
            "the run page",
            "location.pathname.startsWith('/ui/runs/') && location.pathname.slice(9)",
        )
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        b.text("#waiting").contains("approved"),
        "waits for the event"
    );
    b.js("window.__same_page = true; return 1");

    // a payload that is not JSON: a message under the field, nothing sent
    b.click("#action-event");
    assert_eq!(
        b.js("return document.querySelector('#event-name').value"),
        "approved"
    );
    b.fill("#event-payload", "{by: ann}");
    b.click("#event-send");
    assert!(b.text("#event-payload-error").contains("not JSON"));
    let (_, run) = api(
        &b,
        "GET",
        &format!("{}/api/v1/runs/{id}", s.url),
        None,
        None,
    );
    assert_eq!(run["status"], "waiting", "nothing was sent: {run}");

    b.fill("#event-payload", r#"{"by": "ann"}"#);
    b.click("#event-send");
    b.click("#confirm-ok");
    b.wait(
        "succeeded",
        "document.querySelector('#run-status').innerText === 'succeeded'",
    );
    assert!(b.text("#run-output").contains("ann"), "the output is shown");
    assert_eq!(
        b.js("return window.__same_page === true"),
        true,
        "no reload"
    );
    assert!(b.text("#timeline").contains("waitForEvent"));
    b.both_sizes("run-page");
    // the run is found by its idempotency key, and by task and status
    b.goto(&format!("{}/ui/runs?q=console-order-17", s.url));
    b.wait("one run by its key", &format!("document.querySelectorAll('#runs-body tr').length === 1 && document.querySelector('#runs-body').innerText.includes('{}')", &id[28..]));
    b.goto(&format!("{}/ui/runs?task=approval&status=succeeded", s.url));
    b.wait(
        "one run by task and status",
        "document.querySelectorAll('#runs-body tr').length === 1",
    );
    assert_eq!(
        b.js("return document.querySelector('#filter-status').value"),
        "succeeded"
    );
    b.goto(&format!("{}/ui/runs/{id}", s.url));
    b.wait(
        "the run page again",
        "document.querySelector('#run-status').innerText === 'succeeded'",
    );
    b.assert_keyboard_reachable("run page");
    // dark when the system is dark
    b.cmd(
        "POST",
        "/goog/cdp/execute",
        json!({ "cmd": "Emulation.setEmulatedMedia", "params": { "features": [{ "name": "prefers-color-scheme", "value": "dark" }] } }),
    );
    let bg = b.js("return getComputedStyle(document.body).backgroundColor");
    assert_eq!(bg, "rgb(20, 22, 26)", "the dark palette");
    b.screenshot("run-page-dark-1280x800");
    b.cmd(
        "POST",
        "/goog/cdp/execute",
        json!({ "cmd": "Emulation.setEmulatedMedia", "params": { "features": [{ "name": "prefers-color-scheme", "value": "light" }] } }),
    );
    b.assert_quiet(&[]);
}

#[test]
fn a_paused_run_shows_its_failed_call_and_last_error_and_retry_finishes_it() {
    let sb = Sandbox::new();
    let Some((s, b)) = setup(&sb, &[]) else {
        return;
    };
    let counting = sequential_test_support::http::CountingServer::start();
    let code = format!(
        "export default async function () {{\n  const r = await fetch('{}/down');\n  if (!r.ok) throw new Error('status ' + r.status);\n  return await r.json();\n}}\n",
        counting.url()
    );
    upload(
        &b,
        &s,
        None,
        "down",
        &code,
        json!({ "retry": { "attempts": 1 } }),
    );
    let (st, run) = api(
        &b,
        "POST",
        &format!("{}/api/v1/tasks/down/runs", s.url),
        None,
        Some(json!({ "input": {} })),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let (_, run) = api(
        &b,
        "GET",
        &format!("{}/api/v1/runs/{id}?wait=30s&until=paused", s.url),
        None,
        None,
    );
    assert_eq!(run["status"], "paused", "{run}");

    b.goto(&format!("{}/ui/runs/{id}", s.url));
    b.wait(
        "the failed call",
        "document.querySelector('#paused-call').innerText.includes('/down')",
    );
    assert!(!b.text("#paused-error").is_empty(), "its last error");
    b.screenshot("run-page-paused-1280x800");

    counting.set_down(false);
    b.click("#action-retry");
    b.click("#confirm-ok");
    b.wait(
        "succeeded",
        "document.querySelector('#run-status').innerText === 'succeeded'",
    );
    assert!(b.text("#run-output").contains("ok"));

    // a rerun step the server no longer has (the page is stale): the API's error as it is
    b.js("const li = document.querySelector('#timeline li[data-seq=\"2\"]'); li.dataset.seq = '999'; return 1");
    b.click("#timeline li[data-seq=\"999\"] summary");
    b.click("#action-rerun");
    b.click("#confirm-ok");
    let (_, refused) = api(
        &b,
        "POST",
        &format!("{}/api/v1/runs/{id}/_fork", s.url),
        None,
        Some(json!({ "from_seq": 999 })),
    );
    let expected = refused["error"]
        .as_str()
        .expect("the API's error")
        .to_string();
    // the page shows it once the refused POST returns (the message said "Retry: done." before)
    b.wait(
        "the API's error shown as it is",
        &format!(
            "document.querySelector('#action-message').innerText === {}",
            serde_json::to_string(&expected).unwrap()
        ),
    );
    b.click("#timeline li[data-seq=\"999\"] summary");

    // rerun from a record picked in the timeline: a new run with that journal prefix
    b.click("#timeline li[data-seq=\"1\"] summary");
    assert_eq!(b.text("#action-rerun"), "Rerun from record #1");
    b.click("#action-rerun");
    b.click("#confirm-ok");
    let fork = b
        .wait("the new run's page", &format!("location.pathname.startsWith('/ui/runs/') && !location.pathname.endsWith('{id}') && location.pathname.slice(9)"))
        .as_str()
        .unwrap()
        .to_string();
    b.wait(
        "the new run to succeed",
        "document.querySelector('#run-status').innerText === 'succeeded'",
    );
    let (_, forked) = api(
        &b,
        "GET",
        &format!("{}/api/v1/runs/{fork}", s.url),
        None,
        None,
    );
    assert_eq!(forked["output"], json!({ "ok": true }), "{forked}");
    b.assert_quiet(&["_fork"]);
}

#[test]
fn the_runs_list_updates_live_when_the_cli_starts_a_run_in_another_process() {
    let sb = Sandbox::new();
    sb.write(
        "tasks/greet/code.js",
        "export default async function (input) {\n  const r = await fetch('data:application/json,{\"greeting\":\"hello\"}');\n  return { greeting: (await r.json()).greeting, name: input.name ?? null };\n}\n",
    );
    let Some((s, b)) = setup(&sb, &[]) else {
        return;
    };
    b.goto(&format!("{}/", s.url));
    assert!(
        b.text("#runs-empty").contains("No runs yet"),
        "an empty state that says what to do"
    );
    b.both_sizes("runs-list-empty");
    // from here on, any layout shift counts
    b.wait(
        "the list to follow",
        "document.querySelector('#live-state').innerText",
    );
    b.js("window.__cls = 0; new PerformanceObserver((l) => { for (const e of l.getEntries()) if (!e.hadRecentInput) window.__cls += e.value; }).observe({ type: 'layout-shift' }); return 1");

    let db = format!("sqlite:{}", sb.join("console.db").display());
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = sb
            .cmd(&[
                "run",
                "greet",
                "--input",
                &format!(r#"{{"name": "n{i}"}}"#),
                "--detach",
                "--json",
            ])
            .env("DATABASE_URL", db.clone())
            .run()
            .ok()
            .json();
        let id = out["run"]
            .as_str()
            .or(out["id"].as_str())
            .unwrap()
            .to_string();
        b.wait(
            "the new run in the list",
            &format!("document.querySelector('tr[data-run=\"{id}\"]')"),
        );
        ids.push(id);
    }
    for id in &ids {
        b.wait(
            "its status to turn succeeded",
            &format!(
                "document.querySelector('tr[data-run=\"{id}\"] .status').innerText === 'succeeded'"
            ),
        );
    }
    let cls = b.js("return window.__cls").as_f64().unwrap();
    assert_eq!(cls, 0.0, "live updates shift the layout");
    // the probe itself sees a shift when there is one
    b.js("document.querySelector('main').prepend(Object.assign(document.createElement('div'), { style: 'height: 120px' })); return 1");
    b.wait("the probe to count a shift", "window.__cls > 0");
    b.goto(&format!("{}/ui/runs", s.url));
    b.wait(
        "the list",
        "document.querySelectorAll('#runs-body tr').length === 3",
    );
    b.both_sizes("runs-list");
    b.assert_keyboard_reachable("runs list");

    // paging: two a page
    b.goto(&format!("{}/ui/runs?limit=2", s.url));
    b.wait(
        "a first page of two",
        "document.querySelectorAll('#runs-body tr').length === 2",
    );
    assert!(b.text("#runs-body").contains(&ids[2][28..]), "newest first");
    b.click("#next-page");
    b.wait(
        "the older page",
        "document.querySelectorAll('#runs-body tr').length === 1",
    );
    assert!(b.text("#runs-body").contains(&ids[0][28..]));
    b.click("#prev-page");
    b.wait(
        "back to the first page",
        "document.querySelectorAll('#runs-body tr').length === 2",
    );
    // a filter that matches nothing says so
    b.goto(&format!("{}/ui/runs?status=failed", s.url));
    assert!(b.text("#runs-empty").contains("No run matches"));

    // search by run id, and filters
    b.fill("#search", &ids[1]);
    b.click("form[role=search] button[type=submit]");
    b.wait(
        "one row",
        "document.querySelectorAll('#runs-body tr').length === 1",
    );
    assert!(b.text("#runs-body").contains(&ids[1][28..]));
    b.assert_quiet(&[]);
}

#[test]
fn bad_input_unknown_run_wrong_token_and_a_server_that_went_away() {
    let sb = Sandbox::new();
    let token = "console-test-token-0123456789";
    let Some((s, b)) = setup(&sb, &[("SEQUENTIAL_API_TOKEN", token)]) else {
        return;
    };
    upload_approval(&b, &s, Some(token));

    // the shell needs no token; the data does: the console asks once
    b.goto(&format!("{}/ui/runs", s.url));
    b.fill("#token-input", "not-the-token");
    b.click("dialog button[type=submit]");
    b.wait("the console to ask again", "document.querySelector('#dialog').open && document.querySelector('#token-hint').innerText.includes('refused')");
    // an observation window, not a wait: a console that looped would ask again within it
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        b.js("return document.querySelectorAll('#dialog form').length"),
        1,
        "one prompt, not a loop"
    );
    b.fill("#token-input", token);
    b.click("dialog button[type=submit]");
    assert!(b.text("#runs-empty").contains("No runs yet"));
    assert!(
        !b.js("return location.href")
            .as_str()
            .unwrap()
            .contains(token),
        "the token is not in the URL"
    );

    // a run id that does not exist: a not-found view with a link back
    b.goto(&format!(
        "{}/ui/runs/0190c3e2-7a4b-7c00-8000-000000000000",
        s.url
    ));
    assert!(b.text("#not-found").contains("No run has the id"));
    b.click("#not-found a");
    b.wait(
        "the runs list",
        "location.pathname === '/ui/runs' && document.querySelector('#runs-empty')",
    );

    // the server goes away: a banner; it comes back on the same address: reconnected
    let port = s.url.rsplit(':').next().unwrap().to_string();
    drop(s);
    b.wait("the banner", "!document.querySelector('#banner').hidden && document.querySelector('#banner').innerText.includes('does not answer')");
    let db = format!("sqlite:{}", sb.join("console.db").display());
    let mut again = sb
        .cmd(&["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", db)
        .env("SEQUENTIAL_API_TOKEN", token)
        .spawn();
    let mut line = String::new();
    BufReader::new(again.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(&port), "serve again on port {port}: {line:?}");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _again = Kill(again);
    b.wait(
        "the banner to go",
        "document.querySelector('#banner').hidden",
    );
    let (st, run) = api(
        &b,
        "POST",
        &format!("http://127.0.0.1:{port}/api/v1/tasks/approval/runs"),
        Some(token),
        Some(json!({ "input": { "item": "desk", "amount": 5 } })),
    );
    assert_eq!(st, 202, "{run}");
    b.wait(
        "the list to show the new run",
        &format!(
            "document.querySelector('tr[data-run=\"{}\"]')",
            run["id"].as_str().unwrap()
        ),
    );
    // only the requests provoked on purpose failed: 401s, the 404, the refused connections
    b.assert_quiet(&[
        "401",
        "404",
        "ERR_CONNECTION_REFUSED",
        "ERR_EMPTY_RESPONSE",
        "ERR_INCOMPLETE_CHUNKED_ENCODING",
        "ERR_CONNECTION_RESET",
        "ERR_SOCKET_NOT_CONNECTED",
    ]);
}

#[test]
fn a_graph_run_shows_its_graph_with_the_visited_states_and_the_current_one() {
    let sb = Sandbox::new();
    let Some((s, b)) = setup(&sb, &[]) else {
        return;
    };
    let graph: Value = serde_json::from_str(&example("order-graph/graph.json")).unwrap();
    let config: Value = serde_json::from_str(&example("order-graph/config.json")).unwrap();
    let (st, v) = api(
        &b,
        "POST",
        &format!("{}/api/v1/tasks", s.url),
        None,
        Some(
            json!({ "name": "order-graph", "code": example("order-graph/code.js"), "graph": graph, "config": config }),
        ),
    );
    assert_eq!(st, 201, "{v}");
    // a cart over 100 waits for a person's approval
    let input = json!({ "customerId": 7, "items": [{ "sku": "tv", "qty": 1, "price": 500 }] });
    let (st, run) = api(
        &b,
        "POST",
        &format!("{}/api/v1/tasks/order-graph/runs", s.url),
        None,
        Some(json!({ "input": input })),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let (_, run) = api(
        &b,
        "GET",
        &format!("{}/api/v1/runs/{id}?wait=30s&until=waiting", s.url),
        None,
        None,
    );
    assert_eq!(run["status"], "waiting", "{run}");

    b.goto(&format!("{}/ui/runs/{id}", s.url));
    b.wait(
        "the current state",
        "document.querySelector('#graph g.current[data-state=\"approval\"]')",
    );
    b.wait(
        "a visited state",
        "document.querySelector('#graph g.visited[data-state=\"lookup\"]')",
    );
    assert_eq!(
        b.js("return document.querySelectorAll('#graph g.node').length"),
        json!(graph["states"].as_object().unwrap().len())
    );
    assert!(
        b.text("#timeline").contains("lookup → price"),
        "graph records as sentences"
    );
    b.both_sizes("run-page-graph");

    // the event arrives from elsewhere: the page follows the run to its end without moving
    b.wait(
        "the page to finish loading",
        "document.body.getAttribute('aria-busy') !== 'true'",
    );
    b.js("window.__cls = 0; new PerformanceObserver((l) => { for (const e of l.getEntries()) if (!e.hadRecentInput) window.__cls += e.value; }).observe({ type: 'layout-shift' }); return 1");
    let (st, sent) = api(
        &b,
        "POST",
        &format!("{}/api/v1/runs/{id}/_event", s.url),
        None,
        Some(json!({ "eventName": "approved", "message": { "by": "ann" } })),
    );
    assert_eq!(st, 202, "{sent}");
    b.wait(
        "succeeded",
        "document.querySelector('#run-status').innerText === 'succeeded'",
    );
    b.wait(
        "the graph's end",
        "document.querySelector('#graph g.visited[data-state=\"done\"]')",
    );
    // layout-shift entries are reported after the frame that shifted: a window to collect them
    std::thread::sleep(Duration::from_millis(500));
    let cls = b.js("return window.__cls").as_f64().unwrap();
    assert_eq!(cls, 0.0, "live updates of a run page shift its layout");
    b.screenshot("run-page-graph-succeeded-1280x800");
    b.viewport(1280, 2000);
    b.screenshot_of("#graph", "graph-of-a-waiting-run");
    b.viewport(1280, 800);

    // the task page draws the same graph, nothing marked
    b.goto(&format!("{}/ui/tasks/order-graph", s.url));
    b.wait(
        "the task's graph",
        "document.querySelectorAll('#task-graph g.node').length > 3",
    );
    assert_eq!(b.js("return document.querySelectorAll('#task-graph g.visited, #task-graph g.current').length"), json!(0));
    b.assert_quiet(&[]);
}

#[test]
fn a_2000_record_journal_renders_every_record() {
    let sb = Sandbox::new();
    let Some((s, b)) = setup(&sb, &[]) else {
        return;
    };
    let code = "export default async function () {\n  for (let i = 0; i < 1999; i++) console.log(`line ${i}`);\n  return { lines: 1999 };\n}\n";
    upload(&b, &s, None, "chatty", code, json!({}));
    let (st, run) = api(
        &b,
        "POST",
        &format!("{}/api/v1/tasks/chatty/runs?wait=60s", s.url),
        None,
        Some(json!({ "input": {} })),
    );
    assert_eq!((st, &run["status"]), (200, &json!("succeeded")), "{run}");
    let records = run["journal"]["last_seq"].as_u64().unwrap() + 1;
    assert!(records >= 2000, "{records} records");
    b.goto(&format!(
        "{}/ui/runs/{}",
        s.url,
        run["id"].as_str().unwrap()
    ));
    let at = b.wait(
        "every record in the timeline",
        &format!(
            "document.querySelectorAll('#timeline > li').length === {records} && performance.now()"
        ),
    );
    // a measurement for docs/console.md, not an assertion: from navigation start (the shell,
    // the script, the run and its whole journal over the stream) to the last row in the page
    let marks = b.js("const m = (n) => performance.getEntriesByName(n).map((e) => e.startTime); const r = m('journal-rendered'); return [m('journal-first-record')[0], r[r.length - 1], r.length, performance.getEntriesByName('journal-render').reduce((a, e) => a + e.duration, 0)]");
    eprintln!(
        "console: a {records}-record journal: in the page {:.0} ms after navigation started; first record at {:.0} ms, last row at {:.0} ms ({} frames, {:.0} ms of them drawing)",
        at.as_f64().unwrap(),
        marks[0].as_f64().unwrap(),
        marks[1].as_f64().unwrap(),
        marks[2],
        marks[3].as_f64().unwrap()
    );
    b.assert_quiet(&[]);
}

#[test]
fn errors_timers_child_runs_large_bodies_kill_and_cancel_are_shown() {
    let sb = Sandbox::new();
    let Some((s, b)) = setup(&sb, &[]) else {
        return;
    };
    let code = r#"export default async function (input, ctx) {
  if (input.mode === "fail") throw new TypeError("no such order: " + input.id);
  if (input.mode === "child") return await ctx.runTask("various", { mode: "big" });
  if (input.mode === "sleep") { await ctx.sleep("1h"); return { slept: true }; }
  const r = await fetch("data:application/json," + encodeURIComponent(JSON.stringify({ blob: "x".repeat(10000) })));
  return { size: (await r.json()).blob.length };
}
"#;
    upload(&b, &s, None, "various", code, json!({}));
    let start = |input: Value, wait: &str| {
        let (st, run) = api(
            &b,
            "POST",
            &format!("{}/api/v1/tasks/various/runs?wait={wait}", s.url),
            None,
            Some(json!({ "input": input })),
        );
        assert!(st == 200 || st == 202, "{run}");
        run["id"].as_str().unwrap().to_string()
    };

    // a failed run: the error's name, message and stack
    let failed = start(json!({ "mode": "fail", "id": 7 }), "30s");
    b.goto(&format!("{}/ui/runs/{failed}", s.url));
    let err = b.text("#run-error");
    assert!(
        err.contains("TypeError") && err.contains("no such order: 7"),
        "{err}"
    );

    // a child run is marked and links to its page; the child's large body is cut, with a download
    let parent = start(json!({ "mode": "child" }), "30s");
    b.goto(&format!("{}/ui/runs/{parent}", s.url));
    b.wait(
        "succeeded",
        "document.querySelector('#run-status').innerText === 'succeeded'",
    );
    b.click("#timeline a[href^='/ui/runs/']");
    b.wait(
        "the child's page",
        &format!(
            "location.pathname.startsWith('/ui/runs/') && !location.pathname.endsWith('{parent}')"
        ),
    );
    assert!(
        b.text("#run-head").contains(&parent[..8]),
        "the child names its parent"
    );
    b.click("#timeline li[data-seq='1'] summary");
    let body = b.text("#timeline li[data-seq='1'] .body");
    assert!(body.contains("Download the whole body"), "{body}");
    assert!(b.js("return document.querySelector('#timeline li[data-seq=\"1\"] a[download]').href.startsWith('blob:')") == json!(true));

    // a sleeping run: the timer with a countdown; kill ends it, after a confirmation
    let sleeping = start(json!({ "mode": "sleep" }), "1s");
    b.goto(&format!("{}/ui/runs/{sleeping}", s.url));
    assert!(b.text("#waiting").contains("Sleeping until"));
    b.wait(
        "a countdown",
        "document.querySelector('#timer-left').innerText.includes('left')",
    );
    b.click("#action-kill");
    b.click("#confirm-cancel");
    // an observation window, not a wait: a kill sent anyway would have landed within it
    std::thread::sleep(Duration::from_millis(300));
    let (_, run) = api(
        &b,
        "GET",
        &format!("{}/api/v1/runs/{sleeping}", s.url),
        None,
        None,
    );
    assert_eq!(
        run["status"], "waiting",
        "cancelled in the dialog: nothing sent"
    );
    b.click("#action-kill");
    b.click("#confirm-ok");
    b.wait(
        "cancelled",
        "document.querySelector('#run-status').innerText === 'cancelled'",
    );

    // cancel (a graceful stop) of another sleeping run
    let other = start(json!({ "mode": "sleep" }), "1s");
    b.goto(&format!("{}/ui/runs/{other}", s.url));
    b.click("#action-cancel");
    b.click("#confirm-ok");
    b.wait(
        "cancelled",
        "document.querySelector('#run-status').innerText === 'cancelled'",
    );
    b.assert_quiet(&[]);
}
