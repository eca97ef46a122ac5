// Helpers of the Shopify emulator: money in integer cents, GIDs, Shopify's search syntax, Relay connections.

// ---- money: integer cents, never floats -------------------------------------------------------
// Parses a decimal string (or number) of at most 2 decimals into cents; throws naming `what` otherwise.
export function cents(value, what = 'amount') {
  const s = String(value).trim();
  const m = /^(-?)(\d+)(?:\.(\d{1,2})0*)?$/.exec(s);
  if (!m) throw new Error(`${what}: "${value}" is not a decimal amount with at most 2 decimals`);
  const c = Number(m[2]) * 100 + Number((m[3] || '').padEnd(2, '0'));
  return m[1] ? -c : c;
}
export const fmt = c => (c < 0 ? '-' : '') + Math.floor(Math.abs(c) / 100) + '.' + String(Math.abs(c) % 100).padStart(2, '0');
// The Decimal scalar (MoneyV2.amount) as Shopify serializes it: no trailing zeros but one decimal kept
// ("10.0", "12.5", "12.34"); the Money scalar (ProductVariant.price) and REST payloads keep two ("10.00").
export const decimal = c => fmt(c).replace(/(\.\d)0$/, '$1');
export const money = (c, currencyCode) => ({ amount: decimal(c), currencyCode });
export const bag = (c, currencyCode) => ({ shopMoney: money(c, currencyCode), presentmentMoney: money(c, currencyCode) });

// A rate such as "0.10" as parts per million (exact integer arithmetic).
export function ppm(rate, what = 'rate') {
  const m = /^(\d+)(?:\.(\d{1,6}))?$/.exec(String(rate).trim());
  if (!m) throw new Error(`${what}: "${rate}" is not a decimal rate such as 0.10`);
  return Number(m[1]) * 1e6 + Number((m[2] || '').padEnd(6, '0'));
}
// round(n / d) half away from zero, for non-negative integers
export const divRound = (n, d) => Math.floor((2 * n + d) / (2 * d));
// Tax on an amount at a rate: added on top (taxes excluded) or contained in it (taxes included).
export const taxOn = (amountCents, ratePpm, included) =>
  included ? divRound(amountCents * ratePpm, 1e6 + ratePpm) : divRound(amountCents * ratePpm, 1e6);
// Splits `total` over `weights` proportionally, to the cent, the rounding remainder on the last one.
export function allocate(total, weights) {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return weights.map(() => 0);
  let left = total;
  return weights.map((w, i) => {
    if (i === weights.length - 1) return left;
    const part = divRound(total * w, sum);
    left -= part;
    return part;
  });
}

// ---- ids ----------------------------------------------------------------------------------------
export const gid = (type, n) => `gid://shopify/${type}/${n}`;
export function parseGid(id) {
  const m = /^gid:\/\/shopify\/([A-Za-z]+)\/(\d+)(?:\?.*)?$/.exec(String(id || ''));
  return m ? { type: m[1], n: Number(m[2]) } : null;
}

// ---- Shopify search syntax ----------------------------------------------------------------------
// `key:value`, `key:>=value` (also > < <= !=), `-key:value` (negation), quoted values, `value*` prefix,
// bare words (matched against the default field); `AND` between terms; `OR` between terms.
export function parseSearch(q) {
  if (!q || !q.trim()) return [];
  const tokens = [];
  const re = /\s*(-?)(?:([A-Za-z_.]+):)?(>=|<=|!=|>|<)?(?:'([^']*)'|"([^"]*)"|(\S+))/g;
  let m;
  while ((m = re.exec(q))) {
    const value = m[4] ?? m[5] ?? m[6];
    if (!m[2] && !m[1] && (value === 'AND' || value === 'and')) continue;
    if (!m[2] && !m[1] && (value === 'OR' || value === 'or')) { tokens.push('OR'); continue; }
    tokens.push({ neg: !!m[1], key: m[2] ? m[2].toLowerCase() : null, op: m[3] || '=', value });
  }
  // groups of AND terms, OR-ed together
  const groups = [[]];
  for (const t of tokens) t === 'OR' ? groups.push([]) : groups[groups.length - 1].push(t);
  return groups.filter(g => g.length);
}
function compare(actual, op, wanted) {
  if (actual === null || actual === undefined) return op === '!=';
  let a = actual, w = wanted;
  const isDate = v => typeof v === 'string' && /^\d{4}-\d{2}-\d{2}/.test(v);
  if (isDate(a) && isDate(w)) { a = Date.parse(a); w = Date.parse(w); }
  else if (typeof a === 'number' || typeof a === 'boolean') { a = Number(a); w = w === 'true' ? 1 : w === 'false' ? 0 : Number(w); }
  else {
    a = String(a).toLowerCase(); w = String(w).toLowerCase();
    if (op === '=' && w.endsWith('*')) return a.startsWith(w.slice(0, -1));
  }
  switch (op) {
    case '=': return a === w;
    case '!=': return a !== w;
    case '>': return a > w;
    case '>=': return a >= w;
    case '<': return a < w;
    case '<=': return a <= w;
  }
  return false;
}
// fields(item, key) → the value (or array of values) of `key` for the item; key null = default field.
export function matches(item, groups, fields) {
  if (!groups.length) return true;
  return groups.some(g => g.every(t => {
    let v = fields(item, t.key);
    if (v === undefined) throw new Error(`unsupported search field "${t.key}"`);
    const values = Array.isArray(v) ? v : [v];
    let hit;
    if (t.key === null) hit = values.some(x => x != null && String(x).toLowerCase().includes(t.value.toLowerCase().replace(/\*$/, '')));
    else hit = values.some(x => compare(x, t.op, t.value));
    return t.neg ? !hit : hit;
  }));
}

