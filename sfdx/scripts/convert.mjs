#!/usr/bin/env node
// Offline check of the Salesforce DX project: resolve every file under force-app/ with
// @salesforce/source-deploy-retrieve (the library behind `sf project convert source` and
// `sf project deploy start`), convert it to Metadata API format in .build/metadata, and print
// the package.xml. Exits non-zero when a file cannot be resolved, a component this project must
// ship is missing, or the External Service registration does not get its spec inlined.
//
// SDR does not validate XML content (unknown or misplaced elements convert silently); the Python
// tests in tests/contract/ check element order and values. Usage: node scripts/convert.mjs
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ComponentSet, MetadataConverter, RegistryAccess } from '@salesforce/source-deploy-retrieve';

const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outputDir = path.join(projectDir, '.build', 'metadata');

// Every component the admin guide and the flow rely on. Keep in step with force-app/.
export const EXPECTED = {
  ApexClass: [
    'StiggBatchClient',
    'StiggBatchMock',
    'StiggBatchPoller',
    'StiggBatchPollerTest',
    'StiggBulkProvisioning',
    'StiggBulkProvisioningTest',
    'StiggProvisioningEvents',
  ],
  CustomField: [
    'Account.Stigg_Customer_ID__c',
    'Account.Stigg_Customer_URL__c',
    'Opportunity.Stigg_Provisioning_Error__c',
    'Opportunity.Stigg_Provisioning_Status__c',
    'Opportunity.Stigg_Subscription_ID__c',
    'Opportunity.Stigg_Subscription_URL__c',
    'OpportunityLineItem.Stigg_ID__c',
    'OpportunityLineItem.Stigg_Type__c',
    'Product2.Stigg_ID__c',
    'Product2.Stigg_Type__c',
    'Stigg_Bulk_Setting__mdt.Max_Poll_Age_Minutes__c',
    'Stigg_Bulk_Setting__mdt.Prefer_Wait_Seconds__c',
    'Stigg_Provisioning_Result__e.Batch_ID__c',
    'Stigg_Provisioning_Result__e.Error_Code__c',
    'Stigg_Provisioning_Result__e.Error_Message__c',
    'Stigg_Provisioning_Result__e.Idempotency_Key__c',
    'Stigg_Provisioning_Result__e.Operation__c',
    'Stigg_Provisioning_Result__e.Retryable__c',
    'Stigg_Provisioning_Result__e.Salesforce_Record_ID__c',
    'Stigg_Provisioning_Result__e.Status__c',
    'Stigg_Provisioning_Result__e.Stigg_Customer_ID__c',
    'Stigg_Provisioning_Result__e.Stigg_Customer_URL__c',
    'Stigg_Provisioning_Result__e.Stigg_Subscription_ID__c',
    'Stigg_Provisioning_Result__e.Stigg_Subscription_URL__c',
  ],
  CustomMetadata: ['Stigg_Bulk_Setting.Default'],
  CustomObject: ['Stigg_Bulk_Setting__mdt', 'Stigg_Provisioning_Result__e'],
  ExternalCredential: ['StiggActions'],
  ExternalServiceRegistration: ['StiggActions'],
  Flow: [
    'Stigg_Opportunity_Closed_Lost_Cancel',
    'Stigg_Opportunity_Closed_Won',
    'Stigg_Opportunity_Closed_Won_Bulk',
    'Stigg_Provisioning_Result_Writeback',
  ],
  NamedCredential: ['StiggActions'],
  PermissionSet: ['Stigg_Actions'],
};

function fail(message) {
  console.error(`convert: ${message}`);
  process.exit(1);
}

// SDR 12.37.0 finds the parent of a decomposed ESR spec with path.replace('yaml', ...), which
// breaks on the first "yaml" anywhere in the path. Work with paths relative to the project so
// only the file extension can match, and refuse a project folder that would still trip it.
process.chdir(projectDir);
const sourceDir = 'force-app';
if (/yaml/i.test(sourceDir)) fail('the source folder name must not contain "yaml" (SDR 12.37 bug)');

const registry = new RegistryAccess(undefined, projectDir);
if (!registry.getTypeByName('ExternalServiceRegistration').children) {
  fail('sfdx-project.json must enable sourceBehaviorOptions "decomposeExternalServiceRegistrationBeta"');
}

let components;
try {
  components = ComponentSet.fromSource({ fsPaths: [sourceDir], registry });
} catch (error) {
  // TypeInferenceError: a file whose suffix or folder SDR cannot map to a metadata type.
  fail(`${error.name}: ${error.message}`);
}

// SDR skips files it cannot map (e.g. Foo.flow-meta.txt, a spec with the wrong name) without a
// word, so compare every file under force-app/ with the files the resolved components claim.
function filesUnder(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? filesUnder(full) : [full];
  });
}
const found = new Map();
const claimed = new Set();
function claim(component) {
  if (component.xml) claimed.add(path.normalize(component.xml));
  for (const file of component.walkContent()) claimed.add(path.normalize(file));
  for (const child of component.getChildren()) claim(child);
}
function register(component) {
  // Fields of an object that is itself in force-app/ (the platform event, the custom metadata
  // type) are children of their CustomObject; fields of standard objects are components of their own.
  if (!found.has(component.type.name)) found.set(component.type.name, new Set());
  found.get(component.type.name).add(component.fullName);
  for (const child of component.getChildren()) register(child);
}
for (const component of components.getSourceComponents()) {
  const typeName = component.type.name;
  register(component);
  claim(component);
  if (typeName === 'ExternalServiceRegistration') {
    // The decomposed spec: DecomposeExternalServiceRegistrationTransformer reads <fullName>.yaml.
    claimed.add(path.normalize(path.join(path.dirname(component.xml), `${component.fullName}.yaml`)));
  }
}
const unresolved = filesUnder(sourceDir).filter((file) => !claimed.has(path.normalize(file)));
if (unresolved.length) {
  fail(
    `files no metadata component resolves: ${unresolved.join(', ')} ` +
      '(a registration spec must be named externalServiceRegistrations/<Name>.yaml, even with JSON content)',
  );
}
const missing = [];
for (const [typeName, names] of Object.entries(EXPECTED)) {
  for (const name of names) {
    if (!found.get(typeName)?.has(name)) missing.push(`${typeName}:${name}`);
  }
}
if (missing.length) fail(`missing components: ${missing.join(', ')}`);

rmSync(outputDir, { recursive: true, force: true });
let result;
try {
  result = await new MetadataConverter(registry).convert(components, 'metadata', {
    type: 'directory',
    outputDirectory: outputDir,
    genUniqueDir: false,
  });
} catch (error) {
  // e.g. ENOENT for externalServiceRegistrations/StiggActions.yaml (the spec must have that name).
  fail(`${error.name}: ${error.message}`);
}
if (!result.packagePath) fail('conversion wrote nothing');

// The decomposed spec (externalServiceRegistrations/StiggActions.yaml) must come back inlined.
const esrFile = path.join(outputDir, 'externalServiceRegistrations', 'StiggActions.externalServiceRegistration');
if (!existsSync(esrFile)) fail(`${esrFile} was not written`);
const esr = readFileSync(esrFile, 'utf8');
if (!/<schema>[\s\S]*openapi[\s\S]*<\/schema>/.test(esr)) fail('StiggActions has no inlined <schema> after conversion');

const packageXml = readFileSync(path.join(outputDir, 'package.xml'), 'utf8');
process.stdout.write(packageXml);
const total = [...found.values()].reduce((n, names) => n + names.size, 0);
console.error(`convert: ${total} components resolved and converted to ${path.relative(projectDir, outputDir)}`);
