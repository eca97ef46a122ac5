// Test support: the official schema and graphql-js (schema.sh + install.sh into the peers folder that
// up.sh uses, so they are fetched once), an in-process emulator on a free port, a GraphQL client.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PEER = path.resolve(HERE, '..');
const ROOT = path.resolve(PEER, '../../..');
export const DIR = path.join(process.env.FERRY_PEERS_DIR || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'peers'), 'shopify');

export function schemaFile() {
  if (!process.env.SHOPIFY_SCHEMA) {
    process.env.SHOPIFY_SCHEMA = execFileSync(path.join(PEER, 'schema.sh'), [DIR], { encoding: 'utf8' }).trim();
    execFileSync(path.join(PEER, 'install.sh'), [DIR], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return process.env.SHOPIFY_SCHEMA;
}

export const TOKEN = 'ferry-test-token';
export async function start(env = {}) {
  schemaFile();
  const { createEmulator } = await import(path.join(PEER, 'server.mjs'));
  const emu = createEmulator({ quiet: true, env: { SHOPIFY_BULK_DELAY_MS: '20', ...env } });
  const port = await emu.listen(0);
  const base = `http://127.0.0.1:${port}`;
  const post = async (p, body) => {
    const r = await fetch(base + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body ?? {}) });
    const j = await r.json();
    if (!r.ok) throw new Error(`${p}: HTTP ${r.status} ${JSON.stringify(j)}`);
    return j;
  };
  return {
    emu, base,
    // the raw answer: {data, errors, extensions}
    async gql(query, variables, token = TOKEN) {
      const r = await fetch(`${base}/admin/api/2026-10/graphql.json`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-shopify-access-token': token }, body: JSON.stringify({ query, variables }) });
      return { status: r.status, ...(await r.json()) };
    },
    // data, failing on GraphQL errors
    async data(query, variables) {
      const r = await this.gql(query, variables);
      if (r.errors) throw new Error(`GraphQL errors: ${JSON.stringify(r.errors)}`);
      return r.data;
    },
    post,
    state: async () => (await fetch(base + '/_emulator/state')).json(),
    close: () => emu.close(),
  };
}

export const PRODUCT_SET = `mutation SetProduct($input: ProductSetInput!, $identifier: ProductSetIdentifiers) {
  productSet(input: $input, identifier: $identifier, synchronous: true) {
    product { id handle title status updatedAt variants(first: 20) { nodes { id sku price inventoryItem { id } selectedOptions { name value } } } }
    userErrors { field message code }
  }
}`;

// a product with one variant per SKU (option Size), stocked at `stock` {locationName: qty} per SKU
export async function seedProduct(t, handle, skus, { price = '10.00' } = {}) {
  const d = await t.data(PRODUCT_SET, { identifier: { handle }, input: { title: handle, handle, status: 'ACTIVE',
    productOptions: [{ name: 'Size', values: skus.map(s => ({ name: s })) }],
    variants: skus.map(s => ({ sku: s, price, optionValues: [{ optionName: 'Size', name: s }] })) } });
  if (d.productSet.userErrors.length) throw new Error(JSON.stringify(d.productSet.userErrors));
  return d.productSet.product;
}
