'use strict';
// SQLStorage against the real PostgreSQL on 127.0.0.1:5432, through a query function that runs
// psql (its :'var' interpolation quotes each parameter as a literal). Skipped with one line when
// PostgreSQL is not there, unless REQUIRE_POSTGRES=1.
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const { SequentialFlow } = require('..');
const { SQLStorage } = require('../storage');

function psql(sql, params = []) {
  const args = ['-h', '127.0.0.1', '-U', 'postgres', '-d', 'postgres', '-X', '-At', '-v', 'ON_ERROR_STOP=1'];
  params.forEach((p, i) => args.push('-v', `p${i + 1}=${p}`));
  const script = sql.replace(/\$(\d+)/g, (_, n) => `:'p${n}'`) + ';\n';
  return new Promise((resolve, reject) => {
    const child = execFile('psql', [...args, '-f', '-'], (error, stdout, stderr) => {
      if (error) return reject(new Error(`psql: ${stderr || error.message}`));
      const lines = stdout.split('\n').filter((l) => l !== '');
      if (/^\s*SELECT/i.test(sql)) return resolve({ rows: lines.map((data) => ({ data })) });
      const tag = lines[lines.length - 1] || '';
      resolve({ rows: [], rowCount: Number(tag.split(' ').pop()) || 0 });
    });
    child.stdin.end(script);
  });
}

test('SQLStorage on PostgreSQL: the README table, upserts, resume by id, expiry, delete', async (t) => {
  try {
    await psql('SELECT 1');
  } catch (e) {
    if (process.env.REQUIRE_POSTGRES === '1') throw new Error(`REQUIRE_POSTGRES=1 but PostgreSQL at 127.0.0.1:5432 is unreachable: ${e.message}`);
    return t.skip(`no PostgreSQL at 127.0.0.1:5432 via psql (${e.message.split('\n')[0]}); set REQUIRE_POSTGRES=1 to fail instead`);
  }
  const schema = `sequential_flow_node_${process.pid}_${Date.now()}`;
  await psql(`CREATE SCHEMA ${schema}`);
  t.after(() => psql(`DROP SCHEMA ${schema} CASCADE`));
  const table = `${schema}.sequential_flow_tasks`;
  await psql(`CREATE TABLE ${table} (id VARCHAR(255) PRIMARY KEY, data JSONB NOT NULL, created_at TIMESTAMP, expires_at TIMESTAMP)`);

  const storage = new SQLStorage((sql, params) => psql(sql, params), { tableName: table });
  const code = "const u = fetch('api/user/1'); const p = fetch('api/posts?userId=' + u.id); ({ user: u.name, postCount: p.length })";
  const paused = await SequentialFlow.execute({ id: 'sql-1', name: "it's \"quoted\"", code }, { storage });
  assert.equal(paused.status, 'paused');
  await SequentialFlow.resume({ taskId: 'sql-1', fetchResponse: { data: { id: 42, name: 'Alice' } } }, { storage });
  const done = await SequentialFlow.resume({ taskId: 'sql-1', fetchResponse: { data: { length: 5 } } }, { storage });
  assert.deepEqual(done.result, { user: 'Alice', postCount: 5 });
  assert.equal(done.name, "it's \"quoted\"");
  const rows = await psql(`SELECT data->>'status' FROM ${table} WHERE id = $1`, ['sql-1']);
  assert.deepEqual(rows.rows, [{ data: 'completed' }]);

  // A task whose TTL ran out is refused, then deleted; purgeExpired removes expired rows.
  const short = await SequentialFlow.execute({ id: 'sql-2', code }, { storage, ttl: 1 });
  while (Date.now() <= short.expiresAt) await new Promise((r) => setTimeout(r, 2));
  await assert.rejects(SequentialFlow.resume({ taskId: 'sql-2', fetchResponse: { data: {} } }, { storage }), { code: 'EXPIRED', taskId: 'sql-2' });
  assert.equal(await storage.load('sql-2'), null);
  await SequentialFlow.execute({ id: 'sql-3', code }, { storage, ttl: 1 });
  await new Promise((r) => setTimeout(r, 5));
  await storage.purgeExpired();
  assert.equal(await storage.load('sql-3'), null);

  assert.equal(await SequentialFlow.deleteTask('sql-1', { storage }), true);
  assert.equal((await psql(`SELECT id FROM ${table}`)).rows.length, 0);
});
