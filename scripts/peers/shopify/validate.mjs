#!/usr/bin/env node
// scripts/peers/shopify/validate.mjs SCHEMA.json FILE.graphql…
//
// Validates each GraphQL document against Shopify's Admin schema (an introspection result, from
// schema.sh) with graphql-js's buildClientSchema + validate — the same rules Shopify's server applies
// before running a query: unknown fields/arguments/types, wrong argument and variable types, missing
// required arguments, fragments on the wrong type, unused or undefined variables, and so on.
// Prints every error as FILE:LINE:COLUMN: message (one line each, to stderr), a summary line, and exits
// 1 when any document has an error (2 on usage or unreadable input).
// graphql-js comes from install.sh DIR: DIR/node_modules beside the schema, or $SHOPIFY_NODE_MODULES.
import fs from 'node:fs';
import path from 'node:path';
import { loadGraphql, loadSchema } from './load-graphql.mjs';

const [schemaFile, ...files] = process.argv.slice(2);
if (!schemaFile || files.length === 0) {
  console.error('usage: validate.mjs SCHEMA.json FILE.graphql…');
  process.exit(2);
}
let graphql, schema;
try {
  graphql = loadGraphql(path.dirname(path.resolve(schemaFile)));
  schema = loadSchema(graphql, schemaFile);
} catch (e) {
  console.error(`validate.mjs: ${schemaFile}: ${e.message}`);
  process.exit(2);
}

let failed = 0;
for (const file of files) {
  let text;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) { console.error(`${file}: ${e.message}`); process.exit(2); }
  let errors;
  try {
    const doc = graphql.parse(new graphql.Source(text, file));
    errors = graphql.validate(schema, doc);
  } catch (e) {
    errors = [e]; // a GraphQLError from parse (syntax)
  }
  for (const err of errors) {
    const locs = err.locations?.length ? err.locations : [{ line: 0, column: 0 }];
    for (const { line, column } of locs.slice(0, 1)) console.error(`${file}:${line}:${column}: ${err.message}`);
  }
  if (errors.length) failed++;
}
console.error(`validate.mjs: ${files.length - failed} of ${files.length} document(s) valid against ${path.basename(schemaFile)}`);
process.exit(failed ? 1 : 0);