// ---- Relay connections --------------------------------------------------------------------------
// A cursor names a position: the record's id and, for sorted lists, its sort tuple at the time.
const encodeCursor = (item, tupleOf) => Buffer.from(JSON.stringify(tupleOf ? { id: item.id, t: tupleOf(item) } : { id: item.id })).toString('base64url');
function decodeCursor(c) {
  try { const v = JSON.parse(Buffer.from(c, 'base64url').toString()); return typeof v.id === 'string' ? v : null; } catch { return null; }
}
export function compareTuples(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] === b[i]) continue;
    if (a[i] === undefined || a[i] === null) return -1;
    if (b[i] === undefined || b[i] === null) return 1;
    return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}
export const MAX_PAGE = 250;

// items: already filtered and sorted (ascending by tupleOf, or descending with `descending`). args:
// first/last/after/before/reverse. unlimited: bulk operations (no page size).
export function connection(items, args = {}, { unlimited = false, tupleOf = null, descending = false } = {}) {
  const reversed = !!args.reverse;
  const list = reversed ? [...items].reverse() : items;
  const { first, last, after, before } = args;
  if (!unlimited) {
    if (first == null && last == null) throw new GraphQLishError('you must provide one of first or last', 'BAD_REQUEST');
    if ((first ?? 0) > MAX_PAGE || (last ?? 0) > MAX_PAGE) throw new GraphQLishError(`The maximum number of objects per page is ${MAX_PAGE} (first/last)`, 'BAD_REQUEST');
  }
  // index of the first item after (or before) a cursor's position
  const position = (cursor, name) => {
    const c = decodeCursor(cursor);
    if (!c) throw new GraphQLishError(`Invalid cursor for current pagination sort: ${name} "${cursor}"`, 'BAD_REQUEST');
    if (tupleOf && Array.isArray(c.t)) {
      const ascending = descending === reversed; // the order of `list` by tuple
      const beyond = x => (ascending ? compareTuples(tupleOf(x), c.t) > 0 : compareTuples(tupleOf(x), c.t) < 0);
      const i = list.findIndex(beyond);
      return { after: i < 0 ? list.length : i, before: (() => { const j = list.findIndex(x => !(ascending ? compareTuples(tupleOf(x), c.t) < 0 : compareTuples(tupleOf(x), c.t) > 0)); return j < 0 ? list.length : j; })() };
    }
    const i = list.findIndex(x => x.id === c.id);
    return { after: i + 1, before: i < 0 ? list.length : i };
  };
  let start = 0, end = list.length;
  if (after) start = position(after, 'after').after;
  if (before) end = position(before, 'before').before;
  let page = list.slice(start, Math.max(start, end));
  let hasNext = end < list.length, hasPrev = start > 0;
  if (!unlimited && first != null) { if (page.length > first) hasNext = true; page = page.slice(0, first); }
  if (!unlimited && last != null) { if (page.length > last) hasPrev = true; page = page.slice(Math.max(0, page.length - last)); }
  return {
    __connection: true,
    edges: page.map(node => ({ node, cursor: encodeCursor(node, tupleOf) })),
    nodes: page,
    pageInfo: {
      hasNextPage: hasNext, hasPreviousPage: hasPrev,
      startCursor: page.length ? encodeCursor(page[0], tupleOf) : null,
      endCursor: page.length ? encodeCursor(page[page.length - 1], tupleOf) : null,
    },
  };
}

// An error that carries a Shopify-style extensions.code into the GraphQL response.
export class GraphQLishError extends Error {
  constructor(message, code) { super(message); this.extensions = code ? { code } : undefined; }
}
