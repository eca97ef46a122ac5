// Catalogue and stock: productSet by handle, inventorySetQuantities' compare-and-swap guard, bulk query JSONL,
// price lists with quantity price breaks.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { start, seedProduct, PRODUCT_SET } from './helpers.mjs';

let t;
before(async () => { t = await start(); });
after(async () => { await t.close(); });
beforeEach(async () => { await t.post('/_emulator/reset'); });

const shirt = (variants) => ({ title: 'Linen shirt', handle: 'linen-shirt', status: 'ACTIVE', vendor: 'Ferry', tags: ['linen', 'summer'],
  descriptionHtml: '<p>Cool.</p>', productOptions: [{ name: 'Size', values: variants.map(v => ({ name: v.size })) }],
  variants: variants.map(v => ({ sku: v.sku, price: v.price, compareAtPrice: v.compareAt ?? null, optionValues: [{ optionName: 'Size', name: v.size }] })) });

test('productSet by handle is idempotent: the same input twice leaves one product, the same ids and no update', async () => {
  const input = shirt([{ sku: 'LS-S', size: 'S', price: '49.95' }, { sku: 'LS-M', size: 'M', price: '49.95', compareAt: '59.95' }]);
  const first = (await t.data(PRODUCT_SET, { identifier: { handle: 'linen-shirt' }, input })).productSet;
  assert.deepEqual(first.userErrors, []);
  const hooksAfterCreate = (await (await fetch(t.base + '/_emulator/state')).json()).products['linen-shirt'];
  const second = (await t.data(PRODUCT_SET, { identifier: { handle: 'linen-shirt' }, input })).productSet;
  assert.deepEqual(second.userErrors, []);
  assert.deepEqual(second.product, first.product); // ids, SKUs, prices and updatedAt unchanged
  const state = await t.state();
  assert.deepEqual(Object.keys(state.products), ['linen-shirt']);
  assert.equal(state.products['linen-shirt'].updatedAt, hooksAfterCreate.updatedAt);
  assert.deepEqual(state.products['linen-shirt'].variants.map(v => [v.sku, v.price, v.compareAtPrice]), [['LS-S', '49.95', null], ['LS-M', '49.95', '59.95']]);
});

test('productSet replaces the variant list: matched by SKU (ids kept), new ones created, missing ones deleted', async () => {
  const first = (await t.data(PRODUCT_SET, { identifier: { handle: 'linen-shirt' }, input: shirt([{ sku: 'LS-S', size: 'S', price: '49.95' }, { sku: 'LS-M', size: 'M', price: '49.95' }]) })).productSet.product;
  // M renamed to Medium keeps its variant (same SKU); S goes; L comes
  const next = (await t.data(PRODUCT_SET, { identifier: { handle: 'linen-shirt' }, input: shirt([{ sku: 'LS-M', size: 'Medium', price: '52.00' }, { sku: 'LS-L', size: 'L', price: '52.00' }]) })).productSet;
  assert.deepEqual(next.userErrors, []);
  const bySku = Object.fromEntries(next.product.variants.nodes.map(v => [v.sku, v]));
  assert.equal(bySku['LS-M'].id, first.variants.nodes.find(v => v.sku === 'LS-M').id);
  assert.equal(bySku['LS-M'].price, '52.00');
  assert.deepEqual(bySku['LS-M'].selectedOptions, [{ name: 'Size', value: 'Medium' }]);
  assert.ok(bySku['LS-L'] && !first.variants.nodes.some(v => v.id === bySku['LS-L'].id));
  assert.equal(bySku['LS-S'], undefined);
  const lookup = await t.data('query V($q: String!) { productVariants(first: 5, query: $q) { nodes { id } } }', { q: 'sku:LS-S' });
  assert.deepEqual(lookup.productVariants.nodes, []);
  const byHandle = await t.data('query P($h: String!) { productByIdentifier(identifier: { handle: $h }) { id title tags vendor } }', { h: 'linen-shirt' });
  assert.deepEqual(byHandle.productByIdentifier, { id: first.id, title: 'Linen shirt', tags: ['linen', 'summer'], vendor: 'Ferry' });
});

