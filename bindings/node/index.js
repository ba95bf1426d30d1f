'use strict';
// sequential-flow for Node: run JavaScript that pauses at every fetch(), hand the fetch to the
// caller, and resume it with the response — in this process or another one.
//
// The VM is native (fetch-vm's external mode, through sequential-flow.node). Storage is either
// a store URL, opened natively (sequential-flow-store: memory:, folder, SQLite, PostgreSQL,
// Redis), or a JavaScript object with async save/load/delete, around which this file does the
// bookkeeping (TTL, expiry, loading vmState and code for a resume) with the same rules.

const native = loadNative();

/** Two hours, in milliseconds: how long a saved task lives unless `ttl` says otherwise. */
const DEFAULT_TTL = 2 * 60 * 60 * 1000;

// fetch-vm error names that mean the request was wrong: nothing ran, so nothing is saved.
const REQUEST_ERRORS = new Set(['Invalid', 'CodeMismatch', 'UnsupportedVersion', 'NotPending', 'Ended']);

function loadNative() {
  try {
    return require('./sequential-flow.node');
  } catch (e) {
    if (e && e.code === 'MODULE_NOT_FOUND') {
      throw new Error(
        `sequential-flow: the native addon ${__dirname}/sequential-flow.node is not built\n` +
          `hint: run \`node build.js\` in ${__dirname} (it needs cargo)`
      );
    }
    throw e;
  }
}

/** A task store error: `code` is NOT_FOUND, EXPIRED, DELETED, NOT_PAUSED, INVALID, UNREACHABLE or BACKEND. */
class SequentialFlowError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = 'SequentialFlowError';
    this.code = code;
    if (details) Object.assign(this, details);
  }
}

// ---------------------------------------------------------------------------------------------
// Argument checks: a TypeError naming the argument and what it accepts.

function describe(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'object') return `an object (${value.constructor ? value.constructor.name : 'no prototype'})`;
  return `${typeof value} ${String(value)}`;
}

function typeError(name, expected, value) {
  return new TypeError(`${name} must be ${expected}; got ${describe(value)}`);
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function checkObject(name, value, expected, optional) {
  if (value === undefined && optional) return {};
  if (!isPlainObject(value)) throw typeError(name, expected, value);
  return value;
}

function checkString(name, value, optional) {
  if ((value === undefined || value === null) && optional) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw typeError(name, optional ? 'a non-empty string or undefined' : 'a non-empty string', value);
  }
  return value;
}

function checkTtl(name, value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw typeError(name, 'a positive number of milliseconds (default 7200000, two hours)', value);
  }
  return Math.ceil(value);
}

function isStorageObject(value) {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof value.save === 'function' &&
    typeof value.load === 'function' &&
    typeof value.delete === 'function'
  );
}

const STORAGE_EXPECTED =
  'a store URL string (memory:, sqlite:PATH, a folder path, postgres://…, redis://…), ' +
  'new InMemoryStorage(), or an object with async save(task), load(id) and delete(id)';

function checkStorage(name, value) {
  if (typeof value === 'string') {
    if (value === '') throw typeError(name, STORAGE_EXPECTED, value);
    return urlStore(value);
  }
  if (isStorageObject(value)) return value;
  throw typeError(name, STORAGE_EXPECTED, value);
}

function checkOptions(options, what) {
  const o = checkObject(`${what} options`, options, 'an object like {storage, ttl, saveToStorage, baseUrl} or undefined', true);
  if (o.saveToStorage !== undefined && typeof o.saveToStorage !== 'boolean') {
    throw typeError('options.saveToStorage', 'a boolean or undefined', o.saveToStorage);
  }
  return {
    storage: o.storage === undefined ? defaultStorage : checkStorage('options.storage', o.storage),
    save: o.saveToStorage !== false,
    ttl: checkTtl('options.ttl', o.ttl),
    baseUrl: checkString('options.baseUrl', o.baseUrl, true),
  };
}

// ---------------------------------------------------------------------------------------------
// Storages

/**
 * The default storage: tasks in a Map of this process. Expired tasks are invisible at once and
 * swept out at most once a minute (so saving stays O(1) however many tasks are stored).
 */
class InMemoryStorage {
  constructor() {
    this.tasks = new Map();
    this.nextSweep = 0;
  }

  async save(task) {
    // Shallow copies in and out: a caller changing the task it got back changes no stored one.
    this.tasks.set(task.id, { ...task });
    const now = Date.now();
    if (now >= this.nextSweep) {
      this.nextSweep = now + 60_000;
      for (const [id, t] of this.tasks) if (t.expiresAt <= now) this.tasks.delete(id);
    }
  }

