'use strict';
// Storage objects: a CustomStorage of our own, InMemoryStorage, TTL expiry.
const test = require('node:test');
const assert = require('node:assert/strict');
const { setTimeout: tick } = require('node:timers/promises');
const { SequentialFlow, InMemoryStorage } = require('..');
const { CustomStorage } = require('../storage');

const CODE = "const a = fetch('https://api.example.com/a'); const b = fetch('https://api.example.com/b?x=' + a.x); a.x + b.y";

// A storage of our own that keeps copies of what it is given (as a database would) and
// records every call.
class MapStorage extends CustomStorage {
  constructor() {
    super();
    this.rows = new Map();
    this.calls = [];
  }
  async save(task) {
    this.calls.push(['save', task.id, task.status]);
    this.rows.set(task.id, JSON.stringify(task));
  }
  async load(taskId) {
    this.calls.push(['load', taskId]);
    const row = this.rows.get(taskId);
    return row === undefined ? null : JSON.parse(row);
  }
  async delete(taskId) {
    this.calls.push(['delete', taskId]);
    return this.rows.delete(taskId);
  }
}

test('Custom Storage: every execute/resume saves the task; resume loads vmState and code from it', async () => {
  const storage = new MapStorage();
  SequentialFlow.setDefaultStorage(storage);
  const paused = await SequentialFlow.execute({ id: 'custom-1', name: 'sum', code: CODE });
  assert.equal(paused.status, 'paused');
  const saved = JSON.parse(storage.rows.get('custom-1'));
  assert.equal(saved.vmState, paused.vmState);
  assert.equal(saved.code, CODE);
  assert.equal(saved.name, 'sum');
  assert.equal(saved.expiresAt - saved.updatedAt, 2 * 60 * 60 * 1000);

  const second = await SequentialFlow.resume({ taskId: 'custom-1', fetchResponse: { data: { x: 2 } } });
  assert.equal(second.fetchRequest.url, 'https://api.example.com/b?x=2');
  const done = await SequentialFlow.resume({ taskId: 'custom-1', fetchResponse: { data: { y: 40 } } });
  assert.equal(done.result, 42);
  assert.equal(done.name, 'sum');
  assert.equal(done.createdAt, paused.createdAt);
  assert.deepEqual(storage.calls, [
    ['save', 'custom-1', 'paused'],
    ['load', 'custom-1'],
    ['save', 'custom-1', 'paused'],
    ['load', 'custom-1'],
    ['save', 'custom-1', 'completed'],
  ]);

  assert.equal((await SequentialFlow.getTask('custom-1')).result, 42);
  assert.equal(await SequentialFlow.deleteTask('custom-1'), true);
  assert.equal(await SequentialFlow.getTask('custom-1'), null);
  assert.equal(await SequentialFlow.deleteTask('custom-1'), false);
  await assert.rejects(SequentialFlow.resume({ taskId: 'custom-1', fetchResponse: { data: {} } }), {
    name: 'SequentialFlowError',
    code: 'NOT_FOUND',
    message: /no task "custom-1"/,
  });
});

test('options.storage for one call; saveToStorage: false saves nothing', async () => {
  const mine = new MapStorage();
  SequentialFlow.setDefaultStorage(new InMemoryStorage());
  const a = await SequentialFlow.execute({ id: 'one-call', code: CODE }, { storage: mine });
  assert.ok(mine.rows.has('one-call'));
  assert.equal(await SequentialFlow.getTask('one-call'), null);
  assert.equal((await SequentialFlow.getTask('one-call', { storage: mine })).status, 'paused');

  const other = new MapStorage();
  const b = await SequentialFlow.execute({ id: 'unsaved', code: CODE }, { storage: other, saveToStorage: false });
  assert.equal(b.status, 'paused');
  const c = await SequentialFlow.resume(
    { taskId: 'unsaved', vmState: b.vmState, originalCode: b.code, fetchResponse: { data: { x: 1 } } },
    { storage: other, saveToStorage: false }
  );
  assert.equal(c.status, 'paused');
  assert.equal(other.calls.length, 0);
  assert.ok(a.vmState);
});

test('a CustomStorage subclass that implements nothing fails with a message naming the method', async () => {
  class Empty extends CustomStorage {}
  await assert.rejects(SequentialFlow.execute({ code: '1' }, { storage: new Empty() }), /Empty\.save\(task\) is not implemented/);
});

test('TTL: an expired task is invisible, and resuming it names the id and when it expired', async () => {
  for (const storage of [new InMemoryStorage(), new MapStorage()]) {
    const task = await SequentialFlow.execute({ id: 'short-lived', code: CODE }, { storage, ttl: 5 });
    assert.equal(task.expiresAt - task.updatedAt, 5);
    // Wait on the clock itself (not a guessed sleep) until the TTL has run out.
    while (Date.now() <= task.expiresAt) await tick(2);
    await assert.rejects(
      SequentialFlow.resume({ taskId: 'short-lived', vmState: task.vmState, originalCode: CODE, fetchResponse: { data: { x: 1 } } }, { storage }),
      (e) => {
        assert.equal(e.code, 'EXPIRED');
        assert.equal(e.taskId, 'short-lived');
        assert.equal(e.expiredAt, task.expiresAt);
        assert.ok(e.message.includes(`task "short-lived" expired at ${new Date(task.expiresAt).toISOString()}`), e.message);
        return true;
      }
    );
    // Purged on the way: now it is simply unknown.
    assert.equal(await storage.load('short-lived'), null);
    assert.equal(await SequentialFlow.getTask('short-lived', { storage }), null);
  }
});

test('TTL: a resume keeps the task\'s TTL unless given a new one', async () => {
  const storage = new InMemoryStorage();
  const task = await SequentialFlow.execute({ id: 'ttl', code: CODE }, { storage, ttl: 60_000 });
  const next = await SequentialFlow.resume({ taskId: 'ttl', fetchResponse: { data: { x: 1 } } }, { storage });
  assert.equal(next.ttl, 60_000);
  assert.equal(next.expiresAt - next.updatedAt, 60_000);
  const last = await SequentialFlow.resume({ taskId: 'ttl', fetchResponse: { data: { y: 1 } } }, { storage, ttl: 1000 });
  assert.equal(last.expiresAt - last.updatedAt, 1000);
  assert.equal(last.result, 2);
  assert.ok(task.createdAt <= last.createdAt);
});
