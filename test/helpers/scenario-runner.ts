/**
 * Runs the session scenarios of spec/scenarios/*.json (format: spec/scenarios/README.md)
 * against the TypeScript session, in memory: frames in through the TS decoder and
 * `session.receive(batch, now)`, frames out through `takeOutput()` (decoded by a Tap), the
 * clock moved by `tick(now)`, the end of the byte stream by `transportClosed`.
 *
 * The runner is strict on purpose: every key of a scenario must be known (a typo would
 * otherwise make a check vacuous), every frame written must be expected, every frame written
 * must fit the peer's frame limit, and an expectation that cannot be evaluated fails.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_FRAME_BYTES_LIMIT } from '../../bindings/constants.js';
import { tsCodec } from '../../bindings/codec-ts.js';
import type { Decoder } from '../../bindings/codec.js';
import { PipitError } from '../../bindings/errors.js';
import { MessageStream } from '../../bindings/message-stream.js';
import type { HandlerContext } from '../../bindings/routes.js';
import { streaming, unary } from '../../bindings/introspection.js';
import { Session, type SessionOptions } from '../../bindings/session.js';
import { encodeFrames, type VFrame } from './frames.js';
import { Tap, deferred, track, type Deferred, type Outcome } from './session-kit.js';

// ---- the format -----------------------------------------------------------------

/** A hex string, or `{"repeat": hex, "times": n}` for a long payload. */
export type Hex = string | { repeat: string; times: number };

export interface ScenarioFile {
  description: string;
  scenarios: Scenario[];
}

export interface Scenario {
  name: string;
  section: string;
  checks: string;
  options?: Record<string, unknown>;
  services?: Record<string, Record<string, Behaviour>>;
  steps: Step[];
}

export interface Failure {
  code: number;
  message?: string;
}

export interface Behaviour {
  kind: 'unary' | 'stream';
  reply?: Hex;
  replyText?: string;
  empty?: boolean;
  fail?: Failure;
  throw?: string;
  items?: Hex[];
  itemsText?: string[];
  then?: { fail?: Failure; throw?: string };
  hold?: boolean;
}

/** A frame in the vector notation, plus the scenario additions. */
export interface SFrame {
  type: string;
  flags: string[];
  id: number;
  service?: string;
  method?: string;
  ext?: { deadlineMs?: number; credit?: number; metadata?: Array<[string, string]> };
  payload?: Hex;
  payloadText?: string;
  code?: number;
  message?: string;
  messagePrefix?: string;
  credit?: number;
  settings?: Array<[number, number]>;
  fragmented?: boolean;
}

export type Step = Record<string, unknown>;

const SCENARIO_KEYS = ['name', 'section', 'checks', 'options', 'services', 'steps'];
const OPTION_KEYS = ['hello', 'maxFrameBytes', 'maxMessageBytes', 'maxInflight', 'maxQueuedCalls', 'maxReassemblyBytes', 'introspection'];
const BEHAVIOUR_KEYS = ['kind', 'reply', 'replyText', 'empty', 'fail', 'throw', 'items', 'itemsText', 'then', 'hold'];
const STEP_KEYS = [
  'call', 'cancel', 'consume', 'goaway', 'release', 'advance', 'end', 'receive', 'receiveHex',
  'expectSent', 'expectOutcome', 'expectHandler', 'expectTables', 'expectClosed', 'expectOpen',
];
const CALL_KEYS = ['id', 'service', 'method', 'payload', 'payloadText', 'stream', 'credit', 'timeoutMs', 'metadata'];
const FRAME_KEYS = ['type', 'flags', 'id', 'service', 'method', 'ext', 'payload', 'payloadText', 'code', 'message', 'credit', 'settings'];
const EXPECT_FRAME_KEYS = [...FRAME_KEYS, 'messagePrefix', 'fragmented'];
const EXT_KEYS = ['deadlineMs', 'credit', 'metadata'];
const OUTCOME_KEYS = ['call', 'pending', 'ok', 'okText', 'error', 'status', 'messagePrefix', 'messages', 'messagesText'];
const HANDLER_KEYS = ['handler', 'calls', 'payload', 'payloadText', 'text', 'metadata', 'deadlineMs', 'aborted'];
const RELEASE_KEYS = ['handler', 'reply', 'replyText', 'empty', 'fail', 'throw', 'items', 'itemsText', 'end'];
const FLAG_ORDER = ['STREAM', 'END', 'TEXT', 'FOLLOWS', 'EXT'];
const TYPES = ['HELLO', 'REQUEST', 'RESPONSE', 'STATUS', 'CANCEL', 'CREDIT', 'DATA', 'PING', 'PONG', 'GOAWAY', 'ERROR'];
/** Fields each frame type carries besides type, flags and id. */
const TYPE_FIELDS: Record<string, string[]> = {
  HELLO: ['settings'],
  REQUEST: ['service', 'method', 'ext', 'payload', 'payloadText'],
  RESPONSE: ['payload', 'payloadText'],
  DATA: ['payload', 'payloadText'],
  STATUS: ['code', 'message', 'messagePrefix'],
  GOAWAY: ['code', 'message', 'messagePrefix'],
  ERROR: ['code', 'message', 'messagePrefix'],
  CREDIT: ['credit'],
  CANCEL: [],
  PING: [],
  PONG: [],
};
const STATUS_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN_SERVICE', 'UNKNOWN_METHOD', 'INVALID_ARGUMENT', 'APPLICATION_ERROR',
  'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'PROTOCOL_ERROR', 'INTERNAL', 'CONNECTION_CLOSED', 'UNKNOWN',
];

/** The scenario defaults of spec/scenarios/README.md. */
export const SCENARIO_DEFAULTS = {
  hello: false,
  maxFrameBytes: 65536,
  maxMessageBytes: 16777216,
  maxInflight: 1024,
  maxQueuedCalls: 65536,
  maxReassemblyBytes: 67108864,
  introspection: false,
} as const;

// ---- loading and linting ----------------------------------------------------------

export interface LoadedScenario {
  file: string;
  scenario: Scenario;
}