  async load(id) {
    const task = this.tasks.get(id);
    return task === undefined ? null : { ...task };
  }

  async delete(id) {
    return this.tasks.delete(id);
  }
}

// A store URL, opened natively on first use (one open store per URL in this process).
class UrlStore {
  constructor(url) {
    this.url = url;
    this.opened = null;
  }

  open() {
    if (!this.opened) {
      this.opened = native.openStore(this.url).then(unwrap);
      // A failed open is retried by the next call rather than cached.
      this.opened.catch(() => {
        this.opened = null;
      });
    }
    return this.opened;
  }
}

const urlStores = new Map();

function urlStore(url) {
  let store = urlStores.get(url);
  if (!store) {
    store = new UrlStore(url);
    urlStores.set(url, store);
  }
  return store;
}

// The native store answers `{"ok": value}` or `{"error": {"code", "message", ...}}`.
function unwrap(answer) {
  if (typeof answer !== 'string') return answer;
  const parsed = JSON.parse(answer);
  if (parsed.error) {
    const { code, message, ...details } = parsed.error;
    throw new SequentialFlowError(code, message, details);
  }
  return parsed.ok;
}

let defaultStorage = new InMemoryStorage();

// ---------------------------------------------------------------------------------------------
// Tasks kept in a JavaScript storage object: the same record and rules as the native store.

function taskFrom(response, code, createdAt, now, ttl) {
  const task = { id: response.id };
  if (response.name !== undefined) task.name = response.name;
  task.status = response.status;
  task.code = code;
  for (const key of ['fetchRequest', 'pending', 'vmState', 'result', 'error', 'errorInfo']) {
    if (response[key] !== undefined) task[key] = response[key];
  }
  task.ttl = ttl;
  task.createdAt = createdAt ?? now;
  task.updatedAt = now;
  task.expiresAt = now + ttl;
  return task;
}

function expiredError(id, expiresAt) {
  return new SequentialFlowError(
    'EXPIRED',
    `task ${JSON.stringify(id)} expired at ${new Date(expiresAt).toISOString()} (its TTL ran out)`,
    { taskId: id, expiredAt: expiresAt }
  );
}

function vmStateTaskId(vmState) {
  try {
    const id = JSON.parse(vmState).body.taskId;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined; // fetch-vm names what is wrong with it
  }
}

function requestError(response, what) {
  const info = response.errorInfo;
  if (response.status === 'error' && info && REQUEST_ERRORS.has(info.name)) {
    return new SequentialFlowError('INVALID', `invalid ${what}: ${info.message}`, { errorInfo: info });
  }
  return null;
}

async function loadLive(storage, id) {
  const task = await storage.load(id);
  if (task == null) return { task: null };
  if (typeof task.expiresAt === 'number' && task.expiresAt <= Date.now()) {
    await storage.delete(id);
    return { task: null, expiredAt: task.expiresAt };
  }
  return { task };
}

// ---------------------------------------------------------------------------------------------
// The API

async function execute(request, options) {
  const req = checkObject('request', request, 'an object like {id, name, code}');
  const code = checkString('request.code', req.code);
  const id = checkString('request.id', req.id, true);
  const name = req.name === undefined || req.name === null ? undefined : checkString('request.name', req.name);
  const opts = checkOptions(options, 'execute');
  const body = JSON.stringify({ id, name, code, input: req.input ?? null, options: { baseUrl: opts.baseUrl } });

  if (opts.save && opts.storage instanceof UrlStore) {
    const store = await opts.storage.open();
    return unwrap(await store.execute(body, opts.ttl ?? null));
  }
  const response = JSON.parse(await native.execute(body));
  if (!opts.save) return response;
  const bad = requestError(response, 'execute request');
  if (bad) throw bad;
  const task = taskFrom(response, code, undefined, Date.now(), opts.ttl ?? DEFAULT_TTL);
  await opts.storage.save(task);
  return task;
}

