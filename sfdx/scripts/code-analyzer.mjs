#!/usr/bin/env node
// Salesforce Code Analyzer, offline: @salesforce/code-analyzer-core with the PMD engine (Apex,
// Java 17) and the Flow engine (Flow Scanner, Python >= 3.10), on the Recommended rules over
// force-app/ (or the folders given). The same engines `sf code-analyzer run` uses, without the
// CLI or an org.
//
// Prints one JSON object: {"engines": [...], "rules": N, "violations": [{engine, rule,
// severity, file, line, message}]}. Exits 1 when a violation has severity 1 (Critical) or 2
// (High), or when an engine fails; 0 otherwise (lower severities are reported, not fatal).
// Usage: node scripts/code-analyzer.mjs [folder ...]
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CodeAnalyzer, CodeAnalyzerConfig, EventType, LogLevel } from '@salesforce/code-analyzer-core';
import * as pmdEngine from '@salesforce/code-analyzer-pmd-engine';
import * as flowEngine from '@salesforce/code-analyzer-flow-engine';

const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FATAL_SEVERITIES = new Set([1, 2]);

// Compatibility shim. Core 0.52 detaches its log listener from every engine with
// engine.removeEventListener(...), which engine-api 0.42 defines on EngineEventEmitter. The Flow
// engine 0.22 is built on engine-api 0.24, whose Engine has onEvent but no removeEventListener,
// so core fails with "engine.removeEventListener is not a function". Define it exactly as newer
// engine-api versions do (EventEmitter.off on the engine's own emitter), only where it is missing.
const require = createRequire(import.meta.url);
const flowEngineApi = require(
  require.resolve('@salesforce/code-analyzer-engine-api', {
    paths: [path.dirname(require.resolve('@salesforce/code-analyzer-flow-engine'))],
  }),
);
if (typeof flowEngineApi.Engine.prototype.removeEventListener !== 'function') {
  flowEngineApi.Engine.prototype.removeEventListener = function removeEventListener(eventType, callback) {
    this.eventEmitter.off(eventType, callback);
  };
}

const targets = process.argv.length > 2
  ? process.argv.slice(2).map((target) => path.resolve(target))
  : [path.join(projectDir, 'force-app')];

const workDir = mkdtempSync(path.join(os.tmpdir(), 'stigg-code-analyzer-'));
let exitCode = 0;
try {
  const config = CodeAnalyzerConfig.fromObject(
    { log_folder: workDir, root_working_folder: workDir, log_level: 'Warn' },
    projectDir,
  );
  const analyzer = new CodeAnalyzer(config);
  const engineErrors = [];
  analyzer.onEvent(EventType.LogEvent, (event) => {
    if (event.logLevel === LogLevel.Error) engineErrors.push(event.message);
  });
  await analyzer.addEnginePlugin(pmdEngine.createEnginePlugin());
  await analyzer.addEnginePlugin(flowEngine.createEnginePlugin());

  const workspace = await analyzer.createWorkspace(targets);
  const selection = await analyzer.selectRules(['pmd:Recommended', 'flow:Recommended'], { workspace });
  const results = await analyzer.run(selection, { workspace });

  const violations = results.getViolations().map((violation) => {
    const rule = violation.getRule();
    const location = violation.getPrimaryLocation();
    return {
      engine: rule.getEngineName(),
      rule: rule.getName(),
      severity: rule.getSeverityLevel(),
      file: location.getFile() ? path.relative(projectDir, location.getFile()) : null,
      line: location.getStartLine() ?? null,
      message: violation.getMessage().trim(),
    };
  });
  const engines = results.getEngineNames().map((name) => {
    const engineResults = results.getEngineRunResults(name);
    return { name, version: engineResults.getEngineVersion() };
  });
  const rules = selection.getCount();
  process.stdout.write(`${JSON.stringify({ engines, rules, violations }, null, 2)}\n`);

  const fatal = violations.filter((violation) => FATAL_SEVERITIES.has(violation.severity));
  for (const violation of violations) {
    console.error(
      `${violation.file}:${violation.line} sev${violation.severity} ${violation.engine}:${violation.rule} ${violation.message}`,
    );
  }
  if (engineErrors.length) {
    console.error(`code-analyzer: engine errors:\n${engineErrors.join('\n')}`);
    exitCode = 1;
  }
  for (const engine of ['pmd', 'flow']) {
    if (!selection.getRulesFor(engine).length) {
      console.error(`code-analyzer: no ${engine} rule was selected`);
      exitCode = 1;
    }
  }
  if (fatal.length) exitCode = 1;
  console.error(
    `code-analyzer: ${rules} rules, ${violations.length} violations, ${fatal.length} of severity 1-2`,
  );
} finally {
  rmSync(workDir, { recursive: true, force: true });
}
process.exit(exitCode);
