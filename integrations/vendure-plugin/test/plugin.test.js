// Unit tests of the plugin's own logic, run by `node --test` against the compiled package: `npm test` in
// this folder (after `npm install`) tests ./dist; FERRY_VENDURE_PLUGIN=<an installed copy> tests that one.
// Ferry's test suite runs them on the package the test peer installed from the tarball
// (crates/connectors/tests/vendure_plugin_live.rs, `the_plugins_unit_tests_pass_on_the_installed_package`).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const crypto = require('node:crypto');
const plugin = require(process.env.FERRY_VENDURE_PLUGIN || '..');

const quietLog = () => {
  const lines = [];
  return { lines, info: m => lines.push('info ' + m), warn: m => lines.push('warn ' + m), error: m => lines.push('error ' + m) };
};

/** A local receiver answering with `status(n, req, body)` for the n-th request (from 1). */
async function receiver(status) {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', c => (body += c));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      const code = status(seen.length, req, body);
      res.writeHead(code, code === 429 ? { 'retry-after': '0' } : {});
      res.end(code >= 400 ? 'nope' : '');
    });
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/hooks/shop`, seen, close: () => new Promise(r => server.close(r)) };
}

const until = async (what, cond, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise(r => setTimeout(r, 10));
  }
};

const fast = { initialDelayMs: 20, maxDelayMs: 80, giveUpAfterMs: 2000 };

test('the signature is the hex HMAC-SHA256 of the raw body that ferry serve checks', () => {
  const body = '{"type":"order.state","code":"ABC"}';
  const hex = crypto.createHmac('sha256', 's3cret').update(body).digest('hex');
  assert.equal(plugin.signature('s3cret', body), 'sha256=' + hex);
  assert.notEqual(plugin.signature('other', body), 'sha256=' + hex);
});

test('backoff doubles with jitter, stays under the cap and honours Retry-After up to the cap', () => {
  const retry = { initialDelayMs: 1000, maxDelayMs: 300000, giveUpAfterMs: 86400000 };
  for (const [attempt, exp] of [[1, 1000], [2, 2000], [3, 4000], [10, 300000], [60, 300000]]) {
    assert.equal(plugin.backoffMs(attempt, retry, undefined, () => 0), exp / 2);
    assert.equal(plugin.backoffMs(attempt, retry, undefined, () => 1), exp);
  }
  assert.equal(plugin.backoffMs(1, retry, 30000, () => 0), 30000, 'at least Retry-After');
  assert.equal(plugin.backoffMs(1, retry, 10 * 3600 * 1000, () => 0), 300000, 'a Retry-After is capped');
});

test('Retry-After reads delta-seconds and HTTP dates', () => {
  const now = Date.parse('2026-12-03T08:00:00Z');
  assert.equal(plugin.parseRetryAfter('7', now), 7000);
  assert.equal(plugin.parseRetryAfter('Thu, 03 Dec 2026 08:00:30 GMT', now), 30000);
  assert.equal(plugin.parseRetryAfter('Thu, 03 Dec 2026 07:00:00 GMT', now), 0, 'a date in the past: now');
  assert.equal(plugin.parseRetryAfter('soon', now), undefined);
  assert.equal(plugin.parseRetryAfter(null, now), undefined);
});

test('a delivery answered 503 is sent again with the same id and body, signed, freshly stamped', async () => {
  const r = await receiver(n => (n === 1 ? 503 : 204));
  const log = quietLog();
  const q = new plugin.DeliveryQueue({ url: r.url, secret: 'k', retry: fast, maxQueued: 10, concurrency: 2, timeoutMs: 2000, log });
  const id = q.enqueue('order.state', { id: 7, code: 'ABC', from: 'ArrangingPayment', to: 'PaymentSettled' });
  await until('two attempts', () => r.seen.length === 2 && q.size === 0);
  const [a, b] = r.seen;
  for (const d of [a, b]) {
    assert.equal(d.headers['x-ferry-delivery'], id);
    assert.equal(d.headers['x-ferry-signature'], plugin.signature('k', d.body));
    assert.equal(d.headers['x-ferry-event'], 'order.state');
    assert.equal(d.headers['content-type'], 'application/json');
    assert.ok(Math.abs(Number(d.headers['x-ferry-timestamp']) - Date.now() / 1000) < 5);
  }
  assert.equal(a.body, b.body);
  const event = JSON.parse(a.body);
  assert.deepEqual({ ...event, at: undefined }, { type: 'order.state', at: undefined, id: 7, code: 'ABC', from: 'ArrangingPayment', to: 'PaymentSettled' });
  assert.ok(!Number.isNaN(Date.parse(event.at)));
  assert.ok(log.lines.some(l => l.startsWith('warn ') && l.includes('HTTP 503')), log.lines.join('\n'));
  assert.ok(log.lines.some(l => l.startsWith('info ') && l.includes('work again')), log.lines.join('\n'));
  q.stop();
  await r.close();
});

test('429 and connection errors are retried; a 401 is not (the same bytes would be refused again)', async () => {
  const r = await receiver((n, req, body) => (body.includes('"refused"') ? 401 : n === 1 ? 429 : 204));
  const log = quietLog();
  const q = new plugin.DeliveryQueue({ url: r.url, secret: 'k', retry: fast, maxQueued: 10, concurrency: 1, timeoutMs: 2000, log });
  q.enqueue('variant.updated', { skus: ['A'] });
  await until('the 429 retried', () => r.seen.length === 2 && q.size === 0);
  q.enqueue('variant.updated', { skus: ['refused'] });
  await until('the 401', () => r.seen.length === 3 && q.size === 0);
  await new Promise(res => setTimeout(res, 300));
  assert.equal(r.seen.length, 3, 'the 401 was not sent again');
  assert.ok(log.lines.some(l => l.startsWith('error ') && l.includes('HTTP 401') && l.includes('not retried')), log.lines.join('\n'));
  q.stop();
  await r.close();
});

test('a delivery to a receiver that is down is given up after giveUpAfterMs, and says so', async () => {
  const r = await receiver(() => 204);
  await r.close(); // nothing listens there now: connection refused
  const log = quietLog();
  const q = new plugin.DeliveryQueue({ url: r.url, secret: 'k', retry: { initialDelayMs: 10, maxDelayMs: 40, giveUpAfterMs: 300 }, maxQueued: 10, concurrency: 1, timeoutMs: 500, log });
  const id = q.enqueue('stock.movement', { movements: [] });
  await until('given up', () => q.size === 0, 5000);
  const gaveUp = log.lines.find(l => l.startsWith('error ') && l.includes('gave up'));
  assert.ok(gaveUp && gaveUp.includes(id) && gaveUp.includes('ECONNREFUSED'), log.lines.join('\n'));
  q.stop();
});

test('the queue holds at most maxQueued deliveries, dropping the oldest', async () => {
  const held = [];
  const server = http.createServer((req, res) => held.push(res)); // never answers while the test fills the queue
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const log = quietLog();
  const q = new plugin.DeliveryQueue({ url, secret: 'k', retry: fast, maxQueued: 3, concurrency: 1, timeoutMs: 5000, log });
  for (let i = 0; i < 6; i++) q.enqueue('customer.updated', { id: i });
  assert.equal(q.size, 3);
  assert.ok(log.lines.some(l => l.startsWith('error ') && l.includes('queue full')), log.lines.join('\n'));
  q.stop();
  for (const res of held) res.end();
  server.closeAllConnections();
  await new Promise(r => server.close(r));
});

test('enqueue never waits for the network: it returns before the POST starts', async () => {
  const r = await receiver(() => 204);
  const q = new plugin.DeliveryQueue({ url: r.url, secret: 'k', retry: fast, maxQueued: 100, concurrency: 1, timeoutMs: 2000, log: quietLog() });
  for (let i = 0; i < 50; i++) q.enqueue('product.updated', { id: i });
  // Still in the same synchronous turn: nothing has reached the receiver, and every event is held.
  assert.equal(r.seen.length, 0);
  assert.equal(q.size, 50);
  await until('all delivered', () => r.seen.length === 50 && q.size === 0);
  q.stop();
  await r.close();
});

test('the fixed price is the adjustment to the cent, never upwards, in the line tax mode', () => {
  // Net channel, net line: 49.99 → 37.13 is −12.86 a unit.
  assert.equal(plugin.fixedPriceAdjustment(4999, false, 3713, false, 10), -1286);
  // Gross channel, gross line: 54.99 → 40.85 is −14.14 a unit (Vendure reads it with tax).
  assert.equal(plugin.fixedPriceAdjustment(5499, true, 4085, true, 10), -1414);
  // Never a surcharge.
  assert.equal(plugin.fixedPriceAdjustment(3000, false, 3713, false, 10), 0);
  // A target quoted in another mode than the line's is converted first (the channel's setting changed).
  assert.equal(plugin.fixedPriceAdjustment(4999, false, 4084, true, 10), -1286); // 40.84 gross = 37.13 net
  assert.equal(plugin.fixedPriceAdjustment(5499, true, 3714, false, 10), -1414); // 37.14 net = 40.85 gross
});

test('options are checked at init, naming the option at fault', () => {
  assert.throws(() => plugin.resolveOptions({ webhookUrl: 'not a url', secret: 'k' }), /webhookUrl is not a URL/);
  assert.throws(() => plugin.resolveOptions({ webhookUrl: 'ftp://x/', secret: 'k' }), /webhookUrl must be http\(s\)/);
  assert.throws(() => plugin.resolveOptions({ webhookUrl: 'https://ferry.example/hooks/shop' }), /secret is required/);
  assert.throws(() => plugin.resolveOptions({ webhookUrl: 'https://f/hooks/shop', secret: 'k', events: ['order', 'variants'] }), /events names no event type: variants/);
  assert.throws(() => plugin.resolveOptions({ retry: { giveUpAfterMs: 0 } }), /retry.giveUpAfterMs must be a positive number/);
  const o = plugin.resolveOptions({ webhookUrl: ' https://f/hooks/shop ', secret: 'k', events: ['order', 'variant.updated'] });
  assert.equal(o.webhookUrl, 'https://f/hooks/shop');
  assert.deepEqual(o.retry, plugin.DEFAULT_RETRY);
  assert.equal(plugin.resolveOptions({}).webhookUrl, undefined, 'no URL: webhooks off, nothing required');
  assert.deepEqual([...plugin.resolveOptions({}).events], [...plugin.EVENT_TYPES]);
});

test('the plugin declares its custom fields without overriding the shop', () => {
  const config = { Product: [{ name: 'brand', type: 'string' }], Customer: [{ name: 'company', type: 'int' }] };
  const clashes = plugin.addCustomFields(config, plugin.ferryCustomFields);
  assert.deepEqual(clashes, [{ entity: 'Customer', name: 'company', theirs: 'int', ours: 'string' }]);
  assert.equal(config.Product.filter(f => f.name === 'brand').length, 1);
  for (const [entity, names] of Object.entries({
    Product: ['ferryGroup', 'brand', 'imageUrls', 'documentUrls', 'videoUrls', 'shortDescription'],
    ProductVariant: ['barcode', 'weightGrams'], Customer: ['ferryCode', 'taxId', 'company'], Address: ['ferryKey'],
    Order: ['ferryShipments'], Fulfillment: ['ferryShipmentNumber', 'trackingUrl'],
  })) {
    for (const n of names) assert.ok(config[entity].some(f => f.name === n), `${entity}.${n}`);
  }
  assert.equal(plugin.FIXED_PRICE_ACTION_CODE, 'ferry_variant_fixed_price');
  assert.equal(plugin.FULFILLMENT_HANDLER_CODE, 'ferry-fulfillment');
});
