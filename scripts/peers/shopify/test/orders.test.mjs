// Orders placed through /_emulator/orders: Shopify's arithmetic to the cent, fulfillment orders per location,
// fulfillmentCreate with tracking, refunds, cancellation, and the signed webhooks they send.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { start, seedProduct } from './helpers.mjs';

const SECRET = 'ferry-test-shopify-secret';
let t, hooks, receiver, failNext = 0; // failNext: deliveries of orders/create to answer 500
before(async () => {
  hooks = [];
  receiver = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', c => chunks.push(c));
    req.on('end', () => {
      if (failNext > 0 && req.headers['x-shopify-topic'] === 'orders/create') { failNext--; res.writeHead(500); return res.end(); }
      hooks.push({ headers: req.headers, raw: Buffer.concat(chunks) });
      res.writeHead(200); res.end();
    });
  });
  await new Promise(r => receiver.listen(0, '127.0.0.1', r));
  t = await start({ SHOPIFY_WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hooks/shopify`, SHOPIFY_WEBHOOK_RETRY_SECONDS: '10' });
});
after(async () => { await t.close(); await new Promise(r => receiver.close(r)); });
beforeEach(async () => { await t.post('/_emulator/reset'); hooks.length = 0; failNext = 0; });

const ORDER = `query O($id: ID!) { order(id: $id) {
  id name email currencyCode displayFinancialStatus displayFulfillmentStatus cancelledAt cancelReason
  subtotalPriceSet { shopMoney { amount currencyCode } } totalTaxSet { shopMoney { amount } } totalPriceSet { shopMoney { amount } }
  totalDiscountsSet { shopMoney { amount } } totalShippingPriceSet { shopMoney { amount } } currentTotalPriceSet { shopMoney { amount } }
  discountCodes customer { email firstName }
  discountApplications(first: 5) { nodes { allocationMethod ... on DiscountCodeApplication { code } value { ... on PricingPercentageValue { percentage } ... on MoneyV2 { amount } } } }
  lineItems(first: 10) { nodes { sku quantity originalUnitPriceSet { shopMoney { amount } } discountedTotalSet { shopMoney { amount } } totalDiscountSet { shopMoney { amount } }
    taxLines { title rate priceSet { shopMoney { amount } } } } }
  shippingLines(first: 5) { nodes { title originalPriceSet { shopMoney { amount } } taxLines { priceSet { shopMoney { amount } } } } }
  taxLines { title rate priceSet { shopMoney { amount } } }
  transactions(first: 10) { kind status amountSet { shopMoney { amount } } }
  refunds(first: 10) { totalRefundedSet { shopMoney { amount } } refundLineItems(first: 10) { nodes { quantity subtotalSet { shopMoney { amount } } totalTaxSet { shopMoney { amount } } lineItem { sku } } } }
  fulfillmentOrders(first: 10) { nodes { id status assignedLocation { name } lineItems(first: 10) { nodes { id sku totalQuantity remainingQuantity } } } }
} }`;
const amt = m => m.shopMoney.amount; // Decimal as Shopify serializes it: "30.0", "3.59"
const cents = s => Math.round(Number(s) * 100); // test-side reconciliation only

async function stock(sku, locationName, quantity) {
  const d = await t.data('query V($q: String!) { productVariants(first: 1, query: $q) { nodes { inventoryItem { id } } } locations(first: 5) { nodes { id name } } }', { q: `sku:${sku}` });
  const item = d.productVariants.nodes[0].inventoryItem.id;
  const loc = d.locations.nodes.find(l => l.name === locationName).id;
  await t.data('mutation A($i: ID!, $l: ID!) { inventoryActivate(inventoryItemId: $i, locationId: $l) { userErrors { message } } }', { i: item, l: loc });
  const r = await t.data('mutation Q($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { code } } }',
    { input: { name: 'available', reason: 'correction', quantities: [{ inventoryItemId: item, locationId: loc, quantity, changeFromQuantity: null }] } });
  assert.deepEqual(r.inventorySetQuantities.userErrors, []);
}

test('an order with a percentage code, shipping and GST: tax per line rounded to the cent, totals reconcile', async () => {
  await seedProduct(t, 'tee', ['TEE-S'], { price: '19.95' });
  await seedProduct(t, 'cap', ['CAP'], { price: '33.33' });
  const placed = await t.post('/_emulator/orders', { email: 'ann@example.test', customer: { first_name: 'Ann', last_name: 'Lee', email: 'ann@example.test' },
    lines: [{ sku: 'TEE-S', quantity: 2 }, { sku: 'CAP', quantity: 1 }], discount_code: { code: 'TENOFF', percentage: '10' },
    shipping: { title: 'Standard', price: '9.95' }, tax_rate: '0.10', shipping_address: { first_name: 'Ann', address1: '1 Main St', city: 'Melbourne', zip: '3000', country_code: 'AU' } });
  assert.match(placed.id, /^gid:\/\/shopify\/Order\/\d+$/);
  assert.match(placed.name, /^#\d{4,}$/);
  const o = (await t.data(ORDER, { id: placed.id })).order;
  // TEE 2 × 19.95 = 39.90, 10 % off 3.99 → 35.91, GST 3.591 → 3.59; CAP 33.33, 3.333 → 3.33 off → 30.00, GST 3.00;
  // shipping 9.95, GST 0.995 → 1.00. Subtotal 65.91, tax 7.59, total 65.91 + 9.95 + 7.59 = 83.45
  assert.deepEqual(o.lineItems.nodes.map(l => [l.sku, l.quantity, amt(l.originalUnitPriceSet), amt(l.totalDiscountSet), amt(l.discountedTotalSet), l.taxLines.map(x => [x.title, x.rate, amt(x.priceSet)])]),
    [['TEE-S', 2, '19.95', '3.99', '35.91', [['GST', 0.1, '3.59']]], ['CAP', 1, '33.33', '3.33', '30.0', [['GST', 0.1, '3.0']]]]);
  assert.deepEqual(o.shippingLines.nodes.map(s => [s.title, amt(s.originalPriceSet), s.taxLines.map(x => amt(x.priceSet))]), [['Standard', '9.95', ['1.0']]]);
  assert.equal(amt(o.subtotalPriceSet), '65.91');
  assert.equal(o.subtotalPriceSet.shopMoney.currencyCode, 'AUD');
  assert.equal(amt(o.totalDiscountsSet), '7.32');
  assert.equal(amt(o.totalShippingPriceSet), '9.95');
  assert.equal(amt(o.totalTaxSet), '7.59');
  assert.equal(amt(o.totalPriceSet), '83.45');
  // the parts add up to the cent: subtotal + shipping + tax = total; line and shipping tax lines = total tax
  assert.equal(cents(amt(o.subtotalPriceSet)) + cents(amt(o.totalShippingPriceSet)) + cents(amt(o.totalTaxSet)), cents(amt(o.totalPriceSet)));
  const taxParts = o.lineItems.nodes.flatMap(l => l.taxLines).concat(o.shippingLines.nodes.flatMap(s => s.taxLines)).reduce((s, x) => s + cents(amt(x.priceSet)), 0);
  assert.equal(taxParts, cents(amt(o.totalTaxSet)));
  assert.deepEqual(o.taxLines.map(x => [x.title, amt(x.priceSet)]), [['GST', '7.59']]);
  assert.deepEqual(o.discountCodes, ['TENOFF']);
  assert.deepEqual(o.discountApplications.nodes, [{ allocationMethod: 'EACH', code: 'TENOFF', value: { percentage: 10 } }]);
  assert.deepEqual(o.transactions.map(x => [x.kind, x.status, amt(x.amountSet)]), [['SALE', 'SUCCESS', '83.45']]);
  assert.equal(o.displayFinancialStatus, 'PAID');
  assert.deepEqual(o.customer, { email: 'ann@example.test', firstName: 'Ann' });
});

test('a fixed-amount code is spread over the lines in proportion, the rounding remainder on the last; prices that include tax', async () => {
  await seedProduct(t, 'tee', ['TEE-S'], { price: '19.95' });
  await seedProduct(t, 'cap', ['CAP'], { price: '33.33' });
  const a = await t.post('/_emulator/orders', { email: 'bo@example.test', lines: [{ sku: 'TEE-S', quantity: 2 }, { sku: 'CAP', quantity: 1 }], discount_code: { code: 'FIVE', amount: '5.00' } });
  const o = (await t.data(ORDER, { id: a.id })).order;
  // 5.00 × 39.90 / 73.23 = 2.724 → 2.72; the remaining 2.28 on CAP
  assert.deepEqual(o.lineItems.nodes.map(l => amt(l.totalDiscountSet)), ['2.72', '2.28']);
  assert.deepEqual(o.lineItems.nodes.map(l => amt(l.taxLines[0].priceSet)), ['3.72', '3.11']); // 37.18 → 3.718; 31.05 → 3.105
  assert.equal(amt(o.totalPriceSet), '75.06'); // 68.23 + 6.83
  const inc = await t.post('/_emulator/orders', { email: 'bo@example.test', taxes_included: true, lines: [{ sku: 'TEE-S', quantity: 2, price: '11.00' }] });
  const oi = (await t.data(ORDER, { id: inc.id })).order;
  assert.equal(amt(oi.lineItems.nodes[0].taxLines[0].priceSet), '2.0'); // 22.00 includes 22.00 × 0.1 / 1.1
  assert.equal(amt(oi.totalPriceSet), '22.0');
  // bad input is refused naming the field
  const r = await fetch(t.base + '/_emulator/orders', { method: 'POST', body: JSON.stringify({ lines: [{ sku: 'NOPE', quantity: 1 }] }) });
  assert.equal(r.status, 422);
  assert.match((await r.json()).error, /lines\[0\]\.sku: no variant has SKU 'NOPE'/);
});

test('fulfillment orders per location; fulfillmentCreate with tracking closes one, stock leaves that location', async () => {
  await seedProduct(t, 'ful-a', ['FUL-A']);
  await seedProduct(t, 'ful-b', ['FUL-B']);
  await stock('FUL-A', 'Main warehouse', 5);
  await stock('FUL-B', 'Sydney store', 5);
  const placed = await t.post('/_emulator/orders', { email: 'cy@example.test', lines: [{ sku: 'FUL-A', quantity: 1 }, { sku: 'FUL-B', quantity: 2 }] });
  const o = (await t.data(ORDER, { id: placed.id })).order;
  const fos = Object.fromEntries(o.fulfillmentOrders.nodes.map(f => [f.assignedLocation.name, f]));
  assert.deepEqual(Object.keys(fos).sort(), ['Main warehouse', 'Sydney store']);
  assert.deepEqual(fos['Sydney store'].lineItems.nodes.map(l => [l.sku, l.totalQuantity, l.remainingQuantity]), [['FUL-B', 2, 2]]);
  const FULFIL = `mutation F($f: FulfillmentInput!) { fulfillmentCreate(fulfillment: $f) { fulfillment { id status trackingInfo { company number url } fulfillmentLineItems(first: 5) { nodes { quantity lineItem { sku } } } } userErrors { field message } } }`;
  const f = (await t.data(FULFIL, { f: { notifyCustomer: false, trackingInfo: { company: 'Australia Post', number: 'AP123', url: 'https://auspost.com.au/mypost/track/AP123' },
    lineItemsByFulfillmentOrder: [{ fulfillmentOrderId: fos['Sydney store'].id, fulfillmentOrderLineItems: [{ id: fos['Sydney store'].lineItems.nodes[0].id, quantity: 2 }] }] } })).fulfillmentCreate;
  assert.deepEqual(f.userErrors, []);
  assert.equal(f.fulfillment.status, 'SUCCESS');
  assert.deepEqual(f.fulfillment.trackingInfo, [{ company: 'Australia Post', number: 'AP123', url: 'https://auspost.com.au/mypost/track/AP123' }]);
  assert.deepEqual(f.fulfillment.fulfillmentLineItems.nodes, [{ quantity: 2, lineItem: { sku: 'FUL-B' } }]);
  const again = (await t.data(FULFIL, { f: { lineItemsByFulfillmentOrder: [{ fulfillmentOrderId: fos['Sydney store'].id }] } })).fulfillmentCreate;
  assert.equal(again.fulfillment, null);
  assert.match(again.userErrors[0].message, /unfulfillable status= closed/);
  let after = (await t.data(ORDER, { id: placed.id })).order;
  assert.equal(after.displayFulfillmentStatus, 'PARTIALLY_FULFILLED');
  assert.deepEqual(after.fulfillmentOrders.nodes.map(x => [x.assignedLocation.name, x.status]).sort(), [['Main warehouse', 'OPEN'], ['Sydney store', 'CLOSED']]);
  const levels = (await t.state()).inventoryLevels;
  const lv = (sku, loc) => levels.find(l => l.sku === sku && l.location === loc);
  assert.deepEqual([lv('FUL-B', 'Sydney store').available, lv('FUL-B', 'Sydney store').committed, lv('FUL-B', 'Sydney store').on_hand], [3, 0, 3]);
  assert.deepEqual([lv('FUL-A', 'Main warehouse').available, lv('FUL-A', 'Main warehouse').committed, lv('FUL-A', 'Main warehouse').on_hand], [4, 1, 5]);
  // no lines listed: everything remaining on that fulfillment order
  assert.deepEqual((await t.data(FULFIL, { f: { lineItemsByFulfillmentOrder: [{ fulfillmentOrderId: fos['Main warehouse'].id }] } })).fulfillmentCreate.userErrors, []);
  after = (await t.data(ORDER, { id: placed.id })).order;
  assert.equal(after.displayFulfillmentStatus, 'FULFILLED');
  assert.deepEqual((await t.state()).fulfillments.map(x => x.lines), [[{ sku: 'FUL-B', quantity: 2 }], [{ sku: 'FUL-A', quantity: 1 }]]);
});

test('refunds split a line exactly over its units; cancellation closes the order and its fulfillment orders', async () => {
  await seedProduct(t, 'tee', ['TEE-S'], { price: '19.95' });
  const placed = await t.post('/_emulator/orders', { email: 'di@example.test', lines: [{ sku: 'TEE-S', quantity: 2 }], discount_code: { code: 'TENOFF', percentage: '10' }, shipping: { title: 'Standard', price: '9.95' } });
  const n = placed.id.split('/').pop();
  await t.post(`/_emulator/orders/${n}/refund`, { lines: [{ sku: 'TEE-S', quantity: 1 }], note: 'too big' });
  await t.post(`/_emulator/orders/${n}/refund`, { lines: [{ sku: 'TEE-S', quantity: 1 }], shipping: true });
  const o = (await t.data(ORDER, { id: placed.id })).order;
  // line 35.91 + GST 3.59: the first unit 17.96 + 1.80, the last what is left, 17.95 + 1.79
  assert.deepEqual(o.refunds.map(r => r.refundLineItems.nodes.map(x => [x.lineItem.sku, x.quantity, amt(x.subtotalSet), amt(x.totalTaxSet)])), [[['TEE-S', 1, '17.96', '1.8']], [['TEE-S', 1, '17.95', '1.79']]]);
  assert.deepEqual(o.refunds.map(r => amt(r.totalRefundedSet)), ['19.76', '30.69']); // the second with shipping 9.95 + GST 1.00
  // order total 35.91 + 9.95 + 3.59 + 1.00 = 50.45, refunded in full by the two
  assert.equal(amt(o.totalPriceSet), '50.45');
  assert.equal(cents('19.76') + cents('30.69'), cents(amt(o.totalPriceSet)));
  assert.deepEqual(o.transactions.map(x => [x.kind, amt(x.amountSet)]), [['SALE', '50.45'], ['REFUND', '19.76'], ['REFUND', '30.69']]);
  assert.equal(o.displayFinancialStatus, 'REFUNDED');
  const tooMany = await fetch(`${t.base}/_emulator/orders/${n}/refund`, { method: 'POST', body: JSON.stringify({ lines: [{ sku: 'TEE-S', quantity: 1 }] }) });
  assert.equal(tooMany.status, 422);

  const second = await t.post('/_emulator/orders', { email: 'di@example.test', lines: [{ sku: 'TEE-S', quantity: 1 }] });
  const cancelled = await t.post(`/_emulator/orders/${second.id.split('/').pop()}/cancel`, { reason: 'customer', refund: true });
  assert.equal(cancelled.cancelReason, 'CUSTOMER');
  const c = (await t.data(ORDER, { id: second.id })).order;
  assert.ok(c.cancelledAt);
  assert.equal(c.cancelReason, 'CUSTOMER');
  assert.deepEqual(c.fulfillmentOrders.nodes.map(x => x.status), ['CANCELLED']);
  assert.equal(c.displayFinancialStatus, 'REFUNDED');
  const found = await t.data('query Q($q: String!) { orders(first: 10, query: $q, sortKey: UPDATED_AT) { nodes { name } } }', { q: 'status:cancelled' });
  assert.deepEqual(found.orders.nodes.map(x => x.name), [c.name]);
});

async function waitFor(pred, what) {
  for (let i = 0; i < 200; i++) { const x = pred(); if (x) return x; await new Promise(r => setTimeout(r, 25)); }
  throw new Error(`timed out waiting for ${what}`);
}

test('webhooks: REST-style payloads signed with X-Shopify-Hmac-Sha256 (base64 HMAC-SHA256 of the raw body), retried, redelivered with the same id', async () => {
  await seedProduct(t, 'tee', ['TEE-S'], { price: '19.95' });
  failNext = 1; // the first attempt of orders/create fails: the emulator retries
  const placed = await t.post('/_emulator/orders', { email: 'ed@example.test', lines: [{ sku: 'TEE-S', quantity: 1 }], shipping: { title: 'Standard', price: '9.95' } });
  // (matched by content: a previous test's late delivery may arrive after the reset)
  const topic = (name, pred) => waitFor(() => hooks.find(h => h.headers['x-shopify-topic'] === name && pred(JSON.parse(h.raw))), name);
  const created = await topic('orders/create', b => b.email === 'ed@example.test');
  const h = created.headers;
  assert.equal(h['x-shopify-hmac-sha256'], createHmac('sha256', SECRET).update(created.raw).digest('base64'));
  assert.notEqual(h['x-shopify-hmac-sha256'], createHmac('sha256', 'another-secret').update(created.raw).digest('base64'));
  assert.equal(h['x-shopify-shop-domain'], 'ferry-test.myshopify.com');
  assert.equal(h['x-shopify-api-version'], '2026-10');
  assert.match(h['x-shopify-webhook-id'], /^[0-9a-f-]{36}$/);
  assert.ok(!Number.isNaN(Date.parse(h['x-shopify-triggered-at'])));
  const body = JSON.parse(created.raw);
  assert.equal(body.admin_graphql_api_id, placed.id);
  assert.equal(body.name, placed.name);
  assert.deepEqual([body.subtotal_price, body.total_tax, body.total_price, body.currency], ['19.95', '3.00', '32.90', 'AUD']); // GST 2.00 (1.995) + 1.00 (0.995)
  assert.deepEqual(body.line_items.map(l => [l.sku, l.quantity, l.price, l.tax_lines.map(x => x.price)]), [['TEE-S', 1, '19.95', ['2.00']]]);
  const deliveries = await (await fetch(t.base + '/_emulator/webhooks')).json();
  const d = deliveries.find(x => x.id === h['x-shopify-webhook-id']);
  assert.equal(d.attempts, 2);
  const redelivered = await t.post('/_emulator/webhooks/redeliver', { id: d.id });
  assert.deepEqual(redelivered.pending, []);
  const copies = hooks.filter(x => x.headers['x-shopify-webhook-id'] === d.id);
  assert.equal(copies.length, 2);
  assert.ok(copies[1].raw.equals(copies[0].raw));
  // fulfillment and cancellation topics
  const fo = (await t.data(ORDER, { id: placed.id })).order.fulfillmentOrders.nodes[0];
  await t.data('mutation F($f: FulfillmentInput!) { fulfillmentCreate(fulfillment: $f) { userErrors { message } } }', { f: { trackingInfo: { number: 'TN1' }, lineItemsByFulfillmentOrder: [{ fulfillmentOrderId: fo.id }] } });
  const ff = await topic('fulfillments/create', b => b.tracking_number === 'TN1');
  assert.deepEqual(JSON.parse(ff.raw).tracking_numbers, ['TN1']);
  await seedProduct(t, 'tee', ['TEE-S'], { price: '21.00' });
  const pu = await topic('products/update', b => b.variants[0].price === '21.00');
  assert.equal(JSON.parse(pu.raw).variants[0].price, '21.00');
});

test('webhookSubscriptionCreate: deliveries also go to the address of the subscription, for its topic only', async () => {
  const got = [];
  const sub = http.createServer((req, res) => { const c = []; req.on('data', x => c.push(x)); req.on('end', () => { got.push({ topic: req.headers['x-shopify-topic'], body: JSON.parse(Buffer.concat(c)) }); res.end(); }); });
  await new Promise(r => sub.listen(0, '127.0.0.1', r));
  try {
    const uri = `http://127.0.0.1:${sub.address().port}/orders`;
    const r = await t.data('mutation W($topic: WebhookSubscriptionTopic!, $w: WebhookSubscriptionInput!) { webhookSubscriptionCreate(topic: $topic, webhookSubscription: $w) { webhookSubscription { id topic uri format } userErrors { message } } }',
      { topic: 'ORDERS_CREATE', w: { uri, format: 'JSON' } });
    assert.deepEqual(r.webhookSubscriptionCreate.userErrors, []);
    assert.equal(r.webhookSubscriptionCreate.webhookSubscription.topic, 'ORDERS_CREATE');
    await seedProduct(t, 'tee', ['TEE-S'], { price: '19.95' });
    const placed = await t.post('/_emulator/orders', { email: 'fi@example.test', lines: [{ sku: 'TEE-S', quantity: 1 }] });
    await waitFor(() => got.length, 'a delivery to the subscription');
    await waitFor(() => hooks.some(h => h.headers['x-shopify-topic'] === 'orders/create' && JSON.parse(h.raw).email === 'fi@example.test'), 'the delivery to SHOPIFY_WEBHOOK_URL');
    assert.deepEqual(got.map(g => [g.topic, g.body.admin_graphql_api_id]), [['orders/create', placed.id]]); // not products/create, not customers/create
  } finally { await new Promise(r => sub.close(r)); }
});

