#!/usr/bin/env node
// Offline syntax check of every Apex class and trigger under force-app/ with
// @apexdevtools/apex-parser (the ANTLR grammar of the Apex language). Syntax only: types, method
// names and SOQL fields are checked by the platform compiler on deploy, not here.
// Every .cls also needs its .cls-meta.xml. Exits non-zero on the first file with an error, after
// reporting all of them. Usage: node scripts/parse-apex.mjs [file ...]
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApexErrorListener, ApexParserFactory } from '@apexdevtools/apex-parser';

const projectDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

class CollectingListener extends ApexErrorListener {
  constructor() {
    super();
    this.errors = [];
  }

  apexSyntaxError(line, column, message) {
    this.errors.push(`${line}:${column} ${message}`);
  }
}

function apexFiles(dir) {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return apexFiles(full);
    return /\.(cls|trigger)$/.test(name) ? [full] : [];
  });
}

const files = process.argv.length > 2
  ? process.argv.slice(2).map((file) => path.resolve(file))
  : apexFiles(path.join(projectDir, 'force-app'));
if (files.length === 0) {
  console.error('parse-apex: no .cls or .trigger files found');
  process.exit(1);
}

let failed = 0;
for (const file of files) {
  const listener = new CollectingListener();
  const { parser } = ApexParserFactory.createLexerAndParser(readFileSync(file, 'utf8'), listener);
  if (file.endsWith('.trigger')) parser.triggerUnit();
  else parser.compilationUnit();
  if (!existsSync(`${file}-meta.xml`)) listener.errors.push(`missing ${path.basename(file)}-meta.xml`);
  const shown = path.relative(projectDir, file);
  if (listener.errors.length) {
    failed += 1;
    for (const error of listener.errors) console.error(`${shown}:${error}`);
  } else {
    console.log(`ok ${shown}`);
  }
}
if (failed) {
  console.error(`parse-apex: ${failed} of ${files.length} files have syntax errors`);
  process.exit(1);
}
console.log(`parse-apex: ${files.length} files parsed without errors`);
