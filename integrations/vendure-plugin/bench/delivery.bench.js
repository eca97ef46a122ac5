// What a webhook costs the shop: the time `enqueue` takes on Vendure's side (inside the EventBus
// subscriber, so on the path of the request that raised the event), the memory a queued delivery holds,
// and how fast the queue drains to a local receiver answering 204, with Ferry up and after an outage.
//
//   FERRY_VENDURE_PLUGIN=<installed package, e.g. target/peers/vendure/node_modules/@ferry/vendure-plugin> \
//     node --expose-gc integrations/vendure-plugin/bench/delivery.bench.js [EVENTS]
// (or `npm run bench` in this folder after `npm install`). Results: docs/benchmarks.md.
'use strict';
const http = require('node:http');
const plugin = require(process.env.FERRY_VENDURE_PLUGIN || '..');

const events = Number(process.argv[2] || 20000);
const log = { info() {}, warn() {}, error() {} };
const body = i => ({ id: i, code: 'ORD' + String(i).padStart(12, '0'), from: 'ArrangingPayment', to: 'PaymentSettled' });

async function receiver() {
  let count = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      count++;
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  return { server, port: server.address().port, count: () => count };
}

const until = cond => new Promise(resolve => {
  const t = setInterval(() => cond() && (clearInterval(t), resolve()), 5);
});
const gc = () => global.gc && global.gc();

(async () => {
  const r = await receiver();
  const url = `http://127.0.0.1:${r.port}/hooks/shop`;
  const retry = { initialDelayMs: 50, maxDelayMs: 200, giveUpAfterMs: 600000 };

  // 1. enqueue on the request path, Ferry up: the loop below is synchronous, so no POST starts before it ends.
  let q = new plugin.DeliveryQueue({ url, secret: 'bench-secret', retry, maxQueued: events * 2, concurrency: 4, timeoutMs: 10000, log });
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  let t0 = process.hrtime.bigint();
  for (let i = 0; i < events; i++) q.enqueue('order.state', body(i));
  const enqueueNs = Number(process.hrtime.bigint() - t0);
  const heapPerEvent = (process.memoryUsage().heapUsed - heap0) / events;
  t0 = process.hrtime.bigint();
  await until(() => r.count() >= events && q.size === 0);
  const drainS = Number(process.hrtime.bigint() - t0) / 1e9;
  q.stop();

  // 2. the same events while Ferry is down for 2 s, then up: how long after it is back until all arrived.
  const down = http.createServer();
  await new Promise(res => down.listen(0, '127.0.0.1', res));
  const port = down.address().port;
  await new Promise(res => down.close(res));
  q = new plugin.DeliveryQueue({ url: `http://127.0.0.1:${port}/hooks/shop`, secret: 'bench-secret', retry, maxQueued: events * 2, concurrency: 4, timeoutMs: 10000, log });
  let arrived = 0;
  const again = http.createServer((req, res) => { req.resume(); req.on('end', () => { arrived++; res.writeHead(204); res.end(); }); });
  for (let i = 0; i < events; i++) q.enqueue('order.state', body(i));
  await new Promise(res => setTimeout(res, 2000));
  await new Promise(res => again.listen(port, '127.0.0.1', res));
  t0 = process.hrtime.bigint();
  await until(() => arrived >= events && q.size === 0);
  const recoverS = Number(process.hrtime.bigint() - t0) / 1e9;
  q.stop();
  again.close();
  r.server.close();

  console.log(JSON.stringify({
    node: process.version,
    events,
    enqueue_us_per_event: +(enqueueNs / events / 1000).toFixed(2),
    heap_bytes_per_queued_event: Math.round(heapPerEvent),
    drain_deliveries_per_s: Math.round(events / drainS),
    after_outage_deliveries_per_s: Math.round(events / recoverS),
    after_outage_seconds: +recoverS.toFixed(2),
  }, null, 1));
  process.exit(0);
})();
