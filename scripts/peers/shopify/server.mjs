#!/usr/bin/env node
// Ferry's Shopify emulator: the Admin GraphQL API 2026-10 on Shopify's official schema (introspection from
// npm @shopify/dev-mcp, fetched by schema.sh), executed by graphql-js against an in-memory shop.
// Started by scripts/peers/shopify/up.sh DIR PORT; what it implements and what it does not, with the
// Shopify documentation each behaviour follows: docs/connectors/shopify-emulator.md.
//
// Env: PORT (default 18400), SHOPIFY_SCHEMA (the introspection JSON), SHOPIFY_NODE_MODULES (graphql-js),
//      SHOPIFY_ACCESS_TOKEN (default ferry-test-token), SHOPIFY_BUCKET_MAX (default 2000),
//      SHOPIFY_RESTORE_RATE (default 100 points/s), SHOPIFY_WEBHOOK_URL, SHOPIFY_WEBHOOK_SECRET
//      (default ferry-test-shopify-secret), SHOPIFY_WEBHOOK_RETRY_SECONDS (default 20),
//      SHOPIFY_BULK_DELAY_MS (default 200: a bulk operation stays RUNNING that long), SHOPIFY_DATA_DIR
//      (bulk results, staged uploads, and counters.json — the numbering of ids and order names, kept across
//      restarts; default a fresh temp folder), SHOPIFY_ORDER_NUMBER_START (first order number, default 1001,
//      for a DATA_DIR without counters yet).
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHmac, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { loadGraphql, loadSchema } from './load-graphql.mjs';
import { makeCost, Bucket } from './lib/cost.mjs';
import { Shop } from './lib/store.mjs';
import { makeResolvers } from './lib/resolvers.mjs';
import { connection, GraphQLishError } from './lib/util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const API_VERSION = '2026-10';

function writeJsonAtomic(file, value) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value));
  fs.renameSync(tmp, file);
}