export function loadScenarios(dir: string): LoadedScenario[] {
  const out: LoadedScenario[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const data = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ScenarioFile;
    for (const scenario of data.scenarios) out.push({ file, scenario });
  }
  return out;
}

/** Structural problems of one scenario file (unknown keys, bad hex, missing fields...). */
export function lintFile(data: unknown): string[] {
  const problems: string[] = [];
  if (!isObj(data)) return ['file is not an object'];
  keys(data, ['description', 'scenarios'], 'file', problems);
  if (typeof data.description !== 'string') problems.push('file: description missing');
  if (!Array.isArray(data.scenarios)) return [...problems, 'file: scenarios missing'];
  for (const s of data.scenarios) problems.push(...lintScenario(s));
  return problems;
}

export function lintScenario(s: unknown): string[] {
  const p: string[] = [];
  if (!isObj(s)) return ['scenario is not an object'];
  const at = `scenario ${String(s.name)}`;
  keys(s, SCENARIO_KEYS, at, p);
  if (typeof s.name !== 'string' || !/^[a-z0-9]+(-[a-z0-9]+)*$/.test(s.name)) p.push(`${at}: name must be kebab-case`);
  if (typeof s.section !== 'string' || !/^§\d+(\.\d+)*(, §\d+(\.\d+)*)*$/.test(s.section)) p.push(`${at}: bad section ${String(s.section)}`);
  if (typeof s.checks !== 'string' || s.checks.length < 10) p.push(`${at}: checks missing`);
  if (s.options !== undefined) {
    if (!isObj(s.options)) p.push(`${at}: options`);
    else keys(s.options, OPTION_KEYS, `${at} options`, p);
  }
  const kinds = new Map<string, string>();
  if (s.services !== undefined) {
    if (!isObj(s.services)) p.push(`${at}: services`);
    else {
      for (const [svc, methods] of Object.entries(s.services)) {
        if (!isObj(methods)) {
          p.push(`${at}: service ${svc}`);
          continue;
        }
        for (const [m, b] of Object.entries(methods)) {
          const where = `${at} behaviour ${svc}/${m}`;
          if (!isObj(b)) {
            p.push(where);
            continue;
          }
          keys(b, BEHAVIOUR_KEYS, where, p);
          if (b.kind !== 'unary' && b.kind !== 'stream') p.push(`${where}: kind`);
          kinds.set(`${svc}/${m}`, String(b.kind));
          const results = ['reply', 'replyText', 'empty', 'fail', 'throw', 'items', 'itemsText'].filter((k) => b[k] !== undefined);
          if (b.hold === true ? results.length !== 0 : results.length !== 1) p.push(`${where}: needs exactly one result (or hold)`);
          if (b.reply !== undefined) hexProblem(b.reply, `${where} reply`, p);
          if (Array.isArray(b.items)) for (const h of b.items) hexProblem(h, `${where} items`, p);
          if (b.fail !== undefined) failProblem(b.fail, where, p);
          if (b.then !== undefined) {
            if (!isObj(b.then)) p.push(`${where}: then`);
            else {
              keys(b.then, ['fail', 'throw'], `${where} then`, p);
              if (b.then.fail !== undefined) failProblem(b.then.fail, where, p);
            }
          }
          if (b.kind === 'unary' && (b.items !== undefined || b.itemsText !== undefined || b.then !== undefined)) p.push(`${where}: items on a unary behaviour`);
          if (b.kind === 'stream' && (b.reply !== undefined || b.replyText !== undefined || b.empty !== undefined || b.fail !== undefined || b.throw !== undefined)) {
            p.push(`${where}: unary result on a stream behaviour`);
          }
        }
      }
    }
  }
  if (!Array.isArray(s.steps) || s.steps.length === 0) return [...p, `${at}: steps missing`];
  const callIds = new Set<string>();
  s.steps.forEach((step: unknown, i: number) => {
    const where = `${at} step ${i + 1}`;
    if (!isObj(step) || Object.keys(step).length !== 1) {
      p.push(`${where}: a step has exactly one key`);
      return;
    }
    const [key, v] = Object.entries(step)[0]!;
    if (!STEP_KEYS.includes(key)) {
      p.push(`${where}: unknown step ${key}`);
      return;
    }
    switch (key) {
      case 'call':
        if (!isObj(v)) return void p.push(`${where}: call`);
        keys(v, CALL_KEYS, where, p);
        if (typeof v.id !== 'string' || callIds.has(v.id)) p.push(`${where}: call id missing or repeated`);
        callIds.add(String(v.id));
        if ((v.payload === undefined) === (v.payloadText === undefined)) p.push(`${where}: payload or payloadText`);
        if (v.payload !== undefined) hexProblem(v.payload, where, p);
        if (v.credit !== undefined && v.stream !== true) p.push(`${where}: credit on a unary call`);
        break;
      case 'cancel':
        if (typeof v !== 'string' || !callIds.has(v)) p.push(`${where}: cancel of an unknown call`);
        break;
      case 'consume':
        if (!isObj(v)) return void p.push(`${where}: consume`);
        keys(v, ['call', 'count'], where, p);
        if (!callIds.has(String(v.call)) || typeof v.count !== 'number') p.push(`${where}: consume`);
        break;
      case 'goaway':
      case 'expectOpen':
        if (!isObj(v) || Object.keys(v).length !== 0) p.push(`${where}: ${key} takes {}`);
        break;
      case 'end':
        if (!isObj(v)) return void p.push(`${where}: end`);
        keys(v, ['incomplete'], where, p);
        break;
      case 'advance':
        if (typeof v !== 'number' || !(v >= 0)) p.push(`${where}: advance`);
        break;
      case 'release':
        if (!isObj(v)) return void p.push(`${where}: release`);
        keys(v, RELEASE_KEYS, where, p);
        if (kinds.get(String(v.handler)) === undefined) p.push(`${where}: release of an unknown handler ${String(v.handler)}`);
        if (v.reply !== undefined) hexProblem(v.reply, where, p);
        if (Array.isArray(v.items)) for (const h of v.items) hexProblem(h, where, p);
        if (v.fail !== undefined) failProblem(v.fail, where, p);
        break;
      case 'receive':
        if (!Array.isArray(v) || v.length === 0) return void p.push(`${where}: receive needs frames`);
        for (const f of v) frameProblem(f, false, where, p);
        break;
      case 'receiveHex':
        if (typeof v !== 'string' || !/^([0-9a-f]{2})+$/.test(v)) p.push(`${where}: receiveHex`);
        break;
      case 'expectSent':
        if (!Array.isArray(v)) return void p.push(`${where}: expectSent needs a list`);
        for (const f of v) frameProblem(f, true, where, p);
        break;
      case 'expectOutcome':
        if (!isObj(v)) return void p.push(`${where}: expectOutcome`);
        keys(v, OUTCOME_KEYS, where, p);
        if (!callIds.has(String(v.call))) p.push(`${where}: outcome of an unknown call`);
        {
          const states = ['pending', 'ok', 'okText', 'error', 'status'].filter((k) => v[k] !== undefined);
          if (states.length === 0 || (states.length > 1 && !(states.every((k) => k === 'error' || k === 'status')))) {
            p.push(`${where}: one of pending, ok, okText, error/status`);
          }
          if (v.pending !== undefined && v.pending !== true) p.push(`${where}: pending must be true`);
          if (v.error !== undefined && !STATUS_NAMES.includes(String(v.error))) p.push(`${where}: unknown status name ${String(v.error)}`);
          if (v.messagePrefix !== undefined && v.error === undefined && v.status === undefined) p.push(`${where}: messagePrefix without error`);
          if (typeof v.ok === 'string' || isObj(v.ok)) hexProblem(v.ok, where, p);
          if (Array.isArray(v.messages)) for (const h of v.messages) hexProblem(h, where, p);
        }
        break;
      case 'expectHandler':
        if (!isObj(v)) return void p.push(`${where}: expectHandler`);
        keys(v, HANDLER_KEYS, where, p);
        if (kinds.get(String(v.handler)) === undefined) p.push(`${where}: unknown handler ${String(v.handler)}`);
        if (Object.keys(v).length < 2) p.push(`${where}: expectHandler checks nothing`);
        if (v.aborted !== undefined && v.aborted !== null && !STATUS_NAMES.includes(String(v.aborted))) p.push(`${where}: aborted`);
        if (v.payload !== undefined) hexProblem(v.payload, where, p);
        break;
      case 'expectTables':
        if (!isObj(v)) return void p.push(`${where}: expectTables`);
        keys(v, ['outgoing', 'incoming'], where, p);
        if (typeof v.outgoing !== 'number' || typeof v.incoming !== 'number') p.push(`${where}: expectTables needs both counts`);
        break;
      case 'expectClosed':
        if (!isObj(v)) return void p.push(`${where}: expectClosed`);
        keys(v, ['error'], where, p);
        if (v.error !== null && !STATUS_NAMES.includes(String(v.error))) p.push(`${where}: expectClosed error`);
        break;
    }
  });
  return p;
}

