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
