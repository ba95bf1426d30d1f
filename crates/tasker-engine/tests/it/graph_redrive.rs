//! Redrive in place (GRAPHS.md S15): a failed graph run re-enters the state whose failure
//! ended it, with fresh retry counters, under the same id; its journal continues.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sequential_adaptor::{RunStatus, now_millis};
use sequential_tasker_engine::graph::RerunFrom;
use sequential_tasker_engine::{Error, StartOptions};
use sequential_test_support::http::CountingServer;
use serde_json::json;

use crate::graph::{assert_fold_matches, graph_records, journal, put_graph, show};
use crate::{backends, fixture, task};

/// The counting server with `/gate`: 422 while the gate is closed, 200 once it is open.
fn gated_server() -> (CountingServer, Arc<AtomicBool>) {
    let open = Arc::new(AtomicBool::new(false));
    let router = axum::Router::new()
        .route(
            "/gate",
            axum::routing::any(
                |axum::extract::State(open): axum::extract::State<Arc<AtomicBool>>| async move {
                    if open.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::OK, "open")
                    } else {
                        (axum::http::StatusCode::UNPROCESSABLE_ENTITY, "closed")
                    }
                },
            ),
        )
        .with_state(open.clone());
    (CountingServer::start_with(router), open)
}

fn graph() -> serde_json::Value {
    json!({
        "version": 1,
        "initial": "fetchOrder",
        "states": {
            "fetchOrder": { "onDone": "charge" },
            "charge": {
                "retry": [{ "errors": ["Declined"], "maxAttempts": 1, "interval": "10ms" }],
                "onDone": "notify"
            },
            "notify": { "onDone": "done" },
            "done": { "type": "final" }
        }
    })
}