test('productSet user errors: a handle in use by another product, an option value no option has', async () => {
  await seedProduct(t, 'taken', ['T-1']);
  const clash = (await t.data(PRODUCT_SET, { identifier: { handle: 'other' }, input: { title: 'Other', handle: 'other' } })).productSet;
  assert.deepEqual(clash.userErrors, []);
  const r = (await t.data(PRODUCT_SET, { identifier: { id: clash.product.id }, input: { handle: 'taken' } })).productSet;
  assert.equal(r.userErrors[0].code, 'HANDLE_NOT_UNIQUE');
  const bad = (await t.data(PRODUCT_SET, { identifier: { handle: 'x' }, input: { title: 'X', productOptions: [{ name: 'Size', values: [{ name: 'S' }] }], variants: [{ sku: 'X-1', optionValues: [{ optionName: 'Size', name: 'XL' }] }] } })).productSet;
  assert.equal(bad.userErrors[0].code, 'OPTION_VALUE_DOES_NOT_EXIST');
  assert.deepEqual(bad.userErrors[0].field, ['input', 'variants', '0', 'optionValues']);
});

const SET_QTY = `mutation Q($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) { inventoryAdjustmentGroup { reason referenceDocumentUri changes { name delta quantityAfterChange } } userErrors { field message code } }
}`;
const LEVEL = `query L($id: ID!, $loc: ID!) { inventoryItem(id: $id) { sku inventoryLevel(locationId: $loc) { quantities(names: ["available", "on_hand"]) { name quantity } } } }`;

test('inventorySetQuantities: the changeFromQuantity guard sets, refuses a stale expectation, and demands the field', async () => {
  const p = await seedProduct(t, 'mug', ['MUG-1']);
  const item = p.variants.nodes[0].inventoryItem.id;
  const loc = (await t.data('{ locations(first: 1) { nodes { id } } }')).locations.nodes[0].id;
  const set = (quantity, extra) => t.data(SET_QTY, { input: { name: 'available', reason: 'correction', referenceDocumentUri: 'gid://ferry/StockSync/1', quantities: [{ inventoryItemId: item, locationId: loc, quantity, ...extra }] } });
  const ok = (await set(12, { changeFromQuantity: 0 })).inventorySetQuantities;
  assert.deepEqual(ok.userErrors, []);
  assert.deepEqual(ok.inventoryAdjustmentGroup.changes.find(c => c.name === 'available'), { name: 'available', delta: 12, quantityAfterChange: 12 });
  const stale = (await set(20, { changeFromQuantity: 0 })).inventorySetQuantities;
  assert.equal(stale.inventoryAdjustmentGroup, null);
  assert.equal(stale.userErrors[0].code, 'CHANGE_FROM_QUANTITY_STALE');
  assert.deepEqual(stale.userErrors[0].field, ['input', 'quantities', '0', 'changeFromQuantity']);
  const missing = (await set(20, {})).inventorySetQuantities;
  assert.equal(missing.userErrors[0].code, 'COMPARE_QUANTITY_REQUIRED');
  const level = await t.data(LEVEL, { id: item, loc });
  assert.deepEqual(level.inventoryItem.inventoryLevel.quantities, [{ name: 'available', quantity: 12 }, { name: 'on_hand', quantity: 12 }]);
  // null skips the check
  assert.deepEqual((await set(7, { changeFromQuantity: null })).inventorySetQuantities.userErrors, []);
  assert.equal((await t.state()).inventoryLevels.find(l => l.sku === 'MUG-1' && l.location === 'Main warehouse').available, 7);
  // a location the item is not stocked at: activate first
  const sydney = (await t.data('{ locations(first: 2) { nodes { id } } }')).locations.nodes[1].id;
  const notStocked = (await t.data(SET_QTY, { input: { name: 'available', reason: 'correction', quantities: [{ inventoryItemId: item, locationId: sydney, quantity: 3, changeFromQuantity: 0 }] } })).inventorySetQuantities;
  assert.equal(notStocked.userErrors[0].code, 'INVALID_LOCATION');
  const act = await t.data('mutation A($i: ID!, $l: ID!) { inventoryActivate(inventoryItemId: $i, locationId: $l) { inventoryLevel { location { name } } userErrors { message } } }', { i: item, l: sydney });
  assert.equal(act.inventoryActivate.inventoryLevel.location.name, 'Sydney store');
  assert.deepEqual((await t.data(SET_QTY, { input: { name: 'available', reason: 'correction', quantities: [{ inventoryItemId: item, locationId: sydney, quantity: 3, changeFromQuantity: 0 }] } })).inventorySetQuantities.userErrors, []);
  const badReason = (await t.data(SET_QTY, { input: { name: 'available', reason: 'because', quantities: [{ inventoryItemId: item, locationId: sydney, quantity: 3, changeFromQuantity: 3 }] } })).inventorySetQuantities;
  assert.equal(badReason.userErrors[0].code, 'INVALID_REASON');
});