function frameProblem(f: unknown, expect: boolean, where: string, p: string[]): void {
  if (!isObj(f)) return void p.push(`${where}: frame`);
  keys(f, expect ? EXPECT_FRAME_KEYS : FRAME_KEYS, where, p);
  const type = String(f.type);
  if (!TYPES.includes(type)) return void p.push(`${where}: unknown type ${type}`);
  if (!Array.isArray(f.flags)) p.push(`${where}: ${type} flags missing`);
  else {
    const order = f.flags.map((x: unknown) => FLAG_ORDER.indexOf(String(x)));
    if (order.some((x: number, i: number) => x < 0 || (i > 0 && x <= order[i - 1]!))) p.push(`${where}: flags ${f.flags.join('|')} not in the order STREAM, END, TEXT, FOLLOWS, EXT`);
  }
  if (typeof f.id !== 'number' || !Number.isInteger(f.id) || f.id < 0 || f.id > 0xffffffff) p.push(`${where}: ${type} id`);
  for (const k of Object.keys(f)) {
    if (['type', 'flags', 'id', 'fragmented'].includes(k)) continue;
    if (!TYPE_FIELDS[type]!.includes(k)) p.push(`${where}: ${type} has no field ${k}`);
  }
  if (TYPE_FIELDS[type]!.includes('payload') && f.payload === undefined && f.payloadText === undefined) p.push(`${where}: ${type} payload missing (write "" for an empty one)`);
  if (f.payload !== undefined && f.payloadText !== undefined) p.push(`${where}: payload and payloadText`);
  if (f.payload !== undefined) hexProblem(f.payload, where, p);
  if (f.message !== undefined && f.messagePrefix !== undefined) p.push(`${where}: message and messagePrefix`);
  if (TYPE_FIELDS[type]!.includes('code') && typeof f.code !== 'number') p.push(`${where}: ${type} code missing`);
  if (type === 'CREDIT' && typeof f.credit !== 'number') p.push(`${where}: CREDIT credit missing`);
  if (type === 'REQUEST' && (typeof f.service !== 'string' || typeof f.method !== 'string')) p.push(`${where}: REQUEST names missing`);
  if (type === 'REQUEST' && Array.isArray(f.flags) && f.flags.includes('EXT') !== (f.ext !== undefined)) p.push(`${where}: EXT flag and ext must go together`);
  if (f.ext !== undefined) {
    if (!isObj(f.ext)) p.push(`${where}: ext`);
    else keys(f.ext, EXT_KEYS, `${where} ext`, p);
  }
  if (type === 'HELLO' && !Array.isArray(f.settings)) p.push(`${where}: HELLO settings missing`);
  if (f.fragmented !== undefined && (f.fragmented !== true || (type !== 'REQUEST' && type !== 'RESPONSE'))) p.push(`${where}: fragmented is for REQUEST and RESPONSE`);
}

function failProblem(f: unknown, where: string, p: string[]): void {
  if (!isObj(f)) return void p.push(`${where}: fail`);
  keys(f, ['code', 'message'], `${where} fail`, p);
  if (typeof f.code !== 'number') p.push(`${where}: fail code`);
}