export function createEmulator(opts = {}) {
  const env = { ...process.env, ...opts.env };
  const schemaFile = env.SHOPIFY_SCHEMA;
  if (!schemaFile) throw new Error('SHOPIFY_SCHEMA (the admin_2026-10.json from schema.sh) is not set');
  const graphql = loadGraphql(path.dirname(path.resolve(schemaFile)), HERE);
  const schema = loadSchema(graphql, schemaFile);
  const cost = makeCost(graphql, schema);
  const token = env.SHOPIFY_ACCESS_TOKEN || 'ferry-test-token';
  const secret = env.SHOPIFY_WEBHOOK_SECRET || 'ferry-test-shopify-secret';
  const webhookUrl = env.SHOPIFY_WEBHOOK_URL || '';
  const retrySeconds = Number(env.SHOPIFY_WEBHOOK_RETRY_SECONDS || 20);
  const bulkDelayMs = Number(env.SHOPIFY_BULK_DELAY_MS ?? 200);
  const dataDir = env.SHOPIFY_DATA_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-shopify-'));
  fs.mkdirSync(path.join(dataDir, 'bulk'), { recursive: true });
  fs.mkdirSync(path.join(dataDir, 'uploads'), { recursive: true });
  const bucket = new Bucket(Number(env.SHOPIFY_BUCKET_MAX || 2000), Number(env.SHOPIFY_RESTORE_RATE || 100));
  let baseUrl = 'http://127.0.0.1';
  const log = opts.quiet ? () => {} : (...a) => console.log('[shopify-emulator]', ...a);

  // ---- webhooks ---------------------------------------------------------------------------------
  const deliveries = []; // {id, topic, body, headers, attempts, delivered, lastError, destinations}
  const timers = new Set();
  async function deliver(d, attempt = 0) {
    const headers = { 'content-type': 'application/json', 'x-shopify-topic': d.topic, 'x-shopify-hmac-sha256': d.hmac, 'x-shopify-webhook-id': d.id,
      'x-shopify-event-id': d.eventId, 'x-shopify-shop-domain': shop.domain, 'x-shopify-api-version': API_VERSION, 'x-shopify-triggered-at': d.triggeredAt };
    const failed = [];
    for (const url of d.pending) {
      d.attempts++;
      try {
        const r = await fetch(url, { method: 'POST', headers, body: d.body, signal: AbortSignal.timeout(5000) });
        if (r.status < 200 || r.status >= 300) throw new Error(`HTTP ${r.status}`);
        d.delivered.push(url);
      } catch (e) { d.lastError = `${url}: ${e.message}`; failed.push(url); }
    }
    d.pending = failed;
    // Shopify retries failed deliveries with backoff (8 times over 4 hours); here quickly, for retrySeconds
    if (failed.length && (Date.now() - d.firstAt) / 1000 < retrySeconds) {
      const t = setTimeout(() => { timers.delete(t); deliver(d, attempt + 1); }, Math.min(250 * 2 ** attempt, 2000));
      timers.add(t);
    }
  }
  function emit(topic, payload) {
    const destinations = new Set(webhookUrl ? [webhookUrl] : []);
    for (const w of shop.webhookSubscriptions) if (topicName(w.topic) === topic && /^https?:/.test(w.uri)) destinations.add(w.uri);
    if (!destinations.size) return;
    const body = JSON.stringify(payload);
    const d = { id: randomUUID(), eventId: randomUUID(), topic, body, hmac: createHmac('sha256', secret).update(body).digest('base64'),
      triggeredAt: new Date().toISOString(), attempts: 0, delivered: [], pending: [...destinations], firstAt: Date.now(), lastError: null };
    deliveries.push(d);
    deliver(d);
  }
  const topicName = t => t.toLowerCase().replace(/_([a-z]+)$/, '/$1');

  // Numbering kept in DATA_DIR/counters.json: each start reserves the next million ids per type (so a
  // restart never hands out an id again), and the last order number is saved with every order.
  const countersFile = path.join(dataDir, 'counters.json');
  const saved = (() => { try { return JSON.parse(fs.readFileSync(countersFile, 'utf8')); } catch { return {}; } })();
  const counters = {
    idBase: saved.idNext || 0,
    orderNumber: saved.orderNumber ?? Number(env.SHOPIFY_ORDER_NUMBER_START || 1001) - 1,
    save() { writeJsonAtomic(countersFile, { idNext: counters.idBase + 1e6, orderNumber: shop.orderNumber }); },
  };
  const shop = new Shop({ events: (topic, payload) => emit(topic, payload), counters });
  counters.save();

  // ---- staged uploads & bulk operations ---------------------------------------------------------
  const stagedUploads = {
    create({ input }) {
      const targets = input.map(i => {
        const key = `tmp/${randomUUID()}/${path.basename(i.filename)}`;
        if ((i.httpMethod || 'PUT') === 'PUT') return { url: `${baseUrl}/_emulator/staged-uploads/${key}`, resourceUrl: `${baseUrl}/_emulator/staged-uploads/${key}`, parameters: [] };
        return { url: `${baseUrl}/_emulator/staged-uploads`, resourceUrl: `${baseUrl}/_emulator/staged-uploads/${key}`,
          parameters: [{ name: 'key', value: key }, { name: 'Content-Type', value: i.mimeType }, { name: 'success_action_status', value: '201' }, { name: 'acl', value: 'private' }] };
      });
      return { stagedTargets: targets, userErrors: [] };
    },
    path: key => path.join(dataDir, 'uploads', key.replace(/[^A-Za-z0-9._/-]/g, '_').replace(/\.\.+/g, '_')),
  };
  const bulk = {
    runQuery({ query }) {
      // API 2026-01 and later: up to five bulk query operations at a time per shop
      if (shop.bulkOperations.filter(b => b.type === 'QUERY' && ['CREATED', 'RUNNING'].includes(b.status)).length >= 5) {
        return { bulkOperation: null, userErrors: [{ field: ['query'], message: 'A maximum of 5 bulk query operations can run at a time for this app and shop.', code: 'LIMIT_REACHED' }] };
      }
      let doc;
      try { doc = graphql.parse(query); } catch (e) { return { bulkOperation: null, userErrors: [{ field: ['query'], message: `Invalid query: ${e.message}`, code: 'INVALID' }] }; }
      const errors = graphql.validate(schema, doc);
      if (errors.length) return { bulkOperation: null, userErrors: errors.map(e => ({ field: ['query'], message: e.message, code: 'INVALID' })) };
      const op = doc.definitions.find(d => d.kind === 'OperationDefinition');
      if (!op || op.operation !== 'query') return { bulkOperation: null, userErrors: [{ field: ['query'], message: 'Bulk queries must be a query operation.', code: 'INVALID' }] };
      const restriction = bulkRestriction(doc);
      if (restriction) return { bulkOperation: null, userErrors: [{ field: ['query'], message: restriction, code: 'INVALID' }] };
      const b = shop.add('BulkOperation', { type: 'QUERY', status: 'CREATED', query, objectCount: '0', rootObjectCount: '0', fileSize: null, url: null, partialDataUrl: null, errorCode: null, completedAt: null });
      shop.bulkOperations.push(b);
      later(() => finishBulkQuery(b, doc));
      return { bulkOperation: b, userErrors: [] };
    },
    runMutation({ mutation, stagedUploadPath, clientIdentifier }) {
      if (shop.bulkOperations.some(b => b.type === 'MUTATION' && ['CREATED', 'RUNNING'].includes(b.status))) {
        return { bulkOperation: null, userErrors: [{ field: ['mutation'], message: 'A bulk mutation operation for this app and shop is already in progress.', code: 'OPERATION_IN_PROGRESS' }] };
      }
      let doc;
      try { doc = graphql.parse(mutation); } catch (e) { return { bulkOperation: null, userErrors: [{ field: ['mutation'], message: `Invalid mutation: ${e.message}`, code: 'INVALID_MUTATION' }] }; }
      const errors = graphql.validate(schema, doc);
      const op = doc.definitions.find(d => d.kind === 'OperationDefinition');
      if (errors.length || !op || op.operation !== 'mutation') return { bulkOperation: null, userErrors: [{ field: ['mutation'], message: errors[0]?.message || 'Must be a mutation operation', code: 'INVALID_MUTATION' }] };
      const file = stagedUploads.path(stagedUploadPath);
      if (!fs.existsSync(file)) return { bulkOperation: null, userErrors: [{ field: ['stagedUploadPath'], message: 'The JSONL file could not be found. Try uploading the file again, and check that you\'ve entered the URL correctly for the stagedUploadPath mutation argument.', code: 'NO_SUCH_FILE' }] };
      const b = shop.add('BulkOperation', { type: 'MUTATION', status: 'CREATED', query: mutation, objectCount: '0', rootObjectCount: '0', fileSize: null, url: null, partialDataUrl: null, errorCode: null, completedAt: null, clientIdentifier: clientIdentifier ?? null });
      shop.bulkOperations.push(b);
      later(() => finishBulkMutation(b, doc, file));
      return { bulkOperation: b, userErrors: [] };
    },
  };
  // The documented restrictions of a bulk query: at least one connection, at most five, connections nested
  // at most two levels deep, and no top-level node/nodes.
  function bulkRestriction(doc) {
    const { TypeInfo, visit, visitWithTypeInfo, getNamedType } = graphql;
    const ti = new TypeInfo(schema);
    const isConn = t => t && /Connection$/.test(t.name) && t.getFields?.().pageInfo;
    let count = 0, depth = 0, maxDepth = 0, fieldDepth = 0, topNode = false;
    visit(doc, visitWithTypeInfo(ti, { Field: {
      enter(node) {
        if (fieldDepth === 0 && (node.name.value === 'node' || node.name.value === 'nodes')) topNode = true;
        fieldDepth++;
        if (isConn(getNamedType(ti.getType()))) { count++; depth++; maxDepth = Math.max(maxDepth, depth); }
      },
      leave() { fieldDepth--; if (isConn(getNamedType(ti.getType()))) depth--; },
    } }));
    if (topNode) return 'Bulk queries cannot use the top-level node or nodes fields.';
    if (count === 0) return 'Bulk queries must contain at least one connection.';
    if (count > 5) return `Bulk queries cannot contain more than 5 connections (this one has ${count}).`;
    if (maxDepth > 2) return `Bulk queries cannot contain connections nested more than 2 levels deep (this one has ${maxDepth}).`;
    return null;
  }
  function later(fn) { const t = setTimeout(() => { timers.delete(t); fn(); }, bulkDelayMs); timers.add(t); }
  function writeResult(b, lines) {
    const name = `${b.legacyResourceId}.jsonl`;
    const text = lines.map(l => JSON.stringify(l)).join('\n') + (lines.length ? '\n' : '');
    fs.writeFileSync(path.join(dataDir, 'bulk', name), text);
    b.fileSize = String(Buffer.byteLength(text));
    b.url = lines.length ? `${baseUrl}/_emulator/bulk/${name}` : null;
    b.status = 'COMPLETED'; b.completedAt = new Date().toISOString();
    emit('bulk_operations/finish', { admin_graphql_api_id: b.id, completed_at: b.completedAt, created_at: b.createdAt, error_code: null, status: 'completed', type: b.type.toLowerCase() });
  }
  // JSONL as Shopify writes it: one line per node of the top-level connection, nested connections'
  // nodes on lines of their own after their parent, with __parentId, and no `edges`/`node` wrappers.
  function finishBulkQuery(b, doc) {
    if (b.status === 'CANCELED') return;
    b.status = 'RUNNING';
    const result = graphql.execute({ schema, document: doc, rootValue: {}, contextValue: { bulk: true }, fieldResolver });
    if (result.errors?.length) { b.status = 'FAILED'; b.errorCode = 'INTERNAL_SERVER_ERROR'; b.completedAt = new Date().toISOString(); log('bulk query failed:', result.errors.map(e => e.message).join('; ')); return; }
    const lines = [];
    let roots = 0;
    const isConn = v => v && typeof v === 'object' && !Array.isArray(v) && (Array.isArray(v.edges) || Array.isArray(v.nodes));
    const nodesOf = v => (Array.isArray(v.edges) ? v.edges.map(e => e.node) : v.nodes);
    const walk = (conn, parentId) => {
      for (const node of nodesOf(conn)) {
        if (!node) continue;
        const line = {}, children = [];
        for (const [k, v] of Object.entries(node)) { if (isConn(v)) children.push(v); else line[k] = v; }
        if (parentId) line.__parentId = parentId; else roots++;
        lines.push(line);
        for (const c of children) walk(c, node.id);
      }
    };
    for (const v of Object.values(result.data || {})) if (isConn(v)) walk(v, null); else if (v) { lines.push(v); roots++; }
    b.objectCount = String(lines.length); b.rootObjectCount = String(roots);
    writeResult(b, lines);
  }
  function finishBulkMutation(b, doc, file) {
    if (b.status === 'CANCELED') return;
    b.status = 'RUNNING';
    const lines = [];
    fs.readFileSync(file, 'utf8').split('\n').forEach((text, i) => {
      if (!text.trim()) return;
      let variables;
      try { variables = JSON.parse(text); } catch (e) { lines.push({ errors: [{ message: `line ${i}: invalid JSON: ${e.message}` }], __lineNumber: i }); return; }
      const r = graphql.execute({ schema, document: doc, rootValue: {}, contextValue: {}, variableValues: variables, fieldResolver });
      lines.push({ ...(r.errors ? { errors: r.errors.map(e => ({ message: e.message, path: e.path })) } : {}), data: r.data ?? null, __lineNumber: i });
    });
    b.objectCount = String(lines.length); b.rootObjectCount = String(lines.length);
    writeResult(b, lines);
  }

  // ---- webhook subscriptions ----------------------------------------------------------------------
  const subscriptions = {
    create({ topic, webhookSubscription: w }) {
      if (!w.uri) return { webhookSubscription: null, userErrors: [{ field: ['webhookSubscription', 'uri'], message: "Address can't be blank" }] };
      if (shop.webhookSubscriptions.some(x => x.topic === topic && x.uri === w.uri)) return { webhookSubscription: null, userErrors: [{ field: ['webhookSubscription', 'callbackUrl'], message: 'Address for this topic has already been taken' }] };
      const s = shop.add('WebhookSubscription', { topic, uri: w.uri, format: w.format || 'JSON', filter: w.filter ?? null, includeFields: w.includeFields || [], metafieldNamespaces: w.metafieldNamespaces || [], metafields: [], name: w.name ?? null });
      shop.webhookSubscriptions.push(s);
      return { webhookSubscription: s, userErrors: [] };
    },
    remove({ id }) {
      const s = shop.get(id, 'WebhookSubscription');
      if (!s) return { deletedWebhookSubscriptionId: null, userErrors: [{ field: ['id'], message: 'Webhook subscription does not exist' }] };
      shop.webhookSubscriptions = shop.webhookSubscriptions.filter(x => x !== s);
      return { deletedWebhookSubscriptionId: id, userErrors: [] };
    },
  };

  // ---- GraphQL ------------------------------------------------------------------------------------
  const { Query, Mutation, types } = makeResolvers(shop, { bulk, stagedUploads, subscriptions });
  const { getNamedType, getNullableType, isListType } = graphql;
  function fieldResolver(source, args, ctx, info) {
    const parent = info.parentType.name;
    let v;
    if (parent === 'QueryRoot' || parent === 'Mutation') {
      const fn = (parent === 'QueryRoot' ? Query : Mutation)[info.fieldName];
      if (!fn) throw new GraphQLishError(`The Shopify emulator does not implement ${parent}.${info.fieldName} (scripts/peers/shopify/lib/resolvers.mjs)`, 'NOT_IMPLEMENTED');
      v = fn(source, args, ctx, info);
    } else {
      const t = types[source?.__typename || parent];
      if (t && Object.prototype.hasOwnProperty.call(t, info.fieldName)) v = t[info.fieldName](source, args, ctx, info);
      else v = source?.[info.fieldName];
      if (typeof v === 'function') v = v(args);
    }
    const named = getNamedType(info.returnType);
    if (v === undefined) {
      // a field the emulator does not model: its empty value when the schema has one, else null (a
      // non-null field then fails with graphql-js's error naming the field's path)
      if (isListType(getNullableType(info.returnType))) return [];
      if (/Connection$/.test(named.name) && named.getFields?.().pageInfo) return connection([], args, { unlimited: true });
      if (named.name === 'Boolean') return false;
      return null;
    }
    if (Array.isArray(v) && /Connection$/.test(named.name)) return connection(v, args, { unlimited: !!ctx?.bulk });
    return v;
  }

  // Clients send the same documents again and again: parse and validate each text once (validation
  // against a schema of this size costs milliseconds).
  const documents = new Map();
  function parseAndValidate(query) {
    let hit = documents.get(query);
    if (!hit) {
      const document = graphql.parse(query);
      hit = { document, validationErrors: graphql.validate(schema, document) };
      if (documents.size >= 1000) documents.delete(documents.keys().next().value);
      documents.set(query, hit);
    }
    return hit;
  }

  function runGraphql(body) {
    const { query, variables, operationName } = body || {};
    if (typeof query !== 'string' || !query.trim()) return { errors: [{ message: 'No query string was present' }] };
    let parsed;
    try { parsed = parseAndValidate(query); } catch (e) { return { errors: [{ message: e.message, locations: e.locations, extensions: { code: 'PARSE_ERROR' } }] }; }
    const { document, validationErrors } = parsed;
    if (validationErrors.length) return { errors: validationErrors.map(e => ({ message: e.message, locations: e.locations, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } })) };
    const ops = document.definitions.filter(d => d.kind === 'OperationDefinition');
    const op = operationName ? ops.find(o => o.name?.value === operationName) : ops.length === 1 ? ops[0] : null;
    if (!op) return { errors: [{ message: operationName ? `Unknown operation named "${operationName}".` : 'An operation name is required when the document has more than one operation.' }] };
    // variables are coerced (and rejected) by graphql-js before anything is charged
    const coerced = graphql.getVariableValues(schema, op.variableDefinitions || [], variables || {});
    if (coerced.errors) return { errors: coerced.errors.map(e => ({ message: e.message, locations: e.locations, extensions: { code: 'INVALID_VARIABLE' } })) };
    // "Input arguments that accept an array have a maximum size of 250" (Shopify API limits)
    const tooBig = largestInputArray(document, coerced.coerced);
    if (tooBig > 250) return { errors: [{ message: `The input array size of ${tooBig} is greater than the maximum allowed of 250.`, extensions: { code: 'MAX_INPUT_SIZE_EXCEEDED' } }] };
    const requested = cost(document, op, coerced.coerced);
    if (requested > 1000) {
      return { errors: [{ message: `Query cost is ${requested}, which exceeds the single query max cost limit (1000).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should be used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n`, extensions: { code: 'MAX_COST_EXCEEDED', cost: requested, maxCost: 1000 } }],
        extensions: { cost: { requestedQueryCost: requested, actualQueryCost: null, throttleStatus: bucket.status() } } };
    }
    if (!bucket.take(requested)) {
      return { errors: [{ message: 'Throttled', extensions: { code: 'THROTTLED', documentation: 'https://shopify.dev/api/usage/rate-limits' } }],
        extensions: { cost: { requestedQueryCost: requested, actualQueryCost: null, throttleStatus: bucket.status() } } };
    }
    const result = graphql.execute({ schema, document, rootValue: {}, contextValue: {}, variableValues: variables || {}, operationName, fieldResolver });
    const actual = result.data ? Math.min(requested, cost(document, op, coerced.coerced, result.data)) : requested;
    bucket.give(requested - actual);
    const out = {};
    if (result.errors?.length) out.errors = result.errors.map(e => { const j = e.toJSON(); if (e.originalError && !e.originalError.extensions && !(e.originalError instanceof GraphQLishError) && !e.originalError.locations) log('resolver error:', e.originalError.stack); return j; });
    out.data = result.data ?? null;
    out.extensions = { cost: { requestedQueryCost: requested, actualQueryCost: actual, throttleStatus: bucket.status() } };
    return out;
  }

  function largestInputArray(document, variables) {
    let max = 0;
    const walk = v => { if (Array.isArray(v)) { max = Math.max(max, v.length); v.forEach(walk); } else if (v && typeof v === 'object') Object.values(v).forEach(walk); };
    walk(variables);
    graphql.visit(document, { ListValue(node) { max = Math.max(max, node.values.length); } });
    return max;
  }

  // ---- HTTP -------------------------------------------------------------------------------------------
  const readBody = req => new Promise((resolve, reject) => { const chunks = []; req.on('data', c => chunks.push(c)); req.on('end', () => resolve(Buffer.concat(chunks))); req.on('error', reject); });
  const send = (res, status, obj, headers = {}) => {
    const body = typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj);
    res.writeHead(status, { 'content-type': typeof obj === 'string' ? 'text/plain' : 'application/json', ...headers });
    res.end(body);
  };
  const json = buf => { if (!buf.length) return {}; return JSON.parse(buf.toString('utf8')); };
  // minimal multipart/form-data: the fields and the file part of a staged-upload POST
  function multipart(buf, contentType) {
    const m = /boundary=(?:"([^"]+)"|([^;]+))/.exec(contentType || '');
    if (!m) throw new Error('multipart body without boundary');
    const boundary = Buffer.from('--' + (m[1] || m[2]));
    const parts = {};
    let pos = buf.indexOf(boundary);
    while (pos >= 0) {
      const next = buf.indexOf(boundary, pos + boundary.length);
      if (next < 0) break;
      const part = buf.subarray(pos + boundary.length + 2, next - 2);
      const headEnd = part.indexOf('\r\n\r\n');
      const head = part.subarray(0, headEnd).toString();
      const name = /name="([^"]*)"/.exec(head)?.[1];
      if (name) parts[name] = part.subarray(headEnd + 4);
      pos = next;
    }
    return parts;
  }

  async function handle(req, res) {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    try {
      if (p === `/admin/api/${API_VERSION}/graphql.json` && req.method === 'POST') {
        if (req.headers['x-shopify-access-token'] !== token) return send(res, 401, { errors: '[API] Invalid API key or access token (unrecognized login or wrong password)' });
        let body;
        try { body = json(await readBody(req)); } catch { return send(res, 400, { errors: 'Invalid JSON in request body' }); }
        return send(res, 200, runGraphql(body));
      }
      if (/^\/admin\/api\/[^/]+\/graphql\.json$/.test(p)) return send(res, 404, { errors: `The emulator serves API version ${API_VERSION} only` });
      if (p === '/_emulator/health') return send(res, 200, { ok: true, apiVersion: API_VERSION });
      if (p === '/_emulator/reset' && req.method === 'POST') {
        for (const t of timers) clearTimeout(t);
        timers.clear(); deliveries.length = 0; shop.reset(); bucket.available = bucket.max;
        return send(res, 200, { ok: true });
      }
      if (p === '/_emulator/state' && req.method === 'GET') return send(res, 200, shop.dump());
      if (p === '/_emulator/bucket' && req.method === 'POST') {
        const b = json(await readBody(req));
        if (b.max != null) bucket.max = Number(b.max);
        if (b.restoreRate != null) bucket.rate = Number(b.restoreRate);
        bucket.refill();
        bucket.available = b.available != null ? Number(b.available) : Math.min(bucket.available, bucket.max);
        return send(res, 200, bucket.status());
      }
      if (p === '/_emulator/orders' && req.method === 'POST') {
        const o = shop.placeOrder(json(await readBody(req)));
        return send(res, 200, { id: o.id, name: o.name, ...totals(o) });
      }
      let m;
      if ((m = /^\/_emulator\/orders\/(\d+)\/cancel$/.exec(p)) && req.method === 'POST') {
        const o = shop.cancelOrder(Number(m[1]), json(await readBody(req)));
        return send(res, 200, { id: o.id, name: o.name, cancelledAt: o.cancelledAt, cancelReason: o.cancelReason });
      }
      if ((m = /^\/_emulator\/orders\/(\d+)\/refund$/.exec(p)) && req.method === 'POST') {
        const r = shop.refundOrder(Number(m[1]), json(await readBody(req)));
        return send(res, 200, { id: r.id, totalRefunded: (r.totalRefundedCents / 100).toFixed(2) });
      }
      if (p === '/_emulator/webhooks' && req.method === 'GET') {
        return send(res, 200, deliveries.map(d => ({ id: d.id, topic: d.topic, attempts: d.attempts, delivered: d.delivered, pending: d.pending, lastError: d.lastError, body: JSON.parse(d.body) })));
      }
      if (p === '/_emulator/webhooks/redeliver' && req.method === 'POST') {
        const { id } = json(await readBody(req));
        const d = deliveries.find(x => x.id === id);
        if (!d) return send(res, 404, { error: `no webhook delivery ${id}` });
        d.pending = [...new Set([...d.delivered, ...d.pending])]; d.firstAt = Date.now();
        await deliver(d);
        return send(res, 200, { id: d.id, delivered: d.delivered, pending: d.pending, lastError: d.lastError });
      }
      if ((m = /^\/_emulator\/bulk\/(\d+\.jsonl)$/.exec(p)) && req.method === 'GET') {
        const f = path.join(dataDir, 'bulk', m[1]);
        if (!fs.existsSync(f)) return send(res, 404, { error: 'no such bulk result' });
        res.writeHead(200, { 'content-type': 'application/jsonl' });
        return fs.createReadStream(f).pipe(res);
      }
      if (p.startsWith('/_emulator/staged-uploads')) {
        const buf = await readBody(req);
        if (req.method === 'PUT' && p.length > '/_emulator/staged-uploads/'.length) {
          const key = decodeURIComponent(p.slice('/_emulator/staged-uploads/'.length));
          const f = stagedUploads.path(key); fs.mkdirSync(path.dirname(f), { recursive: true }); fs.writeFileSync(f, buf);
          return send(res, 200, '');
        }
        if (req.method === 'POST' && p === '/_emulator/staged-uploads') {
          const parts = multipart(buf, req.headers['content-type']);
          if (!parts.key || !parts.file) return send(res, 400, '<Error><Code>InvalidArgument</Code><Message>key and file are required</Message></Error>');
          const key = parts.key.toString();
          const f = stagedUploads.path(key); fs.mkdirSync(path.dirname(f), { recursive: true }); fs.writeFileSync(f, parts.file);
          return send(res, 201, `<?xml version="1.0" encoding="UTF-8"?><PostResponse><Key>${key}</Key></PostResponse>`, { 'content-type': 'application/xml' });
        }
      }
      return send(res, 404, { errors: 'Not Found' });
    } catch (e) {
      const status = e instanceof GraphQLishError ? (e.extensions?.code === 'NOT_FOUND' ? 404 : 422) : e instanceof SyntaxError ? 400 : 500;
      if (status === 500) log('error:', e.stack);
      return send(res, status, { error: e.message });
    }
  }
  const totals = o => ({ subtotal: (o.subtotalCents / 100).toFixed(2), totalTax: (o.totalTaxCents / 100).toFixed(2), totalPrice: (o.totalCents / 100).toFixed(2) });

  const server = http.createServer((req, res) => { handle(req, res); });
  return {
    server, shop, bucket, deliveries, runGraphql,
    listen(port = 0, host = '127.0.0.1') {
      return new Promise(resolve => server.listen(port, host, () => { baseUrl = `http://${host}:${server.address().port}`; resolve(server.address().port); }));
    },
    close() { for (const t of timers) clearTimeout(t); timers.clear(); return new Promise(r => server.close(() => r())); },
  };
}

// started as a program (by up.sh)
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const emu = createEmulator();
  const port = Number(process.env.PORT || 18400);
  emu.listen(port).then(p => console.log(`[shopify-emulator] Admin API ${API_VERSION} on http://127.0.0.1:${p}/admin/api/${API_VERSION}/graphql.json`));
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => emu.close().then(() => process.exit(0)));
}
