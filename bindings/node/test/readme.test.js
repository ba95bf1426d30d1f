'use strict';
// The original README's examples, run unchanged in meaning through the package.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { SequentialFlow, InMemoryStorage } = require('..');

test('Basic Execution and Resume Execution', async () => {
  const result = await SequentialFlow.execute({
    id: 'my-task',
    code: `
    const userId = 123;
    const user = fetch('https://api.example.com/user/' + userId);
    user.name
  `,
  });
  assert.equal(result.status, 'paused');
  assert.equal(result.fetchRequest.url, 'https://api.example.com/user/123');
  assert.equal(typeof result.vmState, 'string');

  const resumed = await SequentialFlow.resume({
    taskId: result.id,
    vmState: result.vmState,
    originalCode: result.code,
    fetchResponse: { data: { id: 123, name: 'Alice' } },
  });
  assert.equal(resumed.status, 'completed');
  assert.equal(resumed.result, 'Alice');
});

// A loopback server answering the example's relative URLs under /api/.
async function apiServer() {
  const seen = [];
  const server = http.createServer((req, res) => {
    seen.push(req.url);
    const url = new URL(req.url, 'http://localhost');
    let body;
    if (url.pathname === '/api/user/1') body = { id: 42, name: 'Alice' };
    else if (url.pathname === '/api/posts' && url.searchParams.get('userId') === '42') body = [1, 2, 3, 4, 5].map((id) => ({ id }));
    else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, seen, base: `http://127.0.0.1:${server.address().port}/` };
}

// What a caller does with a paused task: perform its fetch, resume with the response.
async function perform(fetchRequest, base) {
  const res = await fetch(new URL(fetchRequest.url, base), fetchRequest.options);
  return { data: await res.json(), status: res.status, statusText: res.statusText };
}

test('Multiple Sequential Fetches, relative URLs answered by a loopback server', async (t) => {
  const { server, seen, base } = await apiServer();
  t.after(() => server.close());
  SequentialFlow.setDefaultStorage(new InMemoryStorage());

  const result1 = await SequentialFlow.execute({
    id: 'task-1',
    code: `
    const user = fetch('api/user/1');
    const posts = fetch('api/posts?userId=' + user.id);
    { user: user.name, postCount: posts.length }
  `,
  });
  // First pause at first fetch, with the URL as the code wrote it.
  assert.equal(result1.status, 'paused');
  assert.equal(result1.fetchRequest.url, 'api/user/1');

  const result2 = await SequentialFlow.resume({
    taskId: result1.id,
    vmState: result1.vmState,
    originalCode: result1.code,
    fetchResponse: await perform(result1.fetchRequest, base),
  });
  // Second pause at second fetch.
  assert.equal(result2.status, 'paused');
  assert.equal(result2.fetchRequest.url, 'api/posts?userId=42');

  const result3 = await SequentialFlow.resume({
    taskId: result2.id,
    vmState: result2.vmState,
    originalCode: result2.code,
    fetchResponse: await perform(result2.fetchRequest, base),
  });
  assert.equal(result3.status, 'completed', result3.error);
  assert.deepEqual(result3.result, { user: 'Alice', postCount: 5 });
  assert.deepEqual(seen, ['/api/user/1', '/api/posts?userId=42']);
});

test('options.baseUrl resolves the relative URLs in fetchRequest', async (t) => {
  const { server, base } = await apiServer();
  t.after(() => server.close());
  let task = await SequentialFlow.execute(
    { code: "const user = fetch('api/user/1'); const posts = fetch('api/posts?userId=' + user.id); ({ user: user.name, postCount: posts.length })" },
    { baseUrl: base }
  );
  assert.equal(task.fetchRequest.url, `${base}api/user/1`);
  while (task.status === 'paused') {
    // Only the task id and the response: vmState and code come from the storage.
    task = await SequentialFlow.resume({ taskId: task.id, fetchResponse: await perform(task.fetchRequest) });
  }
  assert.deepEqual(task.result, { user: 'Alice', postCount: 5 });
});

test('In-Memory Storage (Default): a task that needs no fetch completes at once', async () => {
  const storage = new InMemoryStorage();
  SequentialFlow.setDefaultStorage(storage);
  const result = await SequentialFlow.execute({ id: 'task-1', code: 'const x = 5; x * 2' });
  assert.equal(result.status, 'completed');
  assert.equal(result.result, 10);
  assert.equal((await storage.load('task-1')).result, 10);
});

test('an id is generated (UUID v7) and name kept when execute is given none', async () => {
  const task = await SequentialFlow.execute({ name: 'lookup', code: "fetch('https://api.example.com/x').v" });
  assert.match(task.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(task.name, 'lookup');
  const done = await SequentialFlow.resume({ taskId: task.id, fetchResponse: { data: { v: 1 } } });
  assert.equal(done.name, 'lookup');
  assert.equal(done.result, 1);
});

test('Date.now() and Math.random() are answered inside: the task pauses only at fetch', async () => {
  const task = await SequentialFlow.execute({
    code: "const t = Date.now(); const r = Math.random(); const u = fetch('api/u'); ({ t, r, name: u.name })",
  });
  assert.equal(task.status, 'paused');
  assert.equal(task.fetchRequest.url, 'api/u');
  const done = await SequentialFlow.resume({ taskId: task.id, fetchResponse: { data: { name: 'Alice' } } });
  assert.equal(done.result.name, 'Alice');
  assert.ok(Math.abs(done.result.t - Date.now()) < 60_000);
  assert.ok(done.result.r >= 0 && done.result.r < 1);
});
