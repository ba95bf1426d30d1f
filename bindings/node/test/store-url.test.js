'use strict';
// Store URLs, opened natively by sequential-flow-store: a pause/resume across Node processes
// through SQLite, TTL expiry and tombstones, bad URLs.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { execFile } = require('node:child_process');
const { setTimeout: tick } = require('node:timers/promises');
const { SequentialFlow } = require('..');

const CLI = path.join(__dirname, '..', 'test-support', 'flow-cli.js');

function scratch(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sequential-flow-store-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Runs one call in a new Node process; on failure the message shows the command and its output.
function inProcess(store, call, arg) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, store, call, JSON.stringify(arg)], (error, stdout, stderr) => {
      if (error) return reject(new Error(`node flow-cli.js ${store} ${call} failed: ${error.message}\nstdout: ${stdout}\nstderr: ${stderr}`));
      try {
        resolve(JSON.parse(stdout));
      } catch (e) {
        reject(new Error(`node flow-cli.js ${store} ${call} printed no JSON: ${stdout}\nstderr: ${stderr}`));
      }
    });
  });
}

test('pause in one Node process, resume in others, through a SQLite store URL', async (t) => {
  const dir = scratch(t);
  const store = `sqlite:${path.join(dir, 'tasks.db')}`;
  const server = http.createServer((req, res) => {
    const body = req.url === '/api/user/1' ? { id: 42, name: 'Alice' } : req.url === '/api/posts?userId=42' ? [1, 2, 3, 4, 5] : null;
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const base = `http://127.0.0.1:${server.address().port}/`;

  let task = await inProcess(store, 'execute', {
    name: 'multiple fetches',
    code: "const user = fetch('api/user/1');\nconst posts = fetch('api/posts?userId=' + user.id);\n{ user: user.name, postCount: posts.length }",
  });
  assert.equal(task.status, 'paused', JSON.stringify(task));
  const id = task.id;
  const urls = [];
  while (task.status === 'paused') {
    urls.push(task.fetchRequest.url);
    const res = await fetch(new URL(task.fetchRequest.url, base));
    // Only the id and the response cross to the next process: the rest is in the store.
    task = await inProcess(store, 'resume', { taskId: id, fetchResponse: { data: await res.json(), status: res.status } });
  }
  assert.deepEqual(urls, ['api/user/1', 'api/posts?userId=42']);
  assert.equal(task.status, 'completed', JSON.stringify(task));
  assert.deepEqual(task.result, { user: 'Alice', postCount: 5 });
  assert.equal(task.name, 'multiple fetches');
  const stored = await inProcess(store, 'get', { id });
  assert.deepEqual(stored.result, { user: 'Alice', postCount: 5 });
  // And from this process too.
  assert.equal((await SequentialFlow.getTask(id, { storage: store })).status, 'completed');
});

test('store URL: TTL expiry and deletion are named on resume, invisible to getTask', async (t) => {
  const dir = scratch(t);
  for (const storage of ['memory:', `sqlite:${path.join(dir, 'ttl.db')}`, path.join(dir, 'folder-store')]) {
    const code = "fetch('https://api.example.com/u').name";
    const task = await SequentialFlow.execute({ id: 'ttl', code }, { storage, ttl: 5 });
    assert.equal(task.expiresAt - task.updatedAt, 5, storage);
    while (Date.now() <= task.expiresAt) await tick(2);
    assert.equal(await SequentialFlow.getTask('ttl', { storage }), null, storage);
    await assert.rejects(SequentialFlow.resume({ taskId: 'ttl', fetchResponse: { data: { name: 'A' } } }, { storage }), (e) => {
      assert.equal(e.code, 'EXPIRED', `${storage}: ${e.message}`);
      assert.equal(e.taskId, 'ttl');
      assert.equal(e.expiredAt, task.expiresAt);
      assert.ok(e.message.includes(new Date(task.expiresAt).toISOString()), e.message);
      return true;
    });

    await SequentialFlow.execute({ id: 'gone', code }, { storage });
    assert.equal(await SequentialFlow.deleteTask('gone', { storage }), true);
    await assert.rejects(SequentialFlow.resume({ taskId: 'gone', fetchResponse: { data: {} } }, { storage }), { code: 'DELETED', taskId: 'gone' });
    await assert.rejects(SequentialFlow.resume({ taskId: 'never', fetchResponse: { data: {} } }, { storage }), { code: 'NOT_FOUND' });
  }
});

test("store URL: another task's vmState and an edited one are refused, nothing stored", async () => {
  const storage = 'memory:';
  const code = "const t = Date.now(); fetch('https://api.example.com/u').n + t";
  const a = await SequentialFlow.execute({ id: 'url-a', code }, { storage });
  const b = await SequentialFlow.execute({ id: 'url-b', code }, { storage });
  await assert.rejects(
    SequentialFlow.resume({ taskId: 'url-b', vmState: a.vmState, originalCode: code, fetchResponse: { data: { n: 1 } } }, { storage }),
    { code: 'INVALID' }
  );
  const edited = a.vmState.replace(/"result":\{"ok":(\d+)\}/, (_, n) => `"result":{"ok":${Number(n) + 1}}`);
  assert.notEqual(edited, a.vmState);
  await assert.rejects(
    SequentialFlow.resume({ taskId: 'url-a', vmState: edited, originalCode: code, fetchResponse: { data: { n: 1 } } }, { storage }),
    { code: 'INVALID', message: /checksum/ }
  );
  assert.equal((await SequentialFlow.getTask('url-a', { storage })).vmState, a.vmState);
  assert.equal((await SequentialFlow.getTask('url-b', { storage })).vmState, b.vmState);
});

test('bad store URLs are named in the error', async () => {
  await assert.rejects(SequentialFlow.execute({ code: '1' }, { storage: 'ftp://tasks' }), (e) => {
    assert.equal(e.code, 'INVALID_URL');
    assert.match(e.message, /invalid task store URL "ftp:\/\/tasks": expected .*sqlite:PATH/);
    return true;
  });
  await assert.rejects(SequentialFlow.getTask('x', { storage: 'redis://127.0.0.1:1' }), (e) => {
    assert.equal(e.code, 'UNREACHABLE', e.message);
    assert.match(e.message, /redis:\/\/127\.0\.0\.1:1/);
    return true;
  });
});