function hexProblem(h: unknown, where: string, p: string[]): void {
  if (typeof h === 'string') {
    if (!/^([0-9a-f]{2})*$/.test(h)) p.push(`${where}: bad hex ${h}`);
  } else if (isObj(h)) {
    keys(h, ['repeat', 'times'], where, p);
    if (typeof h.repeat !== 'string' || !/^([0-9a-f]{2})+$/.test(h.repeat) || typeof h.times !== 'number') p.push(`${where}: bad repeat`);
  } else {
    p.push(`${where}: hex value`);
  }
}

function keys(o: Record<string, unknown>, allowed: string[], where: string, p: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) p.push(`${where}: unknown key ${k}`);
}

function isObj(v: unknown): v is Record<string, any> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---- values ------------------------------------------------------------------------

export function hexBytes(h: Hex): Buffer {
  if (typeof h === 'string') return Buffer.from(h, 'hex');
  return Buffer.from(h.repeat.repeat(h.times), 'hex');
}

function payloadOf(o: { payload?: Hex; payloadText?: string }): Buffer {
  if (o.payloadText !== undefined) return Buffer.from(o.payloadText, 'utf8');
  return hexBytes(o.payload ?? '');
}

/** Hex for error messages: long ones shortened. */
function show(b: Buffer | string): string {
  const h = typeof b === 'string' ? b : b.toString('hex');
  return h.length > 80 ? `${h.slice(0, 40)}...(${h.length / 2} bytes)...${h.slice(-16)}` : h;
}

function showFrame(f: VFrame | SFrame): string {
  const o: Record<string, unknown> = { ...f };
  if (typeof o.payload === 'string') o.payload = show(o.payload);
  if (typeof o.message === 'string' && o.message.length > 80) o.message = `${o.message.slice(0, 60)}...(${Buffer.byteLength(o.message)} bytes)`;
  delete o.bytes;
  return JSON.stringify(o);
}

// ---- the run ------------------------------------------------------------------------

export class ScenarioFailure extends Error {}

interface HandlerRecord {
  calls: number;
  payload?: Buffer;
  text?: boolean;
  metadata?: Record<string, string>;
  deadlineMs?: number | null;
  aborted?: string | null;
  /** Invocations of a hold behaviour still waiting for their release, oldest first. */
  waiting: Held[];
  /**
   * Releases of a stream behaviour made before its producer started: the TS session starts a
   * stream handler's generator only once the call has credit, where a push-style producer
   * would already be running. They go to the next invocation that starts.
   */
  early: Release[];
}

type Release = Record<string, any>;

interface Held {
  /** Unary: settle it. Stream: feed the producer. */
  release(r: Release): void;
}

interface CallRecord {
  stream: boolean;
  controller: AbortController;
  unary?: Outcome;
  messages: Buffer[];
  finished: boolean;
  /** The session finished the stream more than once (Rule: one outcome per call). */
  finishedAgain: boolean;
  error: PipitError | null;
  handle?: MessageStream;
}

/**
 * Every stream the session creates reports what it is given, consumed or not. The session
 * feeds a stream through push/finish; a stream can be finished before `stream()` returns
 * (a call refused at once), so the record is found through `opening` until then.
 */
const streamRecords = new WeakMap<MessageStream, CallRecord>();
let opening: CallRecord | null = null;
{
  const proto = MessageStream.prototype;
  const push = proto.push;
  const finish = proto.finish;
  proto.push = function (this: MessageStream, item: Buffer, text: boolean): void {
    const r = streamRecords.get(this) ?? opening;
    if (r !== null && r !== undefined && !r.finished) r.messages.push(Buffer.from(item));
    push.call(this, item, text);
  };
  proto.finish = function (this: MessageStream, error: PipitError | null): void {
    const r = streamRecords.get(this) ?? opening;
    if (r !== null && r !== undefined) {
      if (r.finished) r.finishedAgain = true;
      else r.error = error;
      r.finished = true;
    }
    finish.call(this, error);
  };
}

function failure(f: Failure): PipitError {
  return new PipitError(f.code, f.message ?? '');
}