test('bulk query: JSONL with one line per product and its variants on their own lines with __parentId', async () => {
  const a = await seedProduct(t, 'bulk-a', ['BA-1', 'BA-2'], { price: '5.00' });
  const b = await seedProduct(t, 'bulk-b', ['BB-1', 'BB-2'], { price: '7.50' });
  const run = await t.data(`mutation B($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) { bulkOperation { id status } userErrors { field message code } } }`,
    { q: '{ products { edges { node { id handle variants { edges { node { id sku price } } } } } } }' });
  assert.deepEqual(run.bulkOperationRunQuery.userErrors, []);
  assert.equal(run.bulkOperationRunQuery.bulkOperation.status, 'CREATED');
  let op;
  for (let i = 0; i < 100; i++) {
    op = (await t.data('{ currentBulkOperation { id status objectCount rootObjectCount url } }')).currentBulkOperation;
    if (op.status === 'COMPLETED') break;
    await new Promise(r => setTimeout(r, 20));
  }
  assert.equal(op.status, 'COMPLETED');
  assert.equal(op.id, run.bulkOperationRunQuery.bulkOperation.id);
  assert.equal(op.objectCount, '6');
  assert.equal(op.rootObjectCount, '2');
  const lines = (await (await fetch(op.url)).text()).trim().split('\n').map(l => JSON.parse(l));
  assert.deepEqual(lines, [
    { id: a.id, handle: 'bulk-a' },
    { id: a.variants.nodes[0].id, sku: 'BA-1', price: '5.00', __parentId: a.id },
    { id: a.variants.nodes[1].id, sku: 'BA-2', price: '5.00', __parentId: a.id },
    { id: b.id, handle: 'bulk-b' },
    { id: b.variants.nodes[0].id, sku: 'BB-1', price: '7.50', __parentId: b.id },
    { id: b.variants.nodes[1].id, sku: 'BB-2', price: '7.50', __parentId: b.id },
  ]);
  const invalid = await t.data(`mutation B($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) { bulkOperation { id } userErrors { message code } } }`, { q: '{ products { edges { node { nope } } } }' });
  assert.equal(invalid.bulkOperationRunQuery.userErrors[0].code, 'INVALID');
});

