//! Randomness a task draws (`crypto.randomUUID()`, `Math.random()`) comes from the operating
//! system's generator and is journaled: distinct across runs, the same on replay.

use std::collections::HashSet;

use sequential_adaptor::now_millis;
use sequential_tasker_engine::StartOptions;
use serde_json::json;

use crate::{fixture, run_to_end, task};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_uuids_across_runs_are_distinct_version_4_variant_10() {
    let f = fixture("sqlite");
    let t = task(
        &f,
        "uuids",
        "const ids = []; for (let i = 0; i < input.n; i++) ids.push(crypto.randomUUID()); ids",
    )
    .await;
    let mut all = HashSet::new();
    for _ in 0..4 {
        let run = run_to_end(&f, &t, json!({"n": 2500})).await;
        let ids = run.output.unwrap();
        for id in ids.as_array().unwrap() {
            let id = id.as_str().unwrap();
            let hex: Vec<char> = id.chars().filter(|c| *c != '-').collect();
            assert_eq!((id.len(), hex.len()), (36, 32), "{id}");
            assert!(hex.iter().all(|c| c.is_ascii_hexdigit()), "{id}");
            assert_eq!(hex[12], '4', "version nibble of {id}");
            let variant = hex[16].to_digit(16).unwrap();
            assert_eq!(variant >> 2, 0b10, "variant bits of {id}");
            assert!(all.insert(id.to_string()), "{id} drawn twice");
        }
    }
    assert_eq!(all.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_replays_the_random_bytes_it_recorded() {
    let f = fixture("folder");
    let t = task(
        &f,
        "dice",
        "export default async function (i, ctx) { const a = crypto.randomUUID(); await ctx.sleep(1); return [a, Math.random()]; }",
    )
    .await;
    let first = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let first = f
        .engine
        .run_until_settled(first.id, Some(now_millis() + 60_000))
        .await
        .unwrap();
    let first_out = first.output.clone().unwrap();
    // keep everything up to and including the first draw: the UUID is replayed, the rest drawn
    let journal = f.engine.read_all(first.id).await.unwrap();
    let cut = journal
        .iter()
        .position(|r| r.kind == "call.completed")
        .unwrap() as u64
        + 1;
    let again = f.engine.rerun(first.id, cut).await.unwrap();
    let again = f
        .engine
        .run_until_settled(again.id, Some(now_millis() + 60_000))
        .await
        .unwrap();
    let out = again.output.unwrap();
    assert_eq!(out[0], first_out[0], "the recorded UUID is replayed");
    assert_ne!(out[1], first_out[1], "a fresh draw after the cut");
}
