'use strict';
// Storage classes for SequentialFlow.setDefaultStorage / options.storage. A storage is any
// object with async save(task), load(id) and delete(id); SequentialFlow decides what TTLs,
// expiry and resuming mean (see index.js), a storage only keeps task objects by id.

const { InMemoryStorage } = require('./index.js');

/** The base class of a storage of your own: implement save, load and delete. */
class CustomStorage {
  async save(task) {
    throw new Error(`${this.constructor.name}.save(task) is not implemented: a CustomStorage subclass must store the task object under task.id`);
  }

  async load(taskId) {
    throw new Error(`${this.constructor.name}.load(taskId) is not implemented: a CustomStorage subclass must return the saved task object or null`);
  }

  async delete(taskId) {
    throw new Error(`${this.constructor.name}.delete(taskId) is not implemented: a CustomStorage subclass must remove the task`);
  }
}

function ttlLeft(task) {
  return Math.max(1, Math.ceil(task.expiresAt - Date.now()));
}

/**
 * Tasks in Redis through a connected node-redis client (`redis.createClient(...)`, `await
 * client.connect()`): one JSON string per task under `prefix + id`, expiring with the task (PX).
 */
class RedisStorage extends CustomStorage {
  constructor(client, options = {}) {
    super();
    if (client === null || typeof client !== 'object' || typeof client.set !== 'function' || typeof client.get !== 'function' || typeof client.del !== 'function') {
      throw new TypeError('client must be a connected Redis client with set, get and del (redis.createClient(...) after connect())');
    }
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object like {prefix}');
    this.client = client;
    this.prefix = options.prefix ?? 'sequential-flow:task:';
  }

  async save(task) {
    await this.client.set(this.prefix + task.id, JSON.stringify(task), { PX: ttlLeft(task) });
  }

  async load(taskId) {
    const text = await this.client.get(this.prefix + taskId);
    return text == null ? null : JSON.parse(text);
  }

  async delete(taskId) {
    return Number(await this.client.del(this.prefix + taskId)) > 0;
  }
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;

/**
 * Tasks in an SQL table through your query function `(sql, params) => Promise<result>` (pg's
 * `pool.query`, mysql2's `pool.query`, a SQLite driver's). The table:
 *   CREATE TABLE sequential_flow_tasks (id VARCHAR(255) PRIMARY KEY, data JSONB NOT NULL,
 *     created_at TIMESTAMP, expires_at TIMESTAMP);
 * `dialect` picks the placeholders and the upsert: 'postgres' ($1, default), 'sqlite' (?),
 * 'mysql' (?, ON DUPLICATE KEY UPDATE).
 */
class SQLStorage extends CustomStorage {
  constructor(query, options = {}) {
    super();
    if (typeof query !== 'function') throw new TypeError('query must be a function (sql, params) => Promise of the result, like (sql, params) => pool.query(sql, params)');
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object like {tableName, dialect}');
    const table = options.tableName ?? 'sequential_flow_tasks';
    if (typeof table !== 'string' || !IDENTIFIER.test(table)) throw new TypeError(`options.tableName must be an SQL identifier like "sequential_flow_tasks"; got ${JSON.stringify(table)}`);
    const dialect = options.dialect ?? 'postgres';
    if (!['postgres', 'sqlite', 'mysql'].includes(dialect)) throw new TypeError(`options.dialect must be "postgres", "sqlite" or "mysql"; got ${JSON.stringify(dialect)}`);
    this.query = query;
    this.tableName = table;
    this.dialect = dialect;
  }

  p(n) {
    return this.dialect === 'postgres' ? `$${n}` : '?';
  }

  async save(task) {
    const t = this.tableName;
    const values = `(${this.p(1)}, ${this.p(2)}, ${this.p(3)}, ${this.p(4)})`;
    const upsert =
      this.dialect === 'mysql'
        ? 'ON DUPLICATE KEY UPDATE data = VALUES(data), expires_at = VALUES(expires_at)'
        : 'ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at';
    await this.query(`INSERT INTO ${t} (id, data, created_at, expires_at) VALUES ${values} ${upsert}`, [
      task.id,
      JSON.stringify(task),
      new Date(task.createdAt).toISOString(),
      new Date(task.expiresAt).toISOString(),
    ]);
  }

  async load(taskId) {
    const rows = rowsOf(await this.query(`SELECT data FROM ${this.tableName} WHERE id = ${this.p(1)}`, [taskId]));
    if (!rows.length) return null;
    const data = rows[0].data;
    return typeof data === 'string' ? JSON.parse(data) : data;
  }

  async delete(taskId) {
    const result = await this.query(`DELETE FROM ${this.tableName} WHERE id = ${this.p(1)}`, [taskId]);
    const changed = result && (result.rowCount ?? result.affectedRows ?? result.changes ?? (Array.isArray(result) && result[0] && result[0].affectedRows));
    return changed === undefined ? undefined : changed > 0;
  }

  /** Deletes the expired rows (one indexed DELETE; run it now and then). */
  async purgeExpired() {
    await this.query(`DELETE FROM ${this.tableName} WHERE expires_at <= ${this.p(1)}`, [new Date().toISOString()]);
  }
}

function rowsOf(result) {
  if (Array.isArray(result)) return Array.isArray(result[0]) ? result[0] : result; // mysql2: [rows, fields]
  if (result && Array.isArray(result.rows)) return result.rows; // pg
  return [];
}

module.exports = { CustomStorage, InMemoryStorage, RedisStorage, SQLStorage };
