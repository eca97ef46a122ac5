// The GraphQL surface: validation against the official schema, authentication, query cost and throttling.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { start, schemaFile, seedProduct, PEER } from './helpers.mjs';

let t;
before(async () => { t = await start(); });
after(async () => { await t.close(); });

test('a document the 2026-10 schema does not accept is rejected before anything runs', async () => {
  const r = await t.gql('query Bad { shop { name doesNotExist } }');
  assert.equal(r.data, undefined);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0].message, /Cannot query field "doesNotExist" on type "Shop"/);
  assert.equal(r.errors[0].extensions.code, 'GRAPHQL_VALIDATION_FAILED');
  assert.deepEqual(r.errors[0].locations, [{ line: 1, column: 25 }]);
  // an input field ProductSetInput does not have (collectionsToJoin is ProductUpdateInput's): the variables are rejected, nothing is created
  const bad = await t.gql('mutation S($input: ProductSetInput!) { productSet(input: $input) { product { id } } }', { input: { title: 'X', collectionsToJoin: [] } });
  assert.match(bad.errors[0].message, /Field "collectionsToJoin" is not defined by type "ProductSetInput"/);
  assert.equal((await t.state()).products.x, undefined);
});

test('an input array over 250 items is refused (MAX_INPUT_SIZE_EXCEEDED), whether in variables or in the document', async () => {
  const quantities = Array.from({ length: 251 }, (_, i) => ({ inventoryItemId: `gid://shopify/InventoryItem/${i + 1}`, locationId: 'gid://shopify/Location/1', quantity: 1, changeFromQuantity: null }));
  const r = await t.gql('mutation Q($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { code } } }', { input: { name: 'available', reason: 'correction', quantities } });
  assert.equal(r.errors[0].extensions.code, 'MAX_INPUT_SIZE_EXCEEDED');
  assert.match(r.errors[0].message, /input array size of 251 is greater than the maximum allowed of 250/);
  const ids = Array.from({ length: 251 }, (_, i) => `"gid://shopify/Product/${i + 1}"`).join(',');
  assert.equal((await t.gql(`{ nodes(ids: [${ids}]) { id } }`)).errors[0].extensions.code, 'MAX_INPUT_SIZE_EXCEEDED');
  assert.equal((await t.gql(`{ nodes(ids: [${ids.split(',').slice(0, 250).join(',')}]) { id } }`)).errors, undefined);
});

test('a root field of the schema the emulator does not implement answers an error naming it', async () => {
  const r = await t.gql('{ app { id } }');
  assert.equal(r.errors[0].extensions.code, 'NOT_IMPLEMENTED');
  assert.match(r.errors[0].message, /does not implement QueryRoot\.app/);
});

test('a wrong access token is answered 401 as Shopify does', async () => {
  const r = await t.gql('{ shop { name } }', {}, 'wrong');
  assert.equal(r.status, 401);
  assert.match(r.errors, /Invalid API key or access token/);
});

test('the seeded shop, locations and publication', async () => {
  const d = await t.data('{ shop { name currencyCode myshopifyDomain } locations(first: 10) { nodes { name } } publications(first: 5) { nodes { id } } }');
  assert.equal(d.shop.currencyCode, 'AUD');
  assert.equal(d.shop.myshopifyDomain, 'ferry-test.myshopify.com');
  assert.deepEqual(d.locations.nodes.map(l => l.name), ['Main warehouse', 'Sydney store']);
  assert.equal(d.publications.nodes.length, 1);
});

