// Shopify's calculated query cost and leaky bucket (see docs/connectors/shopify-emulator.md for sources):
//   scalar / enum field 0; object field 1; connection field 2 + (first|last) × cost of one node (the node's
//   own 1 plus its selections); a mutation's root field 10 (plus its payload's selections); interfaces and
//   unions the maximum over their possible selections. Requested cost is computed before execution from the
//   document; actual cost after, from the data returned (connections count the nodes they really returned,
//   null objects cost nothing beneath them).

export function makeCost(graphql, schema) {
  const { Kind, getNamedType, isLeafType, isObjectType, isAbstractType, getArgumentValues } = graphql;

  // Flattens fragments so every field of a selection set is seen once per response key.
  function collect(selectionSet, fragments, out = []) {
    for (const sel of selectionSet.selections) {
      if (sel.kind === Kind.FIELD) out.push(sel);
      else if (sel.kind === Kind.INLINE_FRAGMENT) collect(sel.selectionSet, fragments, out);
      else if (sel.kind === Kind.FRAGMENT_SPREAD) { const f = fragments[sel.name.value]; if (f) collect(f.selectionSet, fragments, out); }
    }
    return out;
  }
  // The field definition on `type`, or on any possible type of an abstract type.
  function fieldDef(type, name) {
    if (name === '__typename') return null;
    if (isAbstractType(type)) {
      const own = type.getFields?.()[name];
      if (own) return own;
      for (const t of schema.getPossibleTypes(type)) { const f = t.getFields()[name]; if (f) return f; }
      return null;
    }
    return type.getFields?.()[name] ?? null;
  }
  const isConnection = t => /Connection$/.test(t.name) && isObjectType(t) && t.getFields().pageInfo;

  // Fields of a selection set grouped by the type they apply to: null for the set's own type (plain fields,
  // fragments on that type or without a condition), else the fragment's type condition.
  function groups(selectionSet, type, fragments, key = null, out = new Map()) {
    for (const sel of selectionSet.selections) {
      if (sel.kind === Kind.FIELD) {
        if (!out.has(key)) out.set(key, new Map());
        const bucket = out.get(key), k = sel.alias?.value ?? sel.name.value;
        if (!bucket.has(k)) bucket.set(k, sel); // a field selected twice under one key costs once
        continue;
      }
      const frag = sel.kind === Kind.INLINE_FRAGMENT ? sel : fragments[sel.name.value];
      if (!frag) continue;
      const cond = frag.typeCondition?.name.value;
      groups(frag.selectionSet, type, fragments, !cond || cond === type.name ? key : cond, out);
    }
    return out;
  }
  // cost of a selection set on `type`; `data` (optional) is the response object, for the actual cost.
  // Requested: the set's own fields plus the most expensive of its type-conditioned fragments (an
  // interface or union costs the maximum of its possible selections). Actual: only the fields that came
  // back count, so every group is summed.
  function selectionCost(selectionSet, type, ctx, data) {
    const actual = data !== undefined;
    let own = 0, most = 0;
    for (const [cond, fields] of groups(selectionSet, type, ctx.fragments)) {
      const onType = cond ? schema.getType(cond) || type : type;
      let c = 0;
      for (const [key, field] of fields) {
        const def = fieldDef(onType, field.name.value);
        if (!def) continue;
        c += fieldCost(field, def, ctx, actual ? data?.[key] : undefined, actual);
      }
      if (cond === null || actual) own += c; else most = Math.max(most, c);
    }
    return own + most;
  }
  function fieldCost(field, def, ctx, value, actual) {
    const named = getNamedType(def.type);
    if (isLeafType(named)) return 0;
    if (actual && (value === null || value === undefined)) return 0;
    if (isConnection(named)) {
      let args = {};
      try { args = getArgumentValues(def, field, ctx.variables); } catch { /* validation reports it */ }
      const requested = args.first ?? args.last ?? ctx.defaultPage;
      const nodeType = getNamedType(named.getFields().edges?.type)?.getFields?.().node?.type;
      const nodeNamed = nodeType ? getNamedType(nodeType) : null;
      // selections under edges { node { … } } and nodes { … }
      const inner = collect(field.selectionSet, ctx.fragments);
      const perNode = (nodeData) => {
        let c = 1;
        for (const f of inner) {
          if (f.name.value === 'nodes' && f.selectionSet && nodeNamed) c += selectionCost(f.selectionSet, nodeNamed, ctx, nodeData);
          if (f.name.value === 'edges' && f.selectionSet && nodeNamed) {
            for (const e of collect(f.selectionSet, ctx.fragments)) {
              if (e.name.value === 'node' && e.selectionSet) c += selectionCost(e.selectionSet, nodeNamed, ctx, nodeData);
            }
          }
        }
        return c;
      };
      if (!actual) return 2 + requested * perNode(undefined);
      // actual: walk the returned nodes (from `nodes` or `edges[].node`)
      let nodes = null;
      for (const f of inner) {
        const k = f.alias?.value ?? f.name.value;
        if (f.name.value === 'nodes' && Array.isArray(value[k])) nodes = value[k];
        if (f.name.value === 'edges' && Array.isArray(value[k]) && !nodes) {
          const nodeKey = collect(f.selectionSet, ctx.fragments).find(e => e.name.value === 'node');
          nodes = value[k].map(e => e?.[nodeKey?.alias?.value ?? 'node']);
        }
      }
      if (!nodes) return 2;
      // every node is priced like the first selection shape; the nodes' own nested connections count as returned
      return 2 + nodes.reduce((s, n) => s + (n ? perNodeActual(inner, nodeNamed, ctx, n) : 0), 0);
    }
    if (!field.selectionSet) return 1;
    if (Array.isArray(value)) return 1 + value.reduce((s, v) => s + (v ? selectionCost(field.selectionSet, named, ctx, v) : 0), 0);
    return 1 + selectionCost(field.selectionSet, named, ctx, actual ? value : undefined);
  }
  function perNodeActual(inner, nodeNamed, ctx, nodeData) {
    let c = 1;
    for (const f of inner) {
      if (f.name.value === 'nodes' && f.selectionSet) { c += selectionCost(f.selectionSet, nodeNamed, ctx, nodeData); break; }
      if (f.name.value === 'edges' && f.selectionSet) {
        for (const e of collect(f.selectionSet, ctx.fragments)) if (e.name.value === 'node' && e.selectionSet) c += selectionCost(e.selectionSet, nodeNamed, ctx, nodeData);
        break;
      }
    }
    return c;
  }

  // cost(document, operation, variables, data?) → number
  return function cost(document, operation, variables, data) {
    const fragments = {};
    for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments[d.name.value] = d;
    const ctx = { fragments, variables: variables || {}, defaultPage: 0 };
    const isMutation = operation.operation === 'mutation';
    const root = isMutation ? schema.getMutationType() : schema.getQueryType();
    if (!isMutation) return selectionCost(operation.selectionSet, root, ctx, data);
    let total = 0;
    for (const field of collect(operation.selectionSet, fragments)) {
      const def = root.getFields()[field.name.value];
      if (!def) continue;
      const key = field.alias?.value ?? field.name.value;
      const payloadType = getNamedType(def.type);
      total += 10 + (field.selectionSet ? selectionCost(field.selectionSet, payloadType, ctx, data === undefined ? undefined : data?.[key] ?? null) : 0);
    }
    return total;
  };
}

// Leaky bucket: `max` points, refilled at `rate` points per second.
export class Bucket {
  constructor(max, rate) { this.max = max; this.rate = rate; this.available = max; this.at = Date.now(); }
  refill() {
    const now = Date.now();
    this.available = Math.min(this.max, this.available + ((now - this.at) / 1000) * this.rate);
    this.at = now;
  }
  take(points) { this.refill(); if (points > this.available) return false; this.available -= points; return true; }
  give(points) { this.refill(); this.available = Math.min(this.max, this.available + points); }
  status() {
    this.refill();
    return { maximumAvailable: this.max, currentlyAvailable: Math.floor(this.available), restoreRate: this.rate };
  }
}