test('bulk mutation: variables uploaded to the staged target, one result line per input line', async () => {
  const staged = await t.data(`mutation S($input: [StagedUploadInput!]!) { stagedUploadsCreate(input: $input) { stagedTargets { url resourceUrl parameters { name value } } userErrors { message } } }`,
    { input: [{ resource: 'BULK_MUTATION_VARIABLES', filename: 'products.jsonl', mimeType: 'text/jsonl', httpMethod: 'POST' }] });
  const target = staged.stagedUploadsCreate.stagedTargets[0];
  const form = new FormData();
  for (const p of target.parameters) form.append(p.name, p.value);
  const jsonl = ['bulk-x', 'bulk-y'].map(h => JSON.stringify({ identifier: { handle: h }, input: { title: h.toUpperCase(), variants: [{ sku: h + '-1', price: '3.00', optionValues: [{ optionName: 'Title', name: 'Default Title' }] }] } })).join('\n');
  form.append('file', new Blob([jsonl]), 'products.jsonl');
  const up = await fetch(target.url, { method: 'POST', body: form });
  assert.equal(up.status, 201);
  const key = target.parameters.find(p => p.name === 'key').value;
  const run = await t.data(`mutation R($m: String!, $p: String!) { bulkOperationRunMutation(mutation: $m, stagedUploadPath: $p) { bulkOperation { id status } userErrors { message code } } }`,
    { m: 'mutation call($identifier: ProductSetIdentifiers, $input: ProductSetInput!) { productSet(identifier: $identifier, input: $input) { product { id handle } userErrors { message } } }', p: key });
  assert.deepEqual(run.bulkOperationRunMutation.userErrors, []);
  let op;
  for (let i = 0; i < 100; i++) {
    op = (await t.data('query C { currentBulkOperation(type: MUTATION) { status url objectCount } }')).currentBulkOperation;
    if (op.status === 'COMPLETED') break;
    await new Promise(r => setTimeout(r, 20));
  }
  const lines = (await (await fetch(op.url)).text()).trim().split('\n').map(l => JSON.parse(l));
  assert.deepEqual(lines.map(l => [l.__lineNumber, l.data.productSet.product.handle, l.data.productSet.userErrors]), [[0, 'bulk-x', []], [1, 'bulk-y', []]]);
  assert.deepEqual(Object.keys((await t.state()).products).sort(), ['bulk-x', 'bulk-y']);
});

test('price lists: fixed prices and quantity price breaks on a company location catalog', async () => {
  const p = await seedProduct(t, 'bolt', ['BOLT-10'], { price: '2.00' });
  const variantId = p.variants.nodes[0].id;
  const co = await t.data(`mutation C($input: CompanyCreateInput!) { companyCreate(input: $input) { company { id name locations(first: 1) { nodes { id } } mainContact { customer { email } } } userErrors { field message code } } }`,
    { input: { company: { name: 'Acme Pty Ltd', externalId: 'ERP-42' }, companyLocation: { name: 'Acme Melbourne' }, companyContact: { email: 'buyer@acme.test', firstName: 'Bea' } } });
  assert.deepEqual(co.companyCreate.userErrors, []);
  assert.equal(co.companyCreate.company.mainContact.customer.email, 'buyer@acme.test');
  const locId = co.companyCreate.company.locations.nodes[0].id;
  const pl = await t.data(`mutation P($input: PriceListCreateInput!) { priceListCreate(input: $input) { priceList { id currency } userErrors { code } } }`,
    { input: { name: 'Acme AUD', currency: 'AUD', parent: { adjustment: { type: 'PERCENTAGE_DECREASE', value: 0 } } } });
  const priceListId = pl.priceListCreate.priceList.id;
  const cat = await t.data(`mutation K($input: CatalogCreateInput!) { catalogCreate(input: $input) { catalog { id title priceList { id } } userErrors { code message } } }`,
    { input: { title: 'Acme', status: 'ACTIVE', context: { companyLocationIds: [locId] }, priceListId } });
  assert.deepEqual(cat.catalogCreate.userErrors, []);
  const q = await t.data(`mutation Q($pl: ID!, $input: QuantityPricingByVariantUpdateInput!) { quantityPricingByVariantUpdate(priceListId: $pl, input: $input) { productVariants { id } userErrors { field message code } } }`,
    { pl: priceListId, input: { pricesToAdd: [{ variantId, price: { amount: '1.80', currencyCode: 'AUD' } }], pricesToDeleteByVariantId: [],
      quantityPriceBreaksToAdd: [{ variantId, minimumQuantity: 100, price: { amount: '1.50', currencyCode: 'AUD' } }, { variantId, minimumQuantity: 500, price: { amount: '1.20', currencyCode: 'AUD' } }],
      quantityPriceBreaksToDelete: [], quantityRulesToAdd: [{ variantId, minimum: 10, increment: 10 }], quantityRulesToDeleteByVariantId: [] } });
  assert.deepEqual(q.quantityPricingByVariantUpdate.userErrors, []);
  const read = await t.data(`query R($id: ID!) { priceList(id: $id) { fixedPricesCount prices(first: 10) { nodes { price { amount currencyCode } variant { sku } quantityPriceBreaks(first: 5) { nodes { minimumQuantity price { amount } } } } } } }`, { id: priceListId });
  assert.equal(read.priceList.fixedPricesCount, 1);
  assert.deepEqual(read.priceList.prices.nodes[0], { price: { amount: '1.8', currencyCode: 'AUD' }, variant: { sku: 'BOLT-10' },
    quantityPriceBreaks: { nodes: [{ minimumQuantity: 100, price: { amount: '1.5' } }, { minimumQuantity: 500, price: { amount: '1.2' } }] } });
  const wrongCurrency = await t.data(`mutation F($pl: ID!, $prices: [PriceListPriceInput!]!) { priceListFixedPricesAdd(priceListId: $pl, prices: $prices) { prices { price { amount } } userErrors { field code } } }`,
    { pl: priceListId, prices: [{ variantId, price: { amount: '1.00', currencyCode: 'NZD' } }] });
  assert.equal(wrongCurrency.priceListFixedPricesAdd.userErrors[0].code, 'PRICE_LIST_CURRENCY_MISMATCH');
});