test('calculated query cost: connections 2 + first × node, objects 1, scalars 0, mutations 10; actual counts what came back', async () => {
  // requested: shop 1 + locations (2 + 10 × (1 node + 0 scalars)) = 13; actual: 1 + 2 + 2 nodes = 5
  const r = await t.gql('{ shop { name } locations(first: 10) { edges { node { id name } } } }');
  assert.equal(r.extensions.cost.requestedQueryCost, 13);
  assert.equal(r.extensions.cost.actualQueryCost, 5);
  // mutation 10 + payload: userErrors object 1 + product object 1 → 12 (product null: actual 11)
  const m = await t.gql('mutation { productSet(input: { title: "" }, synchronous: true) { product { id } userErrors { code } } }');
  assert.equal(m.extensions.cost.requestedQueryCost, 12);
  assert.equal(m.extensions.cost.actualQueryCost, 11);
  assert.equal(m.data.productSet.userErrors[0].code, 'INVALID_PRODUCT');
  // an interface costs the most expensive of its possible selections: 1 + max(Product 2 + 10 × 1, Customer 0) = 13
  const iface = await t.gql('{ nodes(ids: ["gid://shopify/Location/1"]) { id ... on Product { variants(first: 10) { nodes { id } } } ... on Customer { email } } }');
  assert.equal(iface.extensions.cost.requestedQueryCost, 13);
  assert.equal(iface.extensions.cost.actualQueryCost, 1);
  // above the single-query limit of 1000
  const big = await t.gql('{ products(first: 250) { nodes { variants(first: 250) { nodes { id } } } } }');
  assert.equal(big.errors[0].extensions.code, 'MAX_COST_EXCEEDED');
});

test('draining the leaky bucket answers THROTTLED until it has refilled', async () => {
  for (let i = 0; i < 10; i++) await seedProduct(t, `throttle-${i}`, [`THR-${i}`]);
  const status = await t.post('/_emulator/bucket', { max: 40, restoreRate: 1, available: 40 });
  assert.equal(status.currentlyAvailable, 40);
  const q = '{ products(first: 10) { nodes { id } } }'; // requested 2 + 10 × 1 = 12
  const costs = [];
  let throttled = null;
  for (let i = 0; i < 10 && !throttled; i++) {
    const r = await t.gql(q);
    if (r.errors) throttled = r; else costs.push(r.extensions.cost);
  }
  assert.ok(throttled, 'a request was throttled');
  assert.equal(throttled.errors[0].message, 'Throttled');
  assert.equal(throttled.errors[0].extensions.code, 'THROTTLED');
  assert.equal(throttled.data, undefined);
  assert.ok(throttled.extensions.cost.throttleStatus.currentlyAvailable < 12);
  assert.equal(throttled.extensions.cost.throttleStatus.maximumAvailable, 40);
  assert.equal(throttled.extensions.cost.throttleStatus.restoreRate, 1);
  // 40 points at 1/s: three queries of 12 fit, the fourth does not
  assert.equal(costs.length, 3);
  assert.ok(costs.every(c => c.requestedQueryCost === 12 && c.actualQueryCost === 12));
  await t.post('/_emulator/bucket', { max: 2000, restoreRate: 100, available: 2000 });
  assert.equal((await t.gql(q)).errors, undefined);
});

test('validate.mjs prints every error as FILE:LINE:COL and exits 1; 0 when all documents are valid', () => {
  const schema = schemaFile();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shopify-validate-'));
  fs.writeFileSync(path.join(dir, 'good.graphql'), 'query Shop { shop { name currencyCode } }\n');
  fs.writeFileSync(path.join(dir, 'bad.graphql'), 'query Bad($id: ID!) {\n  order(id: $id) { name notAField }\n}\n');
  const ok = execFileSync('node', [path.join(PEER, 'validate.mjs'), schema, path.join(dir, 'good.graphql')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  assert.equal(ok, '');
  const r = spawnSync('node', [path.join(PEER, 'validate.mjs'), schema, path.join(dir, 'good.graphql'), path.join(dir, 'bad.graphql')], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`${path.join(dir, 'bad.graphql').replace(/[.]/g, '\\.')}:2:25: Cannot query field "notAField" on type "Order"`));
  assert.match(r.stderr, /1 of 2 document\(s\) valid/);
});
