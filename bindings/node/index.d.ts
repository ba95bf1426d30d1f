// Type declarations of the `sequential-flow` package.

/** The paused fetch: perform it, then `resume` with its response. */
export interface FetchRequest {
  /** The call id (`call-<n>`). */
  id: string;
  /** The URL as the code wrote it (relative ones too), or resolved against `options.baseUrl`. */
  url: string;
  /** The fetch options exactly as the code passed them. */
  options: Record<string, unknown>;
}

/** A pending call (fetch, or a module-mode `ctx.*` call that needs the outside world). */
export interface PendingCall {
  id: string;
  seq: number;
  kind: string;
  request: unknown;
}

export interface ErrorInfo {
  name: string;
  message: string;
  stack?: string;
  details?: unknown;
}

export type TaskStatus = 'running' | 'paused' | 'completed' | 'error';

/** What `execute`/`resume` return (with `saveToStorage: false`, without the timestamps). */
export interface Task {
  /** The task id: the one given, or a generated UUID v7. */
  id: string;
  name?: string;
  status: TaskStatus;
  /** The task's code. */
  code: string;
  /** The first pending fetch, when paused. */
  fetchRequest?: FetchRequest;
  /** Every pending call, when paused. */
  pending?: PendingCall[];
  /** The state to pass to `resume`, when paused (opaque JSON text, checksummed). */
  vmState?: string;
  /** The result, when completed. */
  result?: unknown;
  /** The error message, when failed. */
  error?: string;
  /** `{name, message, stack}`, when failed. */
  errorInfo?: ErrorInfo;
  /** The TTL of the last save, ms. */
  ttl?: number;
  /** When first saved, Unix ms. */
  createdAt?: number;
  /** When last saved, Unix ms. */
  updatedAt?: number;
  /** When it expires, Unix ms: from then on `getTask` returns null and `resume` rejects with EXPIRED. */
  expiresAt?: number;
}

/** An object that keeps task objects by id; SequentialFlow handles TTLs and expiry. */
export interface Storage {
  save(task: Task): Promise<void>;
  load(taskId: string): Promise<Task | null | undefined>;
  delete(taskId: string): Promise<boolean | void>;
}

/**
 * A storage: a store URL (`memory:`, `sqlite:./tasks.db` or `./tasks.db`, a folder path,
 * `postgres://user@host/db`, `redis://host:6379`), `new InMemoryStorage()`, or any `Storage`.
 */
export type StorageOption = string | Storage;

export interface ExecuteRequest {
  /** Unique task identifier (a UUID v7 is generated when missing). */
  id?: string;
  /** Optional task name. */
  name?: string;
  /** JavaScript code to execute. */
  code: string;
  /** Input handed to the code (module mode). */
  input?: unknown;
}

export interface Options {
  /** Storage for this call (default: the default storage, an InMemoryStorage unless set). */
  storage?: StorageOption;
  /** Save the task to storage (default true). */
  saveToStorage?: boolean;
  /** Task expiration time in milliseconds (default 2 hours; a resume keeps the task's own). */
  ttl?: number;
  /** Resolves relative fetch URLs in `fetchRequest.url`. */
  baseUrl?: string;
}

export interface FetchResponse {
  /** The body (JSON value, or text). */
  data?: unknown;
  /** HTTP status (default 200). */
  status?: number;
  statusText?: string;
  headers?: Record<string, string>;
  /** Which pending fetch this answers (default: the first). */
  id?: string;
}

export interface ResumeRequest {
  /** Task ID from the paused result. */
  taskId?: string;
  /** Execution state from the paused result (default: the stored task's). */
  vmState?: string;
  /** The original code (default: the stored task's). */
  originalCode?: string;
  /** Response to the paused fetch. */
  fetchResponse?: FetchResponse;
  /** Answers to other pending calls. */
  responses?: Array<{ id: string; result?: unknown; error?: ErrorInfo }>;
}

/** A storage error: NOT_FOUND, EXPIRED, DELETED, NOT_PAUSED, INVALID, INVALID_URL, UNREACHABLE, BACKEND. */
export class SequentialFlowError extends Error {
  code: string;
  taskId?: string;
  expiredAt?: number;
  deletedAt?: number;
}

export const DEFAULT_TTL: number;

export const SequentialFlow: {
  /** Execute JavaScript code with automatic pause on fetch. */
  execute(request: ExecuteRequest, options?: Options): Promise<Task>;
  /** Resume execution from paused state. */
  resume(request: ResumeRequest, options?: Options): Promise<Task>;
  /** Load a task from storage: null when unknown, expired or deleted. */
  getTask(taskId: string, options?: Pick<Options, 'storage'>): Promise<Task | null>;
  /** Delete a task from storage: whether a live task was there. */
  deleteTask(taskId: string, options?: Pick<Options, 'storage'>): Promise<boolean>;
  /** Set the default storage backend. */
  setDefaultStorage(storage: StorageOption): void;
  DEFAULT_TTL: number;
};

/** Tasks in a Map of this process (the default storage). */
export class InMemoryStorage implements Storage {
  save(task: Task): Promise<void>;
  load(taskId: string): Promise<Task | null>;
  delete(taskId: string): Promise<boolean>;
}