function checkResume(request) {
  const req = checkObject('request', request, 'an object like {taskId, vmState, originalCode, fetchResponse}');
  const out = {
    taskId: checkString('request.taskId', req.taskId, true),
    vmState: checkString('request.vmState', req.vmState, true),
    originalCode: checkString('request.originalCode', req.originalCode, true),
    fetchResponse:
      req.fetchResponse === undefined || req.fetchResponse === null
        ? undefined
        : checkObject('request.fetchResponse', req.fetchResponse, 'an object like {data, status, statusText}'),
    responses: req.responses === undefined ? undefined : req.responses,
  };
  if (out.responses !== undefined && !Array.isArray(out.responses)) {
    throw typeError('request.responses', 'an array of {id, result} or {id, error}', out.responses);
  }
  if (out.taskId === undefined && out.vmState === undefined) {
    throw new TypeError(
      'request.taskId must be a non-empty string (or request.vmState given); got neither: ' +
        'resume needs the task id to load the stored task, or the vmState of the paused result'
    );
  }
  return out;
}

async function resume(request, options) {
  const req = checkResume(request);
  const opts = checkOptions(options, 'resume');
  const fetchResponse = req.fetchResponse && { ...req.fetchResponse, status: req.fetchResponse.status ?? 200 };
  const input = {
    taskId: req.taskId,
    vmState: req.vmState,
    originalCode: req.originalCode,
    fetchResponse,
    responses: req.responses ?? [],
    options: { baseUrl: opts.baseUrl },
  };

  if (opts.save && opts.storage instanceof UrlStore) {
    const store = await opts.storage.open();
    return unwrap(await store.resume(JSON.stringify(input), opts.ttl ?? null));
  }
  if (!opts.save) {
    if (!req.vmState || !req.originalCode) {
      throw new TypeError('request.vmState and request.originalCode must be strings when saveToStorage is false (nothing is loaded)');
    }
    return JSON.parse(await native.resume(JSON.stringify(input)));
  }

  const id = req.taskId ?? vmStateTaskId(req.vmState);
  if (id === undefined) {
    throw new SequentialFlowError('INVALID', 'invalid resume request: expected a taskId (the vmState names no task)');
  }
  const { task: stored, expiredAt } = await loadLive(opts.storage, id);
  if (expiredAt !== undefined) throw expiredError(id, expiredAt);
  if (!stored && !req.vmState) {
    throw new SequentialFlowError('NOT_FOUND', `no task ${JSON.stringify(id)} in the storage (never saved, deleted, or expired and swept out)`, { taskId: id });
  }
  if (stored && !req.vmState && stored.status !== 'paused') {
    throw new SequentialFlowError('NOT_PAUSED', `task ${JSON.stringify(id)} is ${stored.status}, not paused: there is nothing to resume`, { taskId: id });
  }
  const vmState = req.vmState ?? stored.vmState;
  const code = req.originalCode ?? (stored && stored.code);
  if (code === undefined) {
    throw new SequentialFlowError('INVALID', 'invalid resume request: expected originalCode (the task is not stored, so its code must be given)', { taskId: id });
  }
  const owner = vmStateTaskId(vmState);
  if (owner !== undefined && owner !== id) {
    throw new SequentialFlowError(
      'INVALID',
      `invalid vmState: it belongs to task ${JSON.stringify(owner)}, not ${JSON.stringify(id)}`,
      { taskId: id }
    );
  }
  input.taskId = id;
  input.vmState = vmState;
  input.originalCode = code;
  const response = JSON.parse(await native.resume(JSON.stringify(input)));
  const bad = requestError(response, `resume of task ${JSON.stringify(id)}`);
  if (bad) throw bad;
  if (response.name === undefined && stored && stored.name !== undefined) response.name = stored.name;
  const ttl = opts.ttl ?? (stored && stored.ttl) ?? DEFAULT_TTL;
  const task = taskFrom(response, code, stored && stored.createdAt, Date.now(), ttl);
  await opts.storage.save(task);
  return task;
}

async function getTask(taskId, options) {
  const id = checkString('taskId', taskId);
  const opts = checkOptions(options, 'getTask');
  if (opts.storage instanceof UrlStore) {
    const store = await opts.storage.open();
    return unwrap(await store.get(id));
  }
  return (await loadLive(opts.storage, id)).task;
}

async function deleteTask(taskId, options) {
  const id = checkString('taskId', taskId);
  const opts = checkOptions(options, 'deleteTask');
  if (opts.storage instanceof UrlStore) {
    const store = await opts.storage.open();
    return unwrap(await store.delete(id));
  }
  const { task } = await loadLive(opts.storage, id);
  if (!task) return false;
  await opts.storage.delete(id);
  return true;
}

function setDefaultStorage(storage) {
  defaultStorage = checkStorage('storage', storage);
}

const SequentialFlow = { execute, resume, getTask, deleteTask, setDefaultStorage, DEFAULT_TTL };

module.exports = { SequentialFlow, InMemoryStorage, SequentialFlowError, DEFAULT_TTL };
