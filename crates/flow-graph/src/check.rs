//! The graph-wide rules of static validation (S16), run once the document reads cleanly:
//! targets, reachability, a reachable end, handler exports, handler names shared across
//! sub-graphs, eventless cycles.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Sink;
use crate::graph::{Graph, Kind, Run, SubGraph};
use crate::json::Ptr;

pub(crate) fn rules(g: &Graph, sink: &mut Sink) {
    let mut handlers: BTreeMap<String, (String, String)> = BTreeMap::new();
    walk(g, &g.main, sink, &mut handlers);
}

fn ptr(p: &str) -> Ptr {
    // pointers stored in the graph are already escaped: rebuild a Ptr around the text
    let mut out = Ptr::root();
    for seg in p.split('/').skip(1) {
        out = out.key(&seg.replace("~1", "/").replace("~0", "~"));
    }
    out
}

fn walk(
    g: &Graph,
    sub: &SubGraph,
    sink: &mut Sink,
    handlers: &mut BTreeMap<String, (String, String)>,
) {
    let names: BTreeSet<&str> = sub.states.iter().map(|s| s.name.as_str()).collect();
    let scope = if sub.pointer.is_empty() {
        "this graph"
    } else {
        "this sub-graph"
    };
    // unknown targets
    let mut bad_target = false;
    for st in &sub.states {
        for e in &st.edges {
            if !names.contains(e.target.as_str()) {
                bad_target = true;
                sink.error(
                    &ptr(&e.pointer),
                    format!("unknown target `{}` (from state `{}`)", e.target, st.name),
                    format!(
                        "a state of {scope}: {}",
                        names.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
    // reachability from initial
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut todo = vec![sub.initial.as_str()];
    while let Some(n) = todo.pop() {
        if !seen.insert(n) {
            continue;
        }
        if let Some(st) = sub.state(n) {
            todo.extend(st.edges.iter().map(|e| e.target.as_str()));
        }
    }
    if !bad_target {
        for st in &sub.states {
            if !seen.contains(st.name.as_str()) {
                sink.error(
                    &ptr(&st.pointer),
                    format!(
                        "state `{}` is unreachable from initial `{}`",
                        st.name, sub.initial
                    ),
                    format!(
                        "a transition to `{}` from a reachable state, or no such state",
                        st.name
                    ),
                );
            }
        }
        let ends = sub.states.iter().any(|s| {
            seen.contains(s.name.as_str()) && matches!(s.kind, Kind::Final(_) | Kind::Fail(_))
        });
        if !ends {
            sink.error(
                &ptr(&sub.pointer).key("states"),
                format!(
                    "no final or fail state is reachable from initial `{}`",
                    sub.initial
                ),
                "a path from initial to a state of type final or fail",
            );
        }
    }
    for st in &sub.states {
        // handler exports
        if let Some(exports) = &g.exports {
            let (handler, at) = match &st.kind {
                Kind::Task(t) => match &t.run {
                    Run::Handler(h) if *h == st.name => (Some(h), ptr(&st.pointer)),
                    Run::Handler(h) => (Some(h), ptr(&st.pointer).key("handler")),
                    _ => (None, Ptr::root()),
                },
                Kind::Final(f) => (f.handler.as_ref(), ptr(&st.pointer).key("handler")),
                _ => (None, Ptr::root()),
            };
            if let Some(h) = handler.filter(|h| !exports.contains(*h)) {
                let known = if exports.is_empty() {
                    "none".to_string()
                } else {
                    exports.iter().cloned().collect::<Vec<_>>().join(", ")
                };
                sink.error(
                    &at,
                    format!("{} state `{}` calls export `{h}`, which code.js does not export", st.type_name(), st.name),
                    format!("`export async function {h}(input, ctx)` in code.js, or \"handler\": one of the exports ({known})"),
                );
            }
        }
        // the same implicit handler in two sub-graphs
        if let Kind::Task(t) = &st.kind
            && matches!(&t.run, Run::Handler(h) if *h == st.name)
        {
            match handlers.get(&st.name) {
                Some((other_sub, other_ptr)) if *other_sub != sub.pointer => sink.error(
                    &ptr(&st.pointer),
                    format!(
                        "handler name `{}` is also the handler of {other_ptr}, in another sub-graph",
                        st.name
                    ),
                    "distinct state names across sub-graphs, or \"handler\": \"<export>\" on both to share one export on purpose",
                ),
                Some(_) => {}
                None => {
                    handlers.insert(st.name.clone(), (sub.pointer.clone(), st.pointer.clone()));
                }
            }
        }
        // a final state reached through an error path (legacy errorHandler)
        if let Kind::Final(_) = st.kind {
            let via_error = sub.states.iter().any(|s| {
                s.edges.iter().any(|e| {
                    e.target == st.name && (e.via == "error" || e.via.starts_with("catch["))
                })
            });
            if via_error {
                sink.warn(
                    &ptr(&st.pointer),
                    format!(
                        "final state `{}` is reached through onError/catch: the run ends succeeded (with handled_error)",
                        st.name
                    ),
                    "\"type\": \"fail\" with \"error\": \"<Name>\" if the run should end failed",
                );
            }
        }
    }
    eventless_cycles(g, sub, sink);
    for st in &sub.states {
        for inner in st.subgraphs() {
            walk(g, inner, sink, handlers);
        }
    }
}

/// Cycles made only of choice and pass states (Tarjan's strongly connected components).
fn eventless_cycles(g: &Graph, sub: &SubGraph, sink: &mut Sink) {
    let idx: BTreeMap<&str, usize> = sub
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let n = sub.states.len();
    let adj: Vec<Vec<usize>> = sub
        .states
        .iter()
        .map(|s| {
            if !s.is_eventless() {
                return vec![];
            }
            s.edges
                .iter()
                .filter_map(|e| idx.get(e.target.as_str()).copied())
                .filter(|&j| sub.states[j].is_eventless())
                .collect()
        })
        .collect();
    struct T {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn strong(v: usize, adj: &[Vec<usize>], t: &mut T) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in &adj[v] {
            match t.index[w] {
                None => {
                    strong(w, adj, t);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            t.out.push(comp);
        }
    }
    let mut t = T {
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: vec![],
        next: 0,
        out: vec![],
    };
    for v in 0..n {
        if t.index[v].is_none() {
            strong(v, &adj, &mut t);
        }
    }
    let mut comps: Vec<Vec<usize>> = t
        .out
        .into_iter()
        .filter(|c| c.len() > 1 || adj[c[0]].contains(&c[0]))
        .map(|mut c| {
            c.sort();
            c
        })
        .collect();
    comps.sort();
    for c in comps {
        let names: Vec<&str> = c.iter().map(|&i| sub.states[i].name.as_str()).collect();
        sink.warn(
            &ptr(&sub.states[c[0]].pointer),
            format!(
                "states {} form a cycle of choice/pass states only: it loops without an event",
                names.join(", ")
            ),
            format!(
                "a task or wait state on the cycle (otherwise the run fails with flow.LoopLimit after {} eventless steps)",
                g.limits.max_eventless_steps
            ),
        );
    }
}
