// Type declarations of `sequential-flow/storage`.
import type { Storage, Task } from './index';
export { InMemoryStorage } from './index';

/** The base class of a storage of your own: implement save, load and delete. */
export class CustomStorage implements Storage {
  save(task: Task): Promise<void>;
  load(taskId: string): Promise<Task | null | undefined>;
  delete(taskId: string): Promise<boolean | void>;
}

/** The part of a node-redis client RedisStorage uses: set(key, value, {PX}), get(key), del(key). */
export interface RedisClientLike {
  set(...args: any[]): Promise<unknown>;
  get(...args: any[]): Promise<unknown>;
  del(...args: any[]): Promise<unknown>;
}

/** Tasks in Redis, one JSON string per task expiring with it. */
export class RedisStorage extends CustomStorage {
  constructor(client: RedisClientLike, options?: { prefix?: string });
}

/** Tasks in an SQL table through your query function. */
export class SQLStorage extends CustomStorage {
  constructor(
    query: (sql: string, params: unknown[]) => Promise<unknown>,
    options?: { tableName?: string; dialect?: 'postgres' | 'sqlite' | 'mysql' }
  );
  /** Deletes the expired rows. */
  purgeExpired(): Promise<void>;
}
