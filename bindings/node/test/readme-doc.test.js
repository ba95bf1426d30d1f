'use strict';
// The README's own code blocks, run as written: each `// <expr> === <value>` comment in them is
// checked as an assertion.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

function block(heading) {
  const at = readme.indexOf(`\n### ${heading}\n`);
  assert.ok(at >= 0, `README.md has no "### ${heading}" section`);
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `README.md's "${heading}" section has no js block`);
  return m[1];
}

function runnable(code) {
  return code.replace(/^(\s*)\/\/ (.+?) === (.+)$/gm, (_, indent, lhs, rhs) => `${indent}assert.deepStrictEqual(${lhs}, ${rhs});`);
}

const AsyncFunction = (async () => {}).constructor;

async function run(...headings) {
  let code = runnable(headings.map(block).join('\n'));
  // A block that continues an earlier one (as the README's do) gets its require.
  if (!code.includes("require('sequential-flow')")) code = "const { SequentialFlow } = require('sequential-flow');\n" + code;
  const asserted = (code.match(/assert\.deepStrictEqual/g) || []).length;
  // The package's own name resolves here (Node's self-reference through package.json
  // "exports"), so the examples' require calls go through the exports map as a user's would.
  const localRequire = (name) => {
    if (name === 'sequential-flow' || name === 'sequential-flow/storage') return require(name);
    throw new Error(`README example requires ${name}, which this test does not provide`);
  };
  await new AsyncFunction('require', 'assert', code)(localRequire, assert);
  return asserted;
}

test('README: Basic Execution, then Resume Execution', async () => {
  assert.equal(await run('Basic Execution', 'Resume Execution'), 4);
});

test('README: Multiple Sequential Fetches', async () => {
  assert.equal(await run('Multiple Sequential Fetches'), 1);
});

test('README: In-Memory Storage (Default)', async () => {
  await run('In-Memory Storage (Default)');
});

test('README: Custom Storage', async () => {
  await run('Custom Storage');
});

test('README: Storage with TTL (in a scratch folder)', async (t) => {
  const native = require(path.join(root, 'sequential-flow.node'));
  if (typeof native.openStore !== 'function') return t.skip('this addon has no store URLs');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sequential-flow-readme-'));
  const cwd = process.cwd();
  process.chdir(dir);
  t.after(() => {
    process.chdir(cwd);
    const { SequentialFlow, InMemoryStorage } = require('sequential-flow');
    SequentialFlow.setDefaultStorage(new InMemoryStorage());
    fs.rmSync(dir, { recursive: true, force: true });
  });
  assert.equal(await run('Storage with TTL'), 1);
  assert.ok(fs.existsSync(path.join(dir, 'flow-tasks.db')));
});