export async function runScenario(s: Scenario): Promise<void> {
  const problems = lintScenario(s);
  if (problems.length > 0) throw new ScenarioFailure(`malformed scenario:\n  ${problems.join('\n  ')}`);
  let run: Run;
  try {
    run = new Run(s);
  } catch (e) {
    throw new ScenarioFailure(`${s.name}: the session could not be created with options ${JSON.stringify(s.options ?? {})}: ${e instanceof Error ? e.message : String(e)}`);
  }
  // Diagnostics only: SCENARIO_KEEP_GOING=1 reports every failing expectation, not just the first.
  const keepGoing = process.env.SCENARIO_KEEP_GOING === '1';
  const failures: string[] = [];
  for (let i = 0; i < s.steps.length; i++) {
    const step = s.steps[i]!;
    try {
      await run.step(step);
    } catch (e) {
      const what = JSON.stringify(step);
      const msg = e instanceof Error ? e.message : String(e);
      failures.push(`${s.name}: step ${i + 1} ${what.length > 200 ? what.slice(0, 200) + '...' : what}\n  ${msg}`);
      if (!keepGoing || !Object.keys(step)[0]!.startsWith('expect')) break;
    }
  }
  if (failures.length === 0) {
    // What the subject wrote after the last expectation must still decode and fit the peer's limit.
    try {
      await run.settle();
      run.checkWritten();
    } catch (e) {
      failures.push(`${s.name}: after the last step\n  ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  if (failures.length > 0) throw new ScenarioFailure(failures.join('\n'));
}

class Run {
  now = 0;
  readonly session: Session;
  readonly decoder: Decoder;
  readonly tap: Tap;
  closedWith: PipitError | null | undefined = undefined;
  /** Frames of tap.frames already checked by expectSent. */
  private checked = 0;
  /** Bytes of output walked for the frame-size check, and the frames they held. */
  private walked = 0;
  private walkedFrames = 0;
  /** The peer's frame limit (65536 until a HELLO the runner feeds says otherwise). */
  private peerMaxFrameBytes = 65536;
  private sizeProblem: string | null = null;
  private readonly calls = new Map<string, CallRecord>();
  private readonly handlers = new Map<string, HandlerRecord>();

  constructor(readonly scenario: Scenario) {
    const o = { ...SCENARIO_DEFAULTS, ...(scenario.options ?? {}) };
    const services: Record<string, Record<string, (p: Buffer, ctx: HandlerContext) => unknown>> = {};
    for (const [svc, methods] of Object.entries(scenario.services ?? {})) {
      services[svc] = {};
      for (const [m, b] of Object.entries(methods)) {
        const rec: HandlerRecord = { calls: 0, waiting: [], early: [] };
        this.handlers.set(`${svc}/${m}`, rec);
        // Declared, so introspection (§8.11) can tell the kind before running the handler.
        services[svc][m] = b.kind === 'unary' ? unary(this.unary(b, rec)) : streaming(this.stream(b, rec));
      }
    }
    const options: SessionOptions & { introspection?: boolean } = {
      services,
      hello: o.hello,
      maxFrameBytes: o.maxFrameBytes,
      maxMessageBytes: o.maxMessageBytes,
      maxInflight: o.maxInflight,
      maxQueuedCalls: o.maxQueuedCalls,
      maxReassemblyBytes: o.maxReassemblyBytes,
      introspection: o.introspection,
    };
    this.session = new Session(options);
    this.session.host = {
      onOutput: () => {},
      onClose: (e) => {
        if (this.closedWith === undefined) this.closedWith = e;
      },
    };
    this.decoder = tsCodec.createDecoder(this.session.maxFrameBytes);
    this.tap = new Tap(this.session, MAX_FRAME_BYTES_LIMIT);
  }

  // ---- behaviours ----

  private begin(rec: HandlerRecord, payload: Buffer, ctx: HandlerContext): void {
    rec.calls++;
    rec.payload = Buffer.from(payload);
    rec.text = ctx.text;
    rec.metadata = { ...ctx.metadata };
    rec.deadlineMs = ctx.deadline === undefined ? null : ctx.deadline - this.now;
    rec.aborted = null;
    const signal = ctx.signal;
    const onAbort = (): void => {
      const r: unknown = signal.reason;
      rec.aborted = r instanceof PipitError ? r.code : 'UNKNOWN';
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }

  private unary(b: Behaviour, rec: HandlerRecord) {
    return (payload: Buffer, ctx: HandlerContext): unknown => {
      this.begin(rec, payload, ctx);
      if (b.hold) {
        const d: Deferred<unknown> = deferred<unknown>();
        rec.waiting.push({
          release: (r) => {
            if (r.items !== undefined || r.itemsText !== undefined || r.end !== undefined) throw new ScenarioFailure('release of a unary handler with items or end');
            try {
              d.resolve(unaryResult(r));
            } catch (e) {
              d.reject(e);
            }
          },
        });
        return d.promise;
      }
      return unaryResult(b);
    };
  }

  private stream(b: Behaviour, rec: HandlerRecord) {
    const run = this;
    return async function* (payload: Buffer, ctx: HandlerContext): AsyncGenerator<Buffer | string> {
      run.begin(rec, payload, ctx);
      if (!b.hold) {
        for (const item of b.items ?? []) yield hexBytes(item);
        for (const item of b.itemsText ?? []) yield item;
        if (b.then?.fail !== undefined) throw failure(b.then.fail);
        if (b.then?.throw !== undefined) throw new Error(b.then.throw);
        return;
      }
      const queue: Array<Buffer | string> = [];
      let end: Release | null = null;
      let wake: (() => void) | null = null;
      const held: Held = {
        release: (r) => {
          if (end !== null) throw new ScenarioFailure('release of a stream handler that has ended');
          for (const h of (r.items ?? []) as Hex[]) queue.push(hexBytes(h));
          for (const t of (r.itemsText ?? []) as string[]) queue.push(t);
          if (r.end === true || r.fail !== undefined || r.throw !== undefined) end = r;
          else if (r.reply !== undefined || r.replyText !== undefined || r.empty !== undefined) throw new ScenarioFailure('release of a stream handler with a unary result');
          wake?.();
        },
      };
      rec.waiting.push(held);
      for (const r of rec.early.splice(0)) run.applyRelease(rec, held, r);
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        const e = end as Release | null;
        if (e !== null) {
          if (e.fail !== undefined) throw failure(e.fail as Failure);
          if (e.throw !== undefined) throw new Error(String(e.throw));
          return;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
    };
  }

  // ---- steps ----

  async step(step: Step): Promise<void> {
    const [key, v] = Object.entries(step)[0]! as [string, any];
    if (key.startsWith('expect')) {
      await this.settle();
      this.expect(key, v);
      return;
    }
    this.act(key, v);
    await this.settle();
  }

  private act(key: string, v: any): void {
    switch (key) {
      case 'call':
        return this.call(v);
      case 'cancel':
        return this.record(v).controller.abort();
      case 'consume': {
        const r = this.record(v.call);
        if (!r.stream || r.handle === undefined) throw new ScenarioFailure(`${v.call} is not a stream call`);
        if (r.handle.buffered < v.count) throw new ScenarioFailure(`consume ${v.count} from ${v.call}, but only ${r.handle.buffered} messages are waiting`);
        for (let i = 0; i < v.count; i++) void r.handle.next();
        return;
      }
      case 'goaway':
        return this.session.goAway();
      case 'release': {
        const rec = this.handlers.get(v.handler)!;
        const held = rec.waiting[0];
        if (held === undefined) {
          const [svc, m] = (v.handler as string).split('/') as [string, string];
          const b = this.scenario.services?.[svc]?.[m];
          if (b?.kind === 'stream' && b.hold) {
            rec.early.push(v);
            return;
          }
          throw new ScenarioFailure(`no invocation of ${v.handler} is waiting for a release`);
        }
        this.applyRelease(rec, held, v);
        return;
      }
      case 'advance':
        this.now += v;
        this.session.tick(this.now);
        return;
      case 'end': {
        if (this.session.closed) {
          this.session.transportClosed();
          return;
        }
        const tail = this.decoder.end();
        if (v.incomplete === true) {
          if (tail === null || tail.reason !== 'E_INCOMPLETE') throw new ScenarioFailure(`end incomplete, but the decoder holds no partial frame (${tail?.reason ?? 'none'})`);
          this.session.transportClosed(tail);
        } else {
          if (tail !== null) throw new ScenarioFailure(`end, but the decoder reports ${tail.reason}: use {"incomplete": true}`);
          this.session.transportClosed();
        }
        return;
      }
      case 'receive': {
        const frames = (v as SFrame[]).map(toVFrame);
        for (const f of frames) {
          if (f.type === 'HELLO') {
            for (const [k, val] of f.settings ?? []) if (k === 1) this.peerMaxFrameBytes = Math.min(MAX_FRAME_BYTES_LIMIT, Math.max(65536, val));
          }
        }
        this.feed(encodeFrames(frames));
        return;
      }
      case 'receiveHex':
        this.feed(Buffer.from(v, 'hex'));
        return;
      default:
        throw new ScenarioFailure(`unknown step ${key}`);
    }
  }

  applyRelease(rec: HandlerRecord, held: Held, r: Release): void {
    const ending = r.items === undefined && r.itemsText === undefined ? true : r.end === true || r.fail !== undefined || r.throw !== undefined;
    held.release(r);
    if (ending && rec.waiting[0] === held) rec.waiting.shift();
  }

  private feed(bytes: Buffer): void {
    // A fresh copy: the session may keep views of the bytes it is given.
    this.session.receive(this.decoder.push(Uint8Array.from(bytes)), this.now);
  }

  private call(v: any): void {
    const payload = v.payloadText !== undefined ? (v.payloadText as string) : hexBytes(v.payload as Hex);
    const controller = new AbortController();
    const options: Record<string, unknown> = { signal: controller.signal };
    if (v.timeoutMs !== undefined) options.timeout = v.timeoutMs;
    if (v.metadata !== undefined) options.metadata = Object.fromEntries(v.metadata as Array<[string, string]>);
    const rec: CallRecord = { stream: v.stream === true, controller, messages: [], finished: false, finishedAgain: false, error: null };
    this.calls.set(v.id, rec);
    if (rec.stream) {
      if (v.credit !== undefined) options.credit = v.credit;
      opening = rec;
      try {
        rec.handle = this.session.stream(v.service, v.method, payload, options, this.now);
      } finally {
        opening = null;
      }
      streamRecords.set(rec.handle, rec);
    } else {
      rec.unary = track(this.session.call(v.service, v.method, payload, options, this.now));
    }
  }

  private record(id: string): CallRecord {
    const r = this.calls.get(id);
    if (r === undefined) throw new ScenarioFailure(`unknown call ${id}`);
    return r;
  }

  /** Let ready work finish: take output and run macrotasks until nothing changes. */
  async settle(): Promise<void> {
    let quiet = 0;
    for (let round = 0; round < 200 && quiet < 3; round++) {
      const before = this.tap.frames.length;
      this.drain();
      await new Promise((r) => setImmediate(r));
      this.drain();
      quiet = this.tap.frames.length === before ? quiet + 1 : 0;
    }
    if (quiet < 3) throw new ScenarioFailure('the session did not go quiet');
  }

  private drain(): void {
    this.tap.drain();
    // Walk the words of everything written: each frame must fit the peer's frame limit.
    const raw = this.tap.raw(this.walked);
    let pos = 0;
    while (raw.length - pos >= 4) {
      const len = raw[pos]! | (raw[pos + 1]! << 8) | (raw[pos + 2]! << 16);
      if (raw.length - pos < 4 + len) break;
      if (4 + len > this.peerMaxFrameBytes && this.sizeProblem === null) {
        this.sizeProblem = `frame ${this.walkedFrames + 1} written is ${4 + len} bytes, above the peer's maxFrameBytes ${this.peerMaxFrameBytes}`;
      }
      pos += 4 + len;
      this.walkedFrames++;
    }
    this.walked += pos;
  }

  // ---- expectations ----

  /** Everything written so far decoded (the Tap throws otherwise) and fit the peer's frame limit. */
  checkWritten(): void {
    if (this.sizeProblem !== null) throw new ScenarioFailure(this.sizeProblem);
  }

  private expect(key: string, v: any): void {
    this.checkWritten();
    switch (key) {
      case 'expectSent':
        return this.expectSent(v as SFrame[]);
      case 'expectOutcome':
        return this.expectOutcome(v);
      case 'expectHandler':
        return this.expectHandler(v);
      case 'expectTables': {
        const got = { outgoing: this.session.outgoingCalls, incoming: this.session.incomingCalls };
        if (got.outgoing !== v.outgoing || got.incoming !== v.incoming) {
          throw new ScenarioFailure(`tables: expected outgoing ${v.outgoing}, incoming ${v.incoming}; the session has outgoing ${got.outgoing}, incoming ${got.incoming}`);
        }
        return;
      }
      case 'expectClosed': {
        if (!this.session.closed) throw new ScenarioFailure(`expected the connection closed (${v.error ?? 'cleanly'}); it is open`);
        const got = this.closedWith === undefined ? 'never reported' : this.closedWith === null ? null : this.closedWith.code;
        if (got !== v.error) {
          throw new ScenarioFailure(`expected closed with ${v.error ?? 'null (clean)'}; closed with ${got ?? 'null (clean)'}${this.closedWith ? ': ' + this.closedWith.message : ''}`);
        }
        return;
      }
      case 'expectOpen':
        if (this.session.closed) throw new ScenarioFailure(`expected the connection open; it closed with ${this.closedWith?.code ?? 'null (clean)'}${this.closedWith ? ': ' + this.closedWith.message : ''}`);
        return;
    }
  }

  private expectSent(expected: SFrame[]): void {
    const actual = this.tap.plain(this.checked);
    this.checked = this.tap.frames.length;
    const used = actual.map(() => false);
    const listing = (): string =>
      `\n  expected:\n    ${expected.map(showFrame).join('\n    ') || '(nothing)'}\n  sent:\n    ${actual.map(showFrame).join('\n    ') || '(nothing)'}`;
    let ai = 0;
    for (let ei = 0; ei < expected.length; ei++) {
      const e = expected[ei]!;
      while (ai < actual.length && used[ai]) ai++;
      if (ai >= actual.length) throw new ScenarioFailure(`expected frame ${ei + 1} ${showFrame(e)} was not sent${listing()}`);
      const a = actual[ai]!;
      used[ai] = true;
      if (e.fragmented) {
        const problem = this.matchFragmented(e, actual, ai, used);
        if (problem !== null) throw new ScenarioFailure(`frame ${ei + 1}: ${problem}${listing()}`);
      } else {
        const problem = frameMismatch(e, a);
        if (problem !== null) throw new ScenarioFailure(`frame ${ei + 1}: ${problem}${listing()}`);
      }
    }
    const extra = actual.filter((_, i) => !used[i]);
    if (extra.length > 0) throw new ScenarioFailure(`${extra.length} unexpected frame(s) sent, first ${showFrame(extra[0]!)}${listing()}`);
  }

  /** A message sent as a first fragment at `at` plus continuations later in `actual`. */
  private matchFragmented(e: SFrame, actual: VFrame[], at: number, used: boolean[]): string | null {
    const first = actual[at]!;
    const contType = e.type === 'REQUEST' ? 'DATA' : 'RESPONSE';
    const end = e.flags.includes('END');
    if (first.type !== e.type || first.id !== e.id) return `expected the first fragment of ${e.type} id ${e.id}, sent ${showFrame(first)}`;
    if (!first.flags.includes('FOLLOWS')) return `expected ${e.type} id ${e.id} fragmented (FOLLOWS on its first frame), sent ${showFrame(first)}`;
    const firstFlags = e.flags.filter((f) => f !== 'END').concat('FOLLOWS').filter((f, i, all) => all.indexOf(f) === i);
    const headless = { ...e, flags: sortFlags(firstFlags), payload: first.payload ?? '' } as SFrame;
    delete headless.payloadText;
    delete headless.fragmented;
    const head = frameMismatch(headless, first);
    if (head !== null) return `first fragment: ${head}`;
    const parts = [Buffer.from(first.payload ?? '', 'hex')];
    let last: VFrame | null = null;
    for (let j = at + 1; j < actual.length && last === null; j++) {
      const f = actual[j]!;
      if (used[j] || f.type !== contType || f.id !== e.id) continue;
      used[j] = true;
      if (f.flags.includes('TEXT')) return `continuation with TEXT: ${showFrame(f)}`;
      const follows = f.flags.includes('FOLLOWS');
      if (!follows) last = f;
      const want = follows ? ['FOLLOWS'] : end ? ['END'] : [];
      if (sortFlags(f.flags).join('|') !== want.join('|')) return `continuation flags ${f.flags.join('|') || 'none'}, expected ${want.join('|') || 'none'}: ${showFrame(f)}`;
      parts.push(Buffer.from(f.payload ?? '', 'hex'));
    }
    if (last === null) return `fragmented ${e.type} id ${e.id}: the last fragment was not sent`;
    const got = Buffer.concat(parts);
    const want = payloadOf(e);
    if (!got.equals(want)) return `fragmented ${e.type} id ${e.id}: payload ${show(got)}, expected ${show(want)}`;
    return null;
  }

  private expectOutcome(v: any): void {
    const r = this.record(v.call);
    const who = `call ${v.call}`;
    if (r.stream) {
      if (r.finishedAgain) throw new ScenarioFailure(`${who}: the stream was ended more than once`);
      if (v.ok !== undefined && v.ok !== true) throw new ScenarioFailure(`${who} is a stream: ok is true, messages go in "messages"`);
      if (v.okText !== undefined) throw new ScenarioFailure(`${who} is a stream: use messagesText`);
      const want = v.messages !== undefined ? (v.messages as Hex[]).map(hexBytes) : v.messagesText !== undefined ? (v.messagesText as string[]).map((t) => Buffer.from(t)) : null;
      if (want === null) throw new ScenarioFailure(`${who} is a stream: the outcome must list its messages`);
      const got = r.messages;
      if (got.length !== want.length || got.some((m, i) => !m.equals(want[i]!))) {
        throw new ScenarioFailure(`${who}: messages [${got.map(show).join(', ')}], expected [${want.map(show).join(', ')}]`);
      }
      if (v.pending) {
        if (r.finished) throw new ScenarioFailure(`${who}: expected pending, it ended with ${r.error ? r.error.code + ': ' + r.error.message : 'OK'}`);
        return;
      }
      if (!r.finished) throw new ScenarioFailure(`${who}: expected ${v.ok ? 'OK' : v.error ?? v.status}, it is still pending`);
      if (v.ok === true) {
        if (r.error !== null) throw new ScenarioFailure(`${who}: expected OK, it failed with ${r.error.code} (${r.error.status}): ${r.error.message}`);
        return;
      }
      return checkError(who, r.error, v);
    }
    if (v.messages !== undefined || v.messagesText !== undefined) throw new ScenarioFailure(`${who} is unary: use ok / okText`);
    const o = r.unary!;
    if (o.settlements > 1) throw new ScenarioFailure(`${who} settled ${o.settlements} times`);
    if (v.pending) {
      if (!o.pending) throw new ScenarioFailure(`${who}: expected pending, it ${o.error ? `failed with ${o.error.code}: ${o.error.message}` : `resolved with ${show(o.value!)}`}`);
      return;
    }
    if (o.pending) throw new ScenarioFailure(`${who}: expected ${v.error ?? v.status ?? 'a result'}, it is still pending`);
    if (v.ok !== undefined || v.okText !== undefined) {
      if (o.error !== undefined) throw new ScenarioFailure(`${who}: expected a result, it failed with ${o.error.code} (${o.error.status}): ${o.error.message}`);
      const want = v.okText !== undefined ? Buffer.from(v.okText as string) : hexBytes(v.ok as Hex);
      if (!o.value!.equals(want)) throw new ScenarioFailure(`${who}: resolved with ${show(o.value!)}, expected ${show(want)}`);
      return;
    }
    if (o.error === undefined) throw new ScenarioFailure(`${who}: expected ${v.error ?? v.status}, it resolved with ${show(o.value!)}`);
    checkError(who, o.error, v);
  }

  private expectHandler(v: any): void {
    const rec = this.handlers.get(v.handler)!;
    const who = `handler ${v.handler}`;
    if (v.calls !== undefined && rec.calls !== v.calls) throw new ScenarioFailure(`${who}: invoked ${rec.calls} times, expected ${v.calls}`);
    const others = Object.keys(v).filter((k) => k !== 'handler' && k !== 'calls');
    if (others.length === 0) return;
    if (rec.calls === 0) throw new ScenarioFailure(`${who}: never invoked, cannot check ${others.join(', ')}`);
    if (v.payload !== undefined || v.payloadText !== undefined) {
      const want = payloadOf(v);
      if (!rec.payload!.equals(want)) throw new ScenarioFailure(`${who}: payload ${show(rec.payload!)}, expected ${show(want)}`);
    }
    if (v.text !== undefined && rec.text !== v.text) throw new ScenarioFailure(`${who}: text ${rec.text}, expected ${v.text}`);
    if (v.metadata !== undefined) {
      const got = JSON.stringify(Object.entries(rec.metadata!).sort());
      const want = JSON.stringify([...(v.metadata as Array<[string, string]>)].sort());
      if (got !== want) throw new ScenarioFailure(`${who}: metadata ${got}, expected ${want}`);
    }
    if (v.deadlineMs !== undefined && rec.deadlineMs !== v.deadlineMs) throw new ScenarioFailure(`${who}: deadlineMs ${rec.deadlineMs}, expected ${v.deadlineMs}`);
    if (v.aborted !== undefined && rec.aborted !== v.aborted) throw new ScenarioFailure(`${who}: aborted ${rec.aborted ?? 'null'}, expected ${v.aborted ?? 'null'}`);
  }
}