fn code(server: &CountingServer) -> String {
    let u = server.url();
    format!(
        r#"class Declined extends Error {{}}
export async function fetchOrder(input) {{
  await fetch("{u}/step/1", {{ method: "POST", body: JSON.stringify(input) }});
  return {{ id: input.orderId, amount: 42 }};
}}
export async function charge(order, ctx) {{
  const r = await fetch("{u}/gate");
  if (r.status !== 200) throw new Declined(`attempt ${{ctx.attempt}}: ${{r.status}}`);
  return {{ ...order, charged: true, attempt: ctx.attempt }};
}}
export async function notify(order) {{
  await fetch("{u}/step/3", {{ method: "POST", body: JSON.stringify(order) }});
  return {{ notified: order.id, chargedOnAttempt: order.attempt }};
}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_graph_run_is_redriven_in_place_from_the_state_that_failed() {
    for (backend, f) in backends() {
        let (server, open) = gated_server();
        let t = put_graph(f.store.as_ref(), "redrive", &code(&server), graph()).await;
        let run = f
            .engine
            .start(&t, json!({"orderId": 7}), StartOptions::default())
            .await
            .unwrap();
        let until = Some(now_millis() + 60_000);
        let failed = f.engine.run_until_settled(run.id, until).await.unwrap();
        assert_eq!(failed.status, RunStatus::Failed, "{backend}: {failed:?}");
        assert_eq!(failed.error.as_ref().unwrap()["name"], "Declined");
        assert_eq!(server.count("/gate"), 2, "{backend}: one try and one retry");

        // still declined: the redrive spends a fresh set of retries, then fails again
        let again = f.engine.redrive(run.id).await.unwrap();
        assert_eq!(again.id, run.id);
        assert_eq!(again.status, RunStatus::Queued, "{backend}");
        assert!(again.ended_at.is_none() && again.error.is_none());
        assert_fold_matches(&f.engine, run.id).await;
        let failed = f.engine.run_until_settled(run.id, until).await.unwrap();
        assert_eq!(failed.status, RunStatus::Failed, "{backend}: {failed:?}");
        assert_eq!(
            server.count("/gate"),
            4,
            "{backend}: the redriven state had its retry again (fresh counters)"
        );

        // the dependency recovers: the next redrive succeeds from charge
        open.store(true, Ordering::SeqCst);
        let records_before = graph_records(&journal(f.store.as_ref(), run.id).await).len();
        f.engine.redrive(run.id).await.unwrap();
        let done = f.engine.run_until_settled(run.id, until).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(
            done.output,
            Some(json!({"notified": 7, "chargedOnAttempt": 1})),
            "{backend}: charge ran again as attempt 1"
        );
        assert_fold_matches(&f.engine, run.id).await;
        assert_eq!(
            server.count("/step/1"),
            1,
            "{backend}: fetchOrder never ran again"
        );
        assert_eq!(server.count("/gate"), 5, "{backend}");
        assert_eq!(server.count("/step/3"), 1, "{backend}");

        let j = journal(f.store.as_ref(), run.id).await;
        let records = graph_records(&j);
        let shown = show(&records);
        let kinds: Vec<String> = records[records_before..]
            .iter()
            .map(|r| format!("{} {}", r.kind(), r.path.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(
            kinds,
            [
                "run.redriven charge",
                "state.entered charge",
                "state.succeeded charge",
                "transition charge",
                "state.entered notify",
                "state.succeeded notify",
                "transition notify",
                "state.entered done",
                "run.succeeded -",
            ],
            "{backend}: no takeover (run.recovered) after a redrive\n{shown}"
        );
        let entered = records[records_before + 1].to_parts().1;
        assert_eq!(entered["attempt"], 1, "{backend}: {shown}");
        assert!(entered.get("restart").is_none(), "{backend}: {shown}");
        assert_eq!(entered["input"], json!({"id": 7, "amount": 42}));
        // history is kept: both failures are still in the journal, and the redrive is one commit
        assert_eq!(
            records
                .iter()
                .filter(|r| r.kind().as_str() == "run.failed")
                .count(),
            2,
            "{backend}: {shown}"
        );
        let redriven = j.iter().rfind(|r| r.kind == "run.redriven").unwrap();
        assert_eq!(
            redriven.data["batch"], 2,
            "{backend}: one atomic commit (S6)"
        );

        // a run that did not fail is refused, and nothing is appended
        let len = j.len();
        let err = f.engine.redrive(run.id).await.unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { input, .. } if input.contains("succeeded")),
            "{backend}: {err}"
        );
        assert_eq!(journal(f.store.as_ref(), run.id).await.len(), len);

        // forks of the redriven run: from charge's first entry, and from right after the last
        // redrive (the failures before it are copied too: the copy folds)
        let (fork, _) = f
            .engine
            .rerun_graph(run.id, &RerunFrom::State("charge".into()))
            .await
            .unwrap();
        let copied = graph_records(&journal(f.store.as_ref(), fork.id).await);
        assert!(
            !copied.iter().any(
                |r| r.kind().as_str().starts_with("run.") && r.kind().as_str() != "run.started"
            ),
            "{backend}: the copy stops at charge's first entry\n{}",
            show(&copied)
        );
        let after_redrive = j.iter().rfind(|r| r.kind == "run.redriven").unwrap().seq + 2;
        let fork2 = f.engine.rerun(run.id, after_redrive).await.unwrap();
        let copied2 = graph_records(&journal(f.store.as_ref(), fork2.id).await);
        assert_eq!(
            copied2.last().unwrap().kind().as_str(),
            "state.entered",
            "{backend}: {}",
            show(&copied2)
        );
        for id in [fork.id, fork2.id] {
            let done = f.engine.run_until_settled(id, until).await.unwrap();
            assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
            assert_eq!(
                done.output,
                Some(json!({"notified": 7, "chargedOnAttempt": 1}))
            );
            assert_fold_matches(&f.engine, id).await;
        }
        assert_eq!(
            server.count("/step/1"),
            1,
            "{backend}: forks replay fetchOrder"
        );
        assert_eq!(server.count("/gate"), 7, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implicit_run_is_not_redriven_and_the_error_names_the_fork() {
    let f = fixture("sqlite");
    let t = task(
        &f,
        "boom",
        "export default async function () { throw new Error('boom'); }",
    )
    .await;
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let failed = f.engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    let err = f.engine.redrive(run.id).await.unwrap_err().to_string();
    assert!(
        err.contains("implicit") && err.contains("--from-seq"),
        "{err}"
    );
    assert_eq!(
        f.store.get_run(run.id).await.unwrap().status,
        RunStatus::Failed
    );
}