test('metafieldsSet (typed by the definition, compareDigest guard), tagsAdd and tag search, catalogContextUpdate', async () => {
  const p = await seedProduct(t, 'plate', ['PL-1']);
  const def = await t.data(`mutation D($d: MetafieldDefinitionInput!) { metafieldDefinitionCreate(definition: $d) { createdDefinition { id key namespace type { name } } userErrors { code } } }`,
    { d: { name: 'Weight class', namespace: 'ferry', key: 'weight_class', type: 'number_integer', ownerType: 'PRODUCT' } });
  assert.equal(def.metafieldDefinitionCreate.createdDefinition.type.name, 'number_integer');
  const again = await t.data(`mutation D($d: MetafieldDefinitionInput!) { metafieldDefinitionCreate(definition: $d) { createdDefinition { id } userErrors { code } } }`,
    { d: { name: 'Weight class', namespace: 'ferry', key: 'weight_class', type: 'number_integer', ownerType: 'PRODUCT' } });
  assert.equal(again.metafieldDefinitionCreate.userErrors[0].code, 'TAKEN');
  const SET = `mutation M($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) { metafields { namespace key type value compareDigest } userErrors { field code } } }`;
  const bad = await t.data(SET, { m: [{ ownerId: p.id, namespace: 'ferry', key: 'weight_class', value: 'heavy' }] });
  assert.deepEqual(bad.metafieldsSet.userErrors, [{ field: ['metafields', '0', 'value'], code: 'INVALID_VALUE' }]);
  const ok = await t.data(SET, { m: [{ ownerId: p.id, namespace: 'ferry', key: 'weight_class', value: '3' }] });
  assert.deepEqual(ok.metafieldsSet.metafields.map(m => [m.namespace, m.key, m.type, m.value]), [['ferry', 'weight_class', 'number_integer', '3']]);
  const stale = await t.data(SET, { m: [{ ownerId: p.id, namespace: 'ferry', key: 'weight_class', value: '4', compareDigest: 'not-the-digest' }] });
  assert.equal(stale.metafieldsSet.userErrors[0].code, 'STALE_OBJECT');
  const fresh = await t.data(SET, { m: [{ ownerId: p.id, namespace: 'ferry', key: 'weight_class', value: '4', compareDigest: ok.metafieldsSet.metafields[0].compareDigest }] });
  assert.deepEqual(fresh.metafieldsSet.userErrors, []);
  const read = await t.data('query P($id: ID!) { product(id: $id) { metafield(namespace: "ferry", key: "weight_class") { value definition { key } } } }', { id: p.id });
  assert.deepEqual(read.product.metafield, { value: '4', definition: { key: 'weight_class' } });

  const tags = await t.data('mutation T($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) { node { id } userErrors { message } } }', { id: p.id, tags: ['ferry-sku:PL-1', ' clearance '] });
  assert.deepEqual(tags.tagsAdd.userErrors, []);
  const found = await t.data(`{ products(first: 5, query: "tag:'ferry-sku:PL-1'") { nodes { handle tags } } }`);
  assert.deepEqual(found.products.nodes, [{ handle: 'plate', tags: ['ferry-sku:PL-1', 'clearance'] }]);
  assert.deepEqual((await t.data(`{ products(first: 5, query: "tag:'other'") { nodes { handle } } }`)).products.nodes, []);

  const co = await t.data(`mutation C($input: CompanyCreateInput!) { companyCreate(input: $input) { company { locations(first: 1) { nodes { id catalogs(first: 5) { nodes { id } } } } } userErrors { code } } }`,
    { input: { company: { name: 'Bolt Co' }, companyLocation: { name: 'Bolt HQ' } } });
  const locId = co.companyCreate.company.locations.nodes[0].id;
  const cat = await t.data(`mutation K($input: CatalogCreateInput!) { catalogCreate(input: $input) { catalog { id } userErrors { code } } }`, { input: { title: 'Trade', status: 'ACTIVE', context: { companyLocationIds: [] } } });
  const ctx = await t.data(`mutation U($id: ID!, $add: CatalogContextInput) { catalogContextUpdate(catalogId: $id, contextsToAdd: $add) { catalog { id ... on CompanyLocationCatalog { companyLocations(first: 5) { nodes { id } } } } userErrors { code } } }`,
    { id: cat.catalogCreate.catalog.id, add: { companyLocationIds: [locId] } });
  assert.deepEqual(ctx.catalogContextUpdate.catalog.companyLocations.nodes, [{ id: locId }]);
  const missing = await t.data(`mutation U($id: ID!, $add: CatalogContextInput) { catalogContextUpdate(catalogId: $id, contextsToAdd: $add) { userErrors { code } } }`,
    { id: cat.catalogCreate.catalog.id, add: { companyLocationIds: ['gid://shopify/CompanyLocation/999'] } });
  assert.equal(missing.catalogContextUpdate.userErrors[0].code, 'COMPANY_LOCATION_NOT_FOUND');
});