function unaryResult(r: Release): unknown {
  if (r.reply !== undefined) return hexBytes(r.reply as Hex);
  if (r.replyText !== undefined) return r.replyText as string;
  if (r.empty === true) return undefined;
  if (r.fail !== undefined) throw failure(r.fail as Failure);
  if (r.throw !== undefined) throw new Error(String(r.throw));
  throw new ScenarioFailure('a unary result needs reply, replyText, empty, fail or throw');
}

function checkError(who: string, e: PipitError | null | undefined, v: any): void {
  if (e === null || e === undefined) throw new ScenarioFailure(`${who}: expected ${v.error ?? v.status}, it ended OK`);
  if (v.error !== undefined && e.code !== v.error) throw new ScenarioFailure(`${who}: failed with ${e.code} (${e.status}): ${e.message}; expected ${v.error}`);
  if (v.status !== undefined && e.status !== v.status) throw new ScenarioFailure(`${who}: failed with status ${e.status} (${e.code}): ${e.message}; expected status ${v.status}`);
  if (v.messagePrefix !== undefined && !e.message.startsWith(v.messagePrefix)) {
    throw new ScenarioFailure(`${who}: message ${JSON.stringify(e.message)} does not start with ${JSON.stringify(v.messagePrefix)}`);
  }
}

