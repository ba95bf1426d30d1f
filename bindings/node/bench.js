#!/usr/bin/env node
// Latency of the Node package's calls, one at a time (what a request handler sees).
//
//   node build.js --release && node bench.js [--write] [--iterations N]
//
// --write replaces the "bench:node" section of docs/benchmarks.md with the table printed.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { SequentialFlow, InMemoryStorage } = require('.');

const args = process.argv.slice(2);
const write = args.includes('--write');
const nIndex = args.indexOf('--iterations');
const N = nIndex >= 0 ? Number(args[nIndex + 1]) : 2000;

const TRIVIAL = 'const x = 5; x * 2';
const ONE_FETCH = "const t = Date.now(); const u = fetch('api/user/1'); ({ name: u.name, t })";

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { mean, p50: at(0.5), p99: at(0.99) };
}

async function time(fn) {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function measure(setup, call) {
  const samples = [];
  for (let i = 0; i < N + N / 10; i++) {
    const ctx = await setup(i);
    const ms = await time(() => call(ctx, i));
    if (i >= N / 10) samples.push(ms);
  }
  return stats(samples);
}

async function resumeBench(storage, label) {
  const opts = { storage };
  return measure(
    async (i) => SequentialFlow.execute({ id: `bench-${label}-${i}`, code: ONE_FETCH }, opts),
    async (paused) => {
      const done = await SequentialFlow.resume({ taskId: paused.id, fetchResponse: { data: { name: 'Alice' } } }, opts);
      if (done.status !== 'completed') throw new Error(`resume did not complete: ${JSON.stringify(done)}`);
    }
  );
}

function hasNativeStores() {
  return typeof require('./sequential-flow.node').openStore === 'function';
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sequential-flow-bench-'));
  const rows = [];
  const memory = new InMemoryStorage();
  rows.push([
    '`execute` of a trivial script, saved to InMemoryStorage',
    await measure(async () => null, async () => {
      const r = await SequentialFlow.execute({ code: TRIVIAL }, { storage: memory });
      if (r.result !== 10) throw new Error(JSON.stringify(r));
    }),
    '≤ 0.5 ms',
  ]);
  rows.push([
    '`execute` of a trivial script, `saveToStorage: false`',
    await measure(async () => null, async () => SequentialFlow.execute({ code: TRIVIAL }, { saveToStorage: false })),
    '—',
  ]);
  rows.push(['`resume` by taskId, InMemoryStorage', await resumeBench(new InMemoryStorage(), 'mem'), '≤ 0.6 ms']);
  if (hasNativeStores()) {
    rows.push(['`resume` by taskId, store `memory:`', await resumeBench('memory:', 'url-mem'), '≤ 0.6 ms']);
    const db = path.join(dir, 'tasks.db');
    rows.push([`\`resume\` by taskId, store \`sqlite:\` (fsync on)`, await resumeBench(`sqlite:${db}`, 'sqlite'), '≤ 1 ms']);
  }
  fs.rmSync(dir, { recursive: true, force: true });

  const cpu = os.cpus()[0] ? os.cpus()[0].model.trim() : 'unknown CPU';
  const when = new Date().toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
  const load = os.loadavg()[0].toFixed(1);
  const busy = os.loadavg()[0] > os.cpus().length / 2 ? ' (a busy machine: the means and p99s carry scheduling delays)' : '';
  const fmt = (ms) => `${ms.toFixed(3)} ms`;
  // "≤ 0.5 ms" against the p50; a row without a target has no verdict
  const verdict = (p50, target) => {
    const m = /≤ ([0-9.]+) ms/.exec(target);
    return m ? (p50 <= Number(m[1]) ? 'met' : 'missed') : '—';
  };
  const lines = [
    '## Node package (`node bindings/node/bench.js`)',
    '',
    `Measured ${when} on ${os.cpus().length} cores (${cpu}), release addon (\`node build.js --release\`), Node ${process.version}; load average ${load} at the end${busy}.`,
    '',
    `Each call awaited on its own, as a request handler would, ${N} times after ${N / 10} warm-up calls; time from the call to its promise settling. ` +
      "The resume is of a task paused at its one fetch after a `Date.now()` (a two-entry journal replayed): only `taskId` and the response are given, so vmState and code are loaded from the storage, and the completed task is saved back. " +
      'The targets are for the typical call (p50).',
    '',
    '| measure | mean | p50 | p99 | target | verdict |',
    '|---|---:|---:|---:|---|---|',
    ...rows.map(([what, s, target]) => `| ${what} | ${fmt(s.mean)} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${target} | ${verdict(s.p50, target)} |`),
  ];
  const section = lines.join('\n');
  console.log(section);
  if (write) {
    const file = path.join(__dirname, '..', '..', 'docs', 'benchmarks.md');
    const text = fs.readFileSync(file, 'utf8');
    const start = '<!-- bench:node -->';
    const end = '<!-- /bench:node -->';
    const block = `${start}\n${section}\n${end}`;
    const i = text.indexOf(start);
    const j = text.indexOf(end);
    const next = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : text.trimEnd() + '\n' + block + '\n';
    fs.writeFileSync(file, next);
    console.log(`wrote the bench:node section of ${path.relative(process.cwd(), file)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