test('bulk query restrictions (at least one connection, at most five, two levels) and bulkOperations listing', async () => {
  const RUN = `mutation B($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) { bulkOperation { id } userErrors { message code } } }`;
  const err = async q => (await t.data(RUN, { q })).bulkOperationRunQuery.userErrors.map(e => [e.code, e.message]);
  assert.deepEqual(await err('{ shop { name } }'), [['INVALID', 'Bulk queries must contain at least one connection.']]);
  assert.deepEqual(await err('{ products { edges { node { variants { edges { node { inventoryItem { inventoryLevels { edges { node { id } } } } } } } } } } }'),
    [['INVALID', 'Bulk queries cannot contain connections nested more than 2 levels deep (this one has 3).']]);
  assert.deepEqual(await err('{ products { edges { node { a: collections { nodes { id } } b: collections { nodes { id } } c: collections { nodes { id } } d: collections { nodes { id } } e: collections { nodes { id } } } } } }'),
    [['INVALID', 'Bulk queries cannot contain more than 5 connections (this one has 6).']]);
  assert.deepEqual(await err('{ nodes(ids: ["gid://shopify/Product/1"]) { id } }'), [['INVALID', 'Bulk queries cannot use the top-level node or nodes fields.']]);
  const first = (await t.data(RUN, { q: '{ products { edges { node { id } } } }' })).bulkOperationRunQuery.bulkOperation.id;
  const second = (await t.data(RUN, { q: '{ customers { edges { node { id } } } }' })).bulkOperationRunQuery.bulkOperation.id;
  const list = await t.data('{ bulkOperations(first: 5, query: "operation_type:query") { nodes { id type } } }');
  assert.deepEqual(list.bulkOperations.nodes.map(b => b.id), [second, first]); // newest first
});

