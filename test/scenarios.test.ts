/**
 * The session scenarios of spec/scenarios/*.json, run against the TypeScript session: one
 * test per scenario, named `<section> <name>`. The format is spec/scenarios/README.md.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { lintFile, loadScenarios, runScenario } from './helpers/scenario-runner.js';

const dir = fileURLToPath(new URL('../spec/scenarios/', import.meta.url));
const all = loadScenarios(dir);

describe('scenario files', () => {
  it('are well-formed, with unique names', () => {
    const problems: string[] = [];
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
      for (const p of lintFile(JSON.parse(readFileSync(dir + file, 'utf8')))) problems.push(`${file}: ${p}`);
    }
    const seen = new Set<string>();
    for (const { file, scenario } of all) {
      if (seen.has(scenario.name)) problems.push(`${file}: name ${scenario.name} is used twice`);
      seen.add(scenario.name);
    }
    expect(problems).toEqual([]);
    expect(all.length).toBeGreaterThan(0);
  });
});

for (const file of [...new Set(all.map((s) => s.file))]) {
  describe(file, () => {
    for (const { scenario } of all.filter((s) => s.file === file)) {
      it(`${scenario.section} ${scenario.name}`, async () => {
        await runScenario(scenario);
      });
    }
  });
}

/**
 * The runner must not pass anything: each corruption of a scenario that passes is rejected
 * at the corrupted step (or, for a malformed scenario, before it runs).
 */
type Mutation = [what: string, scenario: string, step: number | 'lint', change: (s: any) => void];
const mutations: Mutation[] = [
  ['wrong id', 'unary-folded-response', 2, (s) => (s.steps[1].expectSent[0].id = 1)],
  ['wrong payload', 'unary-folded-response', 2, (s) => (s.steps[1].expectSent[0].payload = '6868')],
  ['missing frame', 'stream-serve-respects-credit', 7, (s) => s.steps[6].expectSent.pop()],
  ['extra frame', 'ping-answered-with-pong', 2, (s) => s.steps[1].expectSent.push({ type: 'PONG', flags: [], id: 43 })],
  ['frames out of order', 'ping-answered-with-pong', 2, (s) => s.steps[1].expectSent.reverse()],
  ['nothing expected, something sent', 'stream-grants-half-window', 8, (s) => (s.steps[7].expectSent = [])],
  ['wrong flags', 'unary-serve-folded-reply', 2, (s) => (s.steps[1].expectSent[0].flags = [])],
  ['wrong ext', 'deadline-caller-expires', 2, (s) => (s.steps[1].expectSent[0].ext.deadlineMs = 101)],
  ['ext expected absent', 'stream-explicit-window-sends-credit-ext', 2, (s) => { delete s.steps[1].expectSent[0].ext; s.steps[1].expectSent[0].flags = ['STREAM']; }],
  ['wrong status code', 'unary-serve-unknown-method', 2, (s) => (s.steps[1].expectSent[0].code = 2)],
  ['wrong message prefix', 'codec-bad-flags', 4, (s) => (s.steps[3].expectSent[0].messagePrefix = 'E_BAD_VARINT')],
  ['wrong HELLO setting', 'hello-announces-own-limits', 1, (s) => (s.steps[0].expectSent[0].settings[2][1] = 9)],
  ['wrong result', 'unary-folded-response', 4, (s) => (s.steps[3].expectOutcome.ok = '6f6c')],
  ['pending when settled', 'unary-folded-response', 4, (s) => (s.steps[3].expectOutcome = { call: 'c1', pending: true })],
  ['wrong error name', 'unary-status-error', 4, (s) => (s.steps[3].expectOutcome.error = 'UNKNOWN_SERVICE')],
  ['wrong status number', 'unary-reserved-code-is-unknown', 4, (s) => (s.steps[3].expectOutcome.status = 43)],
  ['missing stream message', 'stream-messages-then-status-ok', 6, (s) => s.steps[5].expectOutcome.messages.pop()],
  ['ok instead of error', 'stream-error-keeps-delivered-messages', 4, (s) => { delete s.steps[3].expectOutcome.error; delete s.steps[3].expectOutcome.status; delete s.steps[3].expectOutcome.messagePrefix; s.steps[3].expectOutcome.ok = true; }],
  ['wrong table count', 'ids-held-after-cancel-until-terminal', 6, (s) => (s.steps[5].expectTables.outgoing = 0)],
  ['open when closed', 'unary-second-message-is-protocol-error', 8, (s) => (s.steps[7] = { expectOpen: {} })],
  ['clean when failed', 'unary-second-message-is-protocol-error', 8, (s) => (s.steps[7].expectClosed.error = null)],
  ['wrong handler count', 'unary-serve-folded-reply', 3, (s) => (s.steps[2].expectHandler.calls = 2)],
  ['wrong handler payload', 'unary-serve-folded-reply', 3, (s) => (s.steps[2].expectHandler.payload = '6868')],
  ['wrong abort reason', 'cancel-served-unary', 6, (s) => (s.steps[5].expectHandler.aborted = 'DEADLINE_EXCEEDED')],
  ['wrong handler deadline', 'deadline-responder-expires', 2, (s) => (s.steps[1].expectHandler.deadlineMs = 49)],
  ['wrong fragmented payload', 'frag-send-large-request', 2, (s) => (s.steps[1].expectSent[0].payload.times = 69999)],
  ['fragmented when sent whole', 'hello-max-frame-bytes-above-max', 3, (s) => (s.steps[2].expectSent[0].fragmented = true)],
  ['release with nothing held', 'unary-serve-folded-reply', 3, (s) => { s.services.db.slow = { kind: 'unary', hold: true }; s.steps.splice(2, 0, { release: { handler: 'db/slow', empty: true } }); }],
  ['consume more than arrived', 'stream-grants-half-window', 4, (s) => (s.steps[3] = { consume: { call: 'c1', count: 5 } })],
  ['misspelt key', 'stream-messages-then-status-ok', 'lint', (s) => { s.steps[5].expectOutcome.messagesTxt = s.steps[5].expectOutcome.messages; delete s.steps[5].expectOutcome.messages; }],
  ['frame field of another type', 'unary-folded-response', 'lint', (s) => (s.steps[1].expectSent[0].code = 0)],
];

describe('runner strictness', () => {
  const byName = new Map(all.map((s) => [s.scenario.name, s.scenario]));
  for (const [what, name, step, change] of mutations) {
    it(`rejects ${name} with ${what}`, async () => {
      const base = byName.get(name);
      expect(base, `scenario ${name}`).toBeDefined();
      await runScenario(base!);
      const bad = structuredClone(base!);
      change(bad);
      const error = await runScenario(bad).then(() => null, (e: unknown) => e as Error);
      expect(error, `${what} was not noticed`).not.toBeNull();
      expect(error!.message).toMatch(step === 'lint' ? /^malformed scenario/ : new RegExp(`^${name}: step ${step} `));
    });
  }
});