test('orders by UPDATED_AT page by cursor position: an order updated between pages is not skipped, it comes again later', async () => {
  await seedProduct(t, 'tee', ['TEE-S'], { price: '19.95' });
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await t.post('/_emulator/orders', { email: `p${i}@example.test`, lines: [{ sku: 'TEE-S', quantity: 1 }] })).id);
  const PAGE = 'query P($after: String) { orders(first: 1, after: $after, sortKey: UPDATED_AT, query: "updated_at:>=\'2000-01-01\'") { nodes { id } pageInfo { hasNextPage endCursor } } }';
  const p1 = (await t.data(PAGE, {})).orders;
  assert.deepEqual(p1.nodes.map(n => n.id), [ids[0]]);
  // the first order changes (its updated_at moves past the others) before the next page is read
  await new Promise(r => setTimeout(r, 1100));
  await t.data('mutation T($id: ID!) { tagsAdd(id: $id, tags: ["seen"]) { userErrors { message } } }', { id: ids[0] });
  const seen = [];
  let after = p1.pageInfo.endCursor, more = p1.pageInfo.hasNextPage;
  while (more) { const p = (await t.data(PAGE, { after })).orders; seen.push(...p.nodes.map(n => n.id)); after = p.pageInfo.endCursor; more = p.pageInfo.hasNextPage; }
  assert.deepEqual(seen, [ids[1], ids[2], ids[0]]);
  const bad = await t.gql(PAGE, { after: 'not-a-cursor' });
  assert.equal(bad.errors[0].extensions.code, 'BAD_REQUEST');
});

