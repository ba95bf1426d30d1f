'use strict';
// Error paths and bad input.
const test = require('node:test');
const assert = require('node:assert/strict');
const { SequentialFlow, InMemoryStorage } = require('..');
const { SQLStorage, RedisStorage } = require('../storage');

test('a script that throws ends in status error with the message string and errorInfo', async () => {
  const storage = new InMemoryStorage();
  const paused = await SequentialFlow.execute(
    { id: 'fails', code: "const u = fetch('https://api.example.com/u'); if (!u.ok) throw new TypeError('user ' + u.id + ' missing'); u" },
    { storage }
  );
  const failed = await SequentialFlow.resume({ taskId: 'fails', fetchResponse: { data: { id: 7, ok: false } } }, { storage });
  assert.equal(failed.status, 'error');
  assert.equal(failed.error, 'user 7 missing');
  assert.equal(failed.errorInfo.name, 'TypeError');
  assert.equal(failed.errorInfo.message, 'user 7 missing');
  assert.match(failed.errorInfo.stack, /task\.js:1/);
  assert.equal((await storage.load('fails')).status, 'error');
  assert.equal(paused.status, 'paused');
  await assert.rejects(SequentialFlow.resume({ taskId: 'fails', fetchResponse: { data: {} } }, { storage }), {
    code: 'NOT_PAUSED',
    message: 'task "fails" is error, not paused: there is nothing to resume',
  });
});

test('a syntax error is an error result naming line and column', async () => {
  const r = await SequentialFlow.execute({ code: 'const = 1' });
  assert.equal(r.status, 'error');
  assert.match(r.error, /./);
  assert.equal(r.errorInfo.name, 'SyntaxError');
});

test('an edited vmState is refused and nothing is stored', async () => {
  const storage = new InMemoryStorage();
  const code = "const t = Date.now(); const u = fetch('https://api.example.com/u'); t";
  const paused = await SequentialFlow.execute({ id: 'edited', code }, { storage });
  const state = JSON.parse(paused.vmState);
  const entry = state.body.journal.find((e) => typeof e.result === 'object' || e.result !== undefined);
  assert.ok(entry, paused.vmState);
  const edited = paused.vmState.replace(/"result":\{"ok":(\d+)\}/, (_, n) => `"result":{"ok":${Number(n) + 1}}`);
  assert.notEqual(edited, paused.vmState, 'the recorded clock value was edited');
  const before = await storage.load('edited');
  await assert.rejects(
    SequentialFlow.resume({ taskId: 'edited', vmState: edited, originalCode: code, fetchResponse: { data: {} } }, { storage }),
    { code: 'INVALID', message: /checksum/ }
  );
  assert.deepEqual(await storage.load('edited'), before);
});

test("a taskId with another task's vmState is refused", async () => {
  const storage = new InMemoryStorage();
  const code = "fetch('https://api.example.com/u').n";
  const a = await SequentialFlow.execute({ id: 'task-a', code }, { storage });
  await SequentialFlow.execute({ id: 'task-b', code }, { storage });
  await assert.rejects(
    SequentialFlow.resume({ taskId: 'task-b', vmState: a.vmState, originalCode: code, fetchResponse: { data: { n: 1 } } }, { storage }),
    { code: 'INVALID', message: 'invalid vmState: it belongs to task "task-a", not "task-b"' }
  );
  assert.equal((await storage.load('task-b')).status, 'paused');
});

test('wrong argument types are TypeErrors naming the argument', async () => {
  const cases = [
    [() => SequentialFlow.execute(), /^request must be an object/],
    [() => SequentialFlow.execute('const x = 1'), /^request must be an object like \{id, name, code\}; got the string "const x = 1"/],
    [() => SequentialFlow.execute({ id: 'x' }), /^request\.code must be a non-empty string; got undefined/],
    [() => SequentialFlow.execute({ code: 1 }), /^request\.code must be a non-empty string; got number 1/],
    [() => SequentialFlow.execute({ code: '1', id: 5 }), /^request\.id must be a non-empty string or undefined; got number 5/],
    [() => SequentialFlow.execute({ code: '1', name: {} }), /^request\.name must be a non-empty string/],
    [() => SequentialFlow.execute({ code: '1' }, 'fast'), /^execute options must be an object/],
    [() => SequentialFlow.execute({ code: '1' }, { ttl: '2h' }), /^options\.ttl must be a positive number of milliseconds/],
    [() => SequentialFlow.execute({ code: '1' }, { ttl: -1 }), /^options\.ttl must be a positive number/],
    [() => SequentialFlow.execute({ code: '1' }, { storage: {} }), /^options\.storage must be a store URL string/],
    [() => SequentialFlow.execute({ code: '1' }, { saveToStorage: 'no' }), /^options\.saveToStorage must be a boolean/],
    [() => SequentialFlow.resume(null), /^request must be an object like \{taskId, vmState, originalCode, fetchResponse\}; got null/],
    [() => SequentialFlow.resume({}), /^request\.taskId must be a non-empty string \(or request\.vmState given\)/],
    [() => SequentialFlow.resume({ taskId: 7 }), /^request\.taskId must be a non-empty string or undefined; got number 7/],
    [() => SequentialFlow.resume({ taskId: 't', vmState: {} }), /^request\.vmState must be a non-empty string/],
    [() => SequentialFlow.resume({ taskId: 't', fetchResponse: 'ok' }), /^request\.fetchResponse must be an object/],
    [() => SequentialFlow.resume({ taskId: 't', responses: {} }), /^request\.responses must be an array/],
    [() => SequentialFlow.getTask(42), /^taskId must be a non-empty string; got number 42/],
    [() => SequentialFlow.deleteTask(), /^taskId must be a non-empty string; got undefined/],
  ];
  for (const [call, message] of cases) {
    await assert.rejects(call, (e) => {
      assert.ok(e instanceof TypeError, `${call}: ${e}`);
      assert.match(e.message, message);
      return true;
    });
  }
  const sync = [
    [() => SequentialFlow.setDefaultStorage(42), /^storage must be a store URL string .*; got number 42/],
    [() => SequentialFlow.setDefaultStorage({ save() {} }), /^storage must be a store URL string/],
    [() => new SQLStorage('SELECT 1'), /^query must be a function/],
    [() => new SQLStorage(async () => [], { tableName: 'x; DROP TABLE y' }), /^options\.tableName must be an SQL identifier/],
    [() => new RedisStorage({}), /^client must be a connected Redis client/],
  ];
  for (const [call, message] of sync) assert.throws(call, (e) => e instanceof TypeError && message.test(e.message));
});
