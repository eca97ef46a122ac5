// Finds the pinned graphql-js that install.sh put in DIR/node_modules. ES modules ignore NODE_PATH, so
// this resolves it explicitly, from the first of: $SHOPIFY_NODE_MODULES, DIR/node_modules for each
// hint directory given (the schema's folder for validate.mjs, the peer DIR for server.mjs), $NODE_PATH.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';

export function loadGraphql(...hintDirs) {
  const candidates = [
    process.env.SHOPIFY_NODE_MODULES,
    ...hintDirs.map(d => path.join(d, 'node_modules')),
    ...(process.env.NODE_PATH || '').split(path.delimiter),
  ].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'graphql', 'package.json'))) {
      return createRequire(path.join(path.resolve(dir), '_'))('graphql');
    }
  }
  throw new Error(`graphql-js not found in ${candidates.join(', ') || '(no candidates)'}: run scripts/peers/shopify/install.sh DIR`);
}

// Reads an introspection result ({"data":{"__schema"}} or {"__schema"}) and builds the client schema.
export function loadSchema(graphql, schemaFile) {
  const json = JSON.parse(fs.readFileSync(schemaFile, 'utf8'));
  return graphql.buildClientSchema(json.data ?? json, { assumeValid: true });
}