test('ids and order names are never handed out twice: not after a reset, not after a restart on the same data folder; a given name is kept', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shopify-counters-'));
  const place = async e => { await seedProduct(e, 'tee', ['TEE-S']); return e.post('/_emulator/orders', { email: 'gi@example.test', lines: [{ sku: 'TEE-S', quantity: 1 }] }); };
  const first = await start({ SHOPIFY_DATA_DIR: dataDir, SHOPIFY_ORDER_NUMBER_START: '5001' });
  let a, b, c, named, locationId;
  try {
    a = await place(first);
    assert.equal(a.name, '#5001');
    locationId = (await first.state()).locations[0].id;
    await first.post('/_emulator/reset');
    b = await place(first);
    assert.equal(b.name, '#5002');
    assert.notEqual(b.id, a.id);
    assert.equal((await first.state()).locations[0].id, locationId); // the seed keeps its ids
  } finally { await first.close(); }
  const second = await start({ SHOPIFY_DATA_DIR: dataDir, SHOPIFY_ORDER_NUMBER_START: '5001' });
  try {
    c = await place(second);
    assert.equal(c.name, '#5003');
    assert.ok(![a.id, b.id].includes(c.id));
    named = await second.post('/_emulator/orders', { name: '#T-42', email: 'gi@example.test', lines: [{ sku: 'TEE-S', quantity: 1 }] });
    assert.equal(named.name, '#T-42');
    const again = await fetch(second.base + '/_emulator/orders', { method: 'POST', body: JSON.stringify({ name: '#T-42', lines: [{ sku: 'TEE-S', quantity: 1 }] }) });
    assert.equal(again.status, 422);
    assert.match((await again.json()).error, /order\.name: an order named '#T-42' exists already/);
    assert.equal((await second.data('query O($q: String!) { orders(first: 5, query: $q) { nodes { id } } }', { q: "name:'#T-42'" })).orders.nodes[0].id, named.id);
  } finally { await second.close(); }
});