function sortFlags(flags: string[]): string[] {
  return [...flags].sort((a, b) => FLAG_ORDER.indexOf(a) - FLAG_ORDER.indexOf(b));
}

/** A scenario frame as a vector frame (hex payload), for the encoder. */
function toVFrame(f: SFrame): VFrame {
  const v: VFrame = { type: f.type, flags: f.flags, id: f.id };
  if (f.service !== undefined) v.service = f.service;
  if (f.method !== undefined) v.method = f.method;
  if (f.ext !== undefined) v.ext = f.ext;
  if (f.payload !== undefined || f.payloadText !== undefined) v.payload = payloadOf(f).toString('hex');
  if (f.code !== undefined) v.code = f.code;
  if (f.message !== undefined) v.message = f.message;
  if (f.credit !== undefined) v.credit = f.credit;
  if (f.settings !== undefined) v.settings = f.settings;
  return v;
}

/** Why the frame written does not match the expectation, or null. */
export function frameMismatch(e: SFrame, a: VFrame): string | null {
  const bad = (what: string): string => `${what}: expected ${showFrame(e)}, sent ${showFrame(a)}`;
  if (a.type !== e.type) return bad('type');
  if (sortFlags(a.flags).join('|') !== sortFlags(e.flags).join('|')) return bad('flags');
  if (a.id !== e.id) return bad('id');
  switch (e.type) {
    case 'HELLO': {
      const set = (s: Array<[number, number]>): string => JSON.stringify(s.map((x) => `${x[0]}=${x[1]}`).sort());
      if (set(a.settings ?? []) !== set(e.settings ?? [])) return bad('settings');
      return null;
    }
    case 'REQUEST':
      if (a.service !== e.service || a.method !== e.method) return bad('names');
      if (JSON.stringify(normExt(a.ext)) !== JSON.stringify(normExt(e.ext))) return bad('ext');
      if (!Buffer.from(a.payload ?? '', 'hex').equals(payloadOf(e))) return bad('payload');
      return null;
    case 'RESPONSE':
    case 'DATA':
      if (!Buffer.from(a.payload ?? '', 'hex').equals(payloadOf(e))) return bad('payload');
      return null;
    case 'STATUS':
    case 'GOAWAY':
    case 'ERROR':
      if (a.code !== e.code) return bad('code');
      if (e.message !== undefined && a.message !== e.message) return bad('message');
      if (e.messagePrefix !== undefined && !(a.message ?? '').startsWith(e.messagePrefix)) return bad('message prefix');
      return null;
    case 'CREDIT':
      if (a.credit !== e.credit) return bad('credit');
      return null;
    default:
      return null;
  }
}

function normExt(x: SFrame['ext'] | undefined): unknown {
  if (x === undefined) return null;
  return { deadlineMs: x.deadlineMs ?? null, credit: x.credit ?? null, metadata: x.metadata ?? null };
}
