'use strict';
// RedisStorage against the real Redis on 127.0.0.1:6379 (skipped with one line when it is not
// running, unless REQUIRE_REDIS=1).
const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: tick } = require('node:timers/promises');
const { SequentialFlow } = require('..');
const { RedisStorage } = require('../storage');
const { connect } = require('../test-support/resp');

async function client(t) {
  try {
    const c = await connect();
    t.after(() => c.quit());
    return c;
  } catch (e) {
    if (process.env.REQUIRE_REDIS === '1') throw new Error(`REQUIRE_REDIS=1 but Redis at 127.0.0.1:6379 is unreachable: ${e.message}`);
    t.skip(`no Redis at 127.0.0.1:6379 (${e.code || e.message}); set REQUIRE_REDIS=1 to fail instead`);
    return null;
  }
}

const CODE = "const u = fetch('api/user/1'); const p = fetch('api/posts?userId=' + u.id); ({ user: u.name, postCount: p.length })";

test('RedisStorage: tasks saved as JSON with a PX expiry, resumed by id, deleted', async (t) => {
  const redis = await client(t);
  if (!redis) return;
  const prefix = `sequential-flow-test:${process.pid}:${Date.now()}:`;
  const storage = new RedisStorage(redis, { prefix });
  const paused = await SequentialFlow.execute({ id: 'r1', code: CODE }, { storage, ttl: 60_000 });
  const raw = JSON.parse(await redis.get(prefix + 'r1'));
  assert.equal(raw.vmState, paused.vmState);
  const pttl = await redis.send('PTTL', prefix + 'r1');
  assert.ok(pttl > 0 && pttl <= 60_000, `PTTL ${pttl}`);

  const second = await SequentialFlow.resume({ taskId: 'r1', fetchResponse: { data: { id: 42, name: 'Alice' } } }, { storage });
  assert.equal(second.fetchRequest.url, 'api/posts?userId=42');
  const done = await SequentialFlow.resume({ taskId: 'r1', fetchResponse: { data: { length: 5 } } }, { storage });
  assert.deepEqual(done.result, { user: 'Alice', postCount: 5 });
  assert.equal((await SequentialFlow.getTask('r1', { storage })).status, 'completed');
  assert.equal(await SequentialFlow.deleteTask('r1', { storage }), true);
  assert.equal(await redis.get(prefix + 'r1'), null);
});

test('RedisStorage: Redis expires the key with the task', async (t) => {
  const redis = await client(t);
  if (!redis) return;
  const prefix = `sequential-flow-test:${process.pid}:${Date.now()}:`;
  const storage = new RedisStorage(redis, { prefix });
  const task = await SequentialFlow.execute({ id: 'r2', code: CODE }, { storage, ttl: 20 });
  // Wait for Redis itself to drop the key (bounded: 5 s).
  const deadline = Date.now() + 5000;
  while ((await redis.get(prefix + 'r2')) !== null && Date.now() < deadline) await tick(5);
  assert.equal(await redis.get(prefix + 'r2'), null);
  assert.equal(await SequentialFlow.getTask('r2', { storage }), null);
  await assert.rejects(SequentialFlow.resume({ taskId: 'r2', fetchResponse: { data: {} } }, { storage }), { code: 'NOT_FOUND' });
  assert.ok(task.expiresAt);
});
