#!/usr/bin/env node
// Lightning Flow Scanner (lightning-flow-scanner-core 5.9.7), offline, with its default rules
// over every flow under force-app/ (or the flow files given).
//
// Prints one JSON object: {"flows": N, "rules": [names], "exceptions": {...}, "results": [{flow,
// rule, severity, element, type}]}. Exits 1 when a result has severity "error" or a rule could not
// run on a flow; warnings and notes are reported, not fatal. Usage: node scripts/flow-scanner.mjs [file ...]
//
// The default rules run unchanged; the one exception is EXCEPTIONS below, each with its reason
// (also listed in docs/salesforce-setup.md).
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import scanner from 'lightning-flow-scanner-core';

const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// InactiveFlow flags every flow that is not Active. The two Closed Won templates ship as Draft on
// purpose: the admin activates exactly one of them after entering the API key (both active would
// provision every Opportunity twice), and an Active flow deployed to production starts
// provisioning at once. The Closed Lost template ships as Draft for the same reason: active, it
// would start cancelling subscriptions on deploy. Only their Draft status is excused; the
// write-back flow ships Active.
export const EXCEPTIONS = {
  Stigg_Opportunity_Closed_Lost_Cancel: { InactiveFlow: ['Draft'] },
  Stigg_Opportunity_Closed_Won: { InactiveFlow: ['Draft'] },
  Stigg_Opportunity_Closed_Won_Bulk: { InactiveFlow: ['Draft'] },
};

function flowFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return flowFiles(full);
    return name.endsWith('.flow-meta.xml') ? [full] : [];
  });
}

const files = process.argv.length > 2
  ? process.argv.slice(2).map((file) => path.resolve(file))
  : flowFiles(path.join(projectDir, 'force-app'));
if (files.length === 0) {
  console.error('flow-scanner: no .flow-meta.xml files found');
  process.exit(1);
}

const parsed = await scanner.parse(files);
const unparsed = parsed.filter((flow) => flow.errorMessage || !flow.flow);
const scanned = scanner.scan(parsed.filter((flow) => !unparsed.includes(flow)), { exceptions: EXCEPTIONS });
const rules = scanner.getRules().map((rule) => rule.name);

const results = [];
const ruleErrors = unparsed.map((flow) => `${flow.uri}: ${flow.errorMessage}`);
for (const { flow, ruleResults } of scanned) {
  const flowFile = path.relative(projectDir, flow.fsPath ?? flow.uri ?? flow.name);
  for (const result of ruleResults) {
    if (result.errorMessage) ruleErrors.push(`${flowFile}: ${result.ruleName}: ${result.errorMessage}`);
    if (!result.occurs) continue;
    for (const detail of result.details) {
      results.push({
        flow: flowFile,
        rule: result.ruleName,
        severity: result.severity,
        element: detail.name,
        type: detail.type,
      });
    }
  }
}
process.stdout.write(`${JSON.stringify({ flows: scanned.length, rules, exceptions: EXCEPTIONS, results }, null, 2)}\n`);

for (const result of results) {
  console.error(`${result.flow} ${result.severity} ${result.rule}: ${result.element} (${result.type})`);
}
const errors = results.filter((result) => result.severity === 'error');
for (const error of ruleErrors) console.error(`flow-scanner: ${error}`);
console.error(
  `flow-scanner: ${scanned.length} flows, ${rules.length} rules, ${results.length} results, ` +
    `${errors.length} errors`,
);
process.exit(errors.length || ruleErrors.length ? 1 : 0);