test('customerSet upserts by e-mail; customerByIdentifier and customers(query:) find the customer; collections join through productSet', async () => {
  const SET = `mutation C($identifier: CustomerSetIdentifiers, $input: CustomerSetInput!) { customerSet(identifier: $identifier, input: $input) { customer { id email firstName lastName tags defaultAddress { city countryCodeV2 } } userErrors { field code } } }`;
  const input = { email: 'Jo@Example.test', firstName: 'Jo', lastName: 'Bloggs', tags: ['trade', 'vip'], addresses: [{ address1: '2 High St', city: 'Geelong', countryCode: 'AU', zip: '3220' }] };
  const a = (await t.data(SET, { identifier: { email: 'jo@example.test' }, input })).customerSet;
  assert.deepEqual(a.userErrors, []);
  const b = (await t.data(SET, { identifier: { email: 'jo@example.test' }, input: { ...input, lastName: 'Smith' } })).customerSet;
  assert.equal(b.customer.id, a.customer.id);
  assert.equal(b.customer.lastName, 'Smith');
  assert.deepEqual(b.customer.defaultAddress, { city: 'Geelong', countryCodeV2: 'AU' });
  assert.equal((await t.state()).customers.length, 1);
  const byId = await t.data('query F($e: String!) { customerByIdentifier(identifier: { emailAddress: $e }) { id } }', { e: 'JO@example.test' });
  assert.equal(byId.customerByIdentifier.id, a.customer.id);
  const q = await t.data('{ customers(first: 5, query: "email:jo@example.test tag:vip") { nodes { id } } }');
  assert.deepEqual(q.customers.nodes, [{ id: a.customer.id }]);
  const other = (await t.data(SET, { identifier: { email: 'other@example.test' }, input: { email: 'jo@example.test' } })).customerSet;
  assert.equal(other.userErrors[0].code, 'INPUT_MISMATCH');

  const col = await t.data('mutation K($c: CollectionCreateInput!) { collectionCreate(collection: $c) { collection { id handle } userErrors { message } } }', { c: { title: 'Summer Sale' } });
  assert.equal(col.collectionCreate.collection.handle, 'summer-sale');
  const colId = col.collectionCreate.collection.id;
  await t.data(PRODUCT_SET, { identifier: { handle: 'hat' }, input: { title: 'Hat', collections: [colId] } });
  const read = await t.data('query R($id: ID!) { collection(id: $id) { productsCount { count } products(first: 5) { nodes { handle } } } }', { id: colId });
  assert.deepEqual(read.collection, { productsCount: { count: 1 }, products: { nodes: [{ handle: 'hat' }] } });
  const missing = (await t.data(PRODUCT_SET, { identifier: { handle: 'hat' }, input: { collections: ['gid://shopify/Collection/999'] } })).productSet;
  assert.equal(missing.userErrors[0].code, 'INVALID_INPUT');
});

test('productSet with synchronous: false answers a ProductSetOperation that productOperation reads back', async () => {
  const r = await t.data(`mutation S($input: ProductSetInput!) { productSet(input: $input, identifier: { handle: "async-mug" }, synchronous: false) { product { id } productSetOperation { id status } userErrors { code } } }`,
    { input: { title: 'Async mug' } });
  assert.equal(r.productSet.product, null);
  assert.equal(r.productSet.productSetOperation.status, 'COMPLETE');
  const op = await t.data('query O($id: ID!) { productOperation(id: $id) { status product { handle } ... on ProductSetOperation { userErrors { code } } } }', { id: r.productSet.productSetOperation.id });
  assert.deepEqual(op.productOperation, { status: 'COMPLETE', product: { handle: 'async-mug' }, userErrors: [] });
});
