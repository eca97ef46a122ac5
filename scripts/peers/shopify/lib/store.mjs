// The emulator's shop: records in memory, shaped like the Admin schema's types (field names as in
// 2026-10; every record carries __typename so interfaces such as Node resolve), and the domain logic
// behind the mutations and the /_emulator/ test controls. Money is kept in integer cents.
import { cents, fmt, ppm, taxOn, allocate, gid, GraphQLishError } from './util.mjs';

const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const slug = s => String(s || '').toLowerCase().normalize('NFKD').replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 'product';
const userError = (field, message, code) => ({ field, message, code });

export class Shop {
  // counters: {idBase, orderNumber, save(state)} — where numbering starts and how it is kept across restarts
  // (see server.mjs): ids and order numbers are never reused, not after a reset nor after a restart of the
  // same peer DIR, as Shopify never reuses them (a test peer shared with other peers' data must not hand
  // out an order id or name twice).
  constructor({ currency = 'AUD', domain = 'ferry-test.myshopify.com', events = () => {}, counters = {} } = {}) {
    this.currency = currency;
    this.domain = domain;
    this.events = events; // (topic, restPayload) → webhook delivery
    this.idBase = counters.idBase || 0;
    this.orderNumber = counters.orderNumber ?? 1000; // the last one used
    this.saveCounters = counters.save || (() => {});
    this.seq = {};
    this.reset();
  }

  reset() {
    this.byId = new Map();
    this.products = []; this.variants = []; this.inventoryItems = []; this.levels = new Map();
    this.byHandle = new Map(); this.bySku = new Map(); // indexes, kept by indexHandle / indexSku
    this.locations = []; this.customers = []; this.companies = []; this.orders = [];
    this.fulfillmentOrders = []; this.fulfillments = []; this.collections = []; this.metafieldDefinitions = [];
    this.priceLists = []; this.catalogs = []; this.publications = []; this.bulkOperations = [];
    this.webhookSubscriptions = []; this.stagedUploads = new Map(); this.adjustmentGroups = [];
    this.shop = { __typename: 'Shop', id: gid('Shop', 1), name: 'Ferry Test', currencyCode: this.currency,
      myshopifyDomain: this.domain, email: 'shop@ferry.test', contactEmail: 'shop@ferry.test', ianaTimezone: 'Australia/Sydney',
      enabledPresentmentCurrencies: [this.currency], taxesIncluded: false, orderNumberFormatPrefix: '#', orderNumberFormatSuffix: '' };
    this.byId.set(this.shop.id, this.shop);
    // the seed keeps its first ids through resets (everything else is numbered on)
    this.seedIds = this.seedIds || {};
    const seeded = (type, key, fields) => {
      const rec = this.add(type, fields, this.seedIds[key]);
      this.seedIds[key] = rec.id;
      return rec;
    };
    for (const [name, city] of [['Main warehouse', 'Melbourne'], ['Sydney store', 'Sydney']]) {
      this.locations.push(seeded('Location', name, { name, isActive: true, fulfillsOnlineOrders: true, shipsInventory: true,
        hasActiveInventory: true, activatable: false, deactivatable: true, deletable: false, addressVerified: true,
        isFulfillmentService: false, hasUnfulfilledOrders: false, suggestedAddresses: [],
        address: { __typename: 'LocationAddress', address1: '1 Test St', city, countryCode: 'AU', country: 'Australia', zip: '3000', provinceCode: city === 'Sydney' ? 'NSW' : 'VIC', formatted: [] } }));
    }
    this.publications.push(seeded('Publication', 'Online Store', { name: 'Online Store', autoPublish: false, supportsFuturePublishing: true }));
  }

  // a new record of `type` with the next GID of that type
  add(type, fields, id = null) {
    const n = id ? Number(id.split('/').pop()) : this.idBase + (this.seq[type] = (this.seq[type] || 0) + 1);
    const at = now();
    const rec = { __typename: type, id: gid(type, n), legacyResourceId: String(n), createdAt: at, updatedAt: at, ...fields };
    this.byId.set(rec.id, rec);
    return rec;
  }
  get(id, type) {
    const r = this.byId.get(String(id || '').replace(/\?.*$/, ''));
    return r && (!type || r.__typename === type) ? r : null;
  }
  level(itemId, locationId) { return this.levels.get(itemId + '|' + locationId) || null; }
  activate(item, location) {
    let lv = this.level(item.id, location.id);
    if (!lv) {
      lv = this.add('InventoryLevel', { itemId: item.id, locationId: location.id, isActive: true, canDeactivate: true,
        q: { available: 0, on_hand: 0, committed: 0, incoming: 0, reserved: 0, damaged: 0, safety_stock: 0, quality_control: 0 } });
      this.levels.set(item.id + '|' + location.id, lv);
    }
    return lv;
  }
  mainLocation() { return this.locations[0]; }

  // ---- products -------------------------------------------------------------------------------
  productByHandle(handle) { return this.byHandle.get(handle) || null; }
  // the first variant with that SKU (Shopify allows the same SKU on several variants)
  variantBySku(sku) { return this.bySku.get(sku) || null; }
  indexHandle(product, handle) {
    if (product.handle !== undefined && this.byHandle.get(product.handle) === product) this.byHandle.delete(product.handle);
    product.handle = handle;
    if (handle != null) this.byHandle.set(handle, product);
  }
  indexSku(variant, sku) {
    const old = variant.sku;
    variant.sku = sku;
    if (old === sku && this.bySku.get(sku) === variant) return;
    if (old != null && this.bySku.get(old) === variant) {
      this.bySku.delete(old);
      const next = this.variants.find(v => v !== variant && v.sku === old);
      if (next) this.bySku.set(old, next);
    }
    if (sku != null && sku !== '' && !this.bySku.has(sku)) this.bySku.set(sku, variant);
  }

  // productSet: creates or replaces the product named by `identifier` (id or handle) or input.id/handle;
  // variants matched to existing ones by id, then SKU, then option values (ids stay stable); variants not
  // in the input are deleted, as the "set" semantics documents.
  productSet(args) {
    const input = args.input || {};
    const ident = args.identifier || {};
    const errors = [];
    if (ident.customId) return { product: null, userErrors: [userError(['identifier', 'customId'], 'customId identifiers are not supported by the emulator', 'INVALID_INPUT')] };
    if ((ident.id || ident.handle) && input.id) errors.push(userError(['input', 'id'], 'The id field is not allowed if identifier is provided.', 'ID_NOT_ALLOWED'));
    if (ident.handle && input.handle && ident.handle !== input.handle) errors.push(userError(['input', 'handle'], 'The identifier value does not match the value of the corresponding field in the input.', 'INPUT_MISMATCH'));
    if (errors.length) return { product: null, productSetOperation: null, userErrors: errors };
    let product = null;
    const byId = ident.id || input.id;
    if (byId) {
      product = this.get(byId, 'Product');
      if (!product) return { product: null, productSetOperation: null, userErrors: [userError(['identifier', 'id'], 'Product does not exist', 'PRODUCT_DOES_NOT_EXIST')] };
    } else if (ident.handle || input.handle) {
      product = this.productByHandle(ident.handle || input.handle);
    }
    const creating = !product;
    if (creating && !input.title) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'title'], "Title can't be blank", 'INVALID_PRODUCT')] };
    const handle = input.handle ?? ident.handle ?? product?.handle ?? slug(input.title);
    const clash = this.productByHandle(handle);
    if (clash && clash !== product) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'handle'], `Handle '${handle}' already in use. Please provide a new handle.`, 'HANDLE_NOT_UNIQUE')] };

    // options
    const optionsIn = input.productOptions;
    const variantsIn = input.variants;
    if (optionsIn && !variantsIn && !creating) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'variants'], 'Must specify variants when updating options.', 'VARIANTS_INPUT_MISSING')] };
    if (variantsIn && !optionsIn && (variantsIn.length > 1 || variantsIn.some(v => v.optionValues?.length && v.optionValues[0].optionName !== 'Title'))) {
      return { product: null, productSetOperation: null, userErrors: [userError(['input', 'productOptions'], 'Must specify product options when updating variants.', 'PRODUCT_OPTIONS_INPUT_MISSING')] };
    }
    const options = optionsIn
      ? optionsIn.map((o, i) => ({ name: o.name, position: o.position ?? i + 1, values: (o.values || []).map(v => v.name) }))
      : product?.optionsData || [{ name: 'Title', position: 1, values: ['Default Title'] }];
    for (const [i, o] of options.entries()) {
      if (!o.values.length) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'productOptions', String(i), 'values'], 'Each option must have at least one option value specified.', 'OPTION_VALUES_MISSING')] };
    }
    // variants: check SKUs unique in the input and option values known
    const seenSku = new Set();
    for (const [i, v] of (variantsIn || []).entries()) {
      if (v.sku != null && v.sku !== '') {
        if (seenSku.has(v.sku)) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'variants', String(i), 'sku'], `SKU '${v.sku}' is given to more than one variant`, 'DUPLICATED_VALUE')] };
        seenSku.add(v.sku);
      }
      for (const ov of v.optionValues || []) {
        const opt = options.find(o => o.name === ov.optionName);
        if (!opt) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'variants', String(i), 'optionValues'], `Option '${ov.optionName}' does not exist`, 'OPTION_DOES_NOT_EXIST')] };
        if (!opt.values.includes(ov.name)) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'variants', String(i), 'optionValues'], `Option value '${ov.name}' does not exist`, 'OPTION_VALUE_DOES_NOT_EXIST')] };
      }
      for (const [j, iq] of (v.inventoryQuantities || []).entries()) {
        if (!this.get(iq.locationId, 'Location')) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'variants', String(i), 'inventoryQuantities', String(j), 'locationId'], 'Location does not exist', 'INVALID_VARIANT')] };
      }
      if (v.price != null) { try { cents(v.price); } catch (e) { return { product: null, productSetOperation: null, userErrors: [userError(['input', 'variants', String(i), 'price'], e.message, 'INVALID_VARIANT')] }; } }
    }
    for (const c of input.collections || []) {
      if (!this.get(c, 'Collection')) return { product: null, productSetOperation: null, userErrors: [userError(['input', 'collections'], `Collection ${c} does not exist`, 'INVALID_INPUT')] };
    }

    const before = product ? JSON.stringify(this.productSnapshot(product)) : null;
    if (creating) {
      product = this.add('Product', { handle, title: input.title, descriptionHtml: '', vendor: '', productType: '', status: 'ACTIVE', tags: [],
        variantIds: [], metafields: [], mediaData: [], collectionIds: [], optionsData: options, publishedAt: now(), requiresSellingPlan: false, isGiftCard: false });
      this.products.push(product);
      this.indexHandle(product, handle);
    }
    const set = (k, v) => { if (v !== undefined && v !== null) product[k] = v; };
    set('title', input.title); this.indexHandle(product, handle); set('descriptionHtml', input.descriptionHtml); set('vendor', input.vendor);
    set('productType', input.productType); set('status', input.status); set('templateSuffix', input.templateSuffix);
    if (input.tags) product.tags = [...new Set(input.tags.map(t => t.trim()))].sort();
    product.optionsData = options;
    if (input.metafields) this.setMetafields(product, input.metafields);
    if (input.files) product.mediaData = input.files.map((f, i) => ({ originalSource: f.originalSource, contentType: f.contentType || 'IMAGE', alt: f.alt ?? null, position: i }));
    if (input.collections) {
      for (const c of this.collections) c.productIds = c.productIds.filter(id => id !== product.id);
      product.collectionIds = [...input.collections];
      for (const c of input.collections) this.get(c, 'Collection').productIds.push(product.id);
    }

    const variantsWanted = variantsIn || (creating ? [{ optionValues: [{ optionName: 'Title', name: 'Default Title' }] }] : null);
    if (variantsWanted) {
      const old = product.variantIds.map(id => this.get(id));
      const keep = [];
      for (const [i, v] of variantsWanted.entries()) {
        const optionValues = (v.optionValues?.length ? v.optionValues : [{ optionName: 'Title', name: 'Default Title' }]);
        const key = JSON.stringify(optionValues.map(o => [o.optionName, o.name]));
        let variant = (v.id && old.find(o => o.id === v.id))
          || (v.sku && old.find(o => o.sku === v.sku && !keep.includes(o)))
          || old.find(o => JSON.stringify(o.selectedOptions.map(s => [s.name, s.value])) === key && !keep.includes(o));
        const sku = v.sku ?? v.inventoryItem?.sku ?? variant?.sku ?? null;
        if (!variant) {
          const item = this.add('InventoryItem', { sku, tracked: true, requiresShipping: true, unitCostCents: null, variantId: null, duplicateSkuCount: 0 });
          this.inventoryItems.push(item);
          variant = this.add('ProductVariant', { productId: product.id, inventoryItemId: item.id, sku, priceCents: 0, compareAtPriceCents: null,
            barcode: null, taxable: true, inventoryPolicy: 'DENY', selectedOptions: [], position: i + 1, metafields: [] });
          item.variantId = variant.id;
          this.variants.push(variant);
          this.activate(item, this.mainLocation());
        }
        const item = this.get(variant.inventoryItemId);
        this.indexSku(variant, sku); item.sku = sku;
        if (v.price != null) variant.priceCents = cents(v.price, 'price');
        if (v.compareAtPrice !== undefined) variant.compareAtPriceCents = v.compareAtPrice == null ? null : cents(v.compareAtPrice, 'compareAtPrice');
        if (v.barcode !== undefined) variant.barcode = v.barcode;
        if (v.taxable != null) variant.taxable = v.taxable;
        if (v.inventoryPolicy) variant.inventoryPolicy = v.inventoryPolicy;
        if (v.metafields) this.setMetafields(variant, v.metafields);
        if (v.inventoryItem) {
          if (v.inventoryItem.tracked != null) item.tracked = v.inventoryItem.tracked;
          if (v.inventoryItem.requiresShipping != null) item.requiresShipping = v.inventoryItem.requiresShipping;
          if (v.inventoryItem.cost != null) item.unitCostCents = cents(v.inventoryItem.cost, 'inventoryItem.cost');
        }
        for (const iq of v.inventoryQuantities || []) {
          const lv = this.activate(item, this.get(iq.locationId));
          this.setQuantity(lv, iq.name, iq.quantity);
        }
        variant.position = v.position ?? i + 1;
        variant.selectedOptions = optionValues.map(o => ({ name: o.optionName, value: o.name }));
        variant.title = optionValues.map(o => o.name).join(' / ');
        keep.push(variant);
      }
      for (const o of old) if (!keep.includes(o)) this.deleteVariant(o);
      product.variantIds = keep.map(v => v.id);
    }
    const after = JSON.stringify(this.productSnapshot(product));
    if (creating || after !== before) {
      product.updatedAt = now();
      this.events(creating ? 'products/create' : 'products/update', this.productRest(product));
    }
    return { product, productSetOperation: null, userErrors: [] };
  }
  productSnapshot(p) {
    const { updatedAt, ...rest } = p;
    void updatedAt;
    return { ...rest, variants: p.variantIds.map(id => { const v = this.get(id); const { updatedAt: u, ...vr } = v; void u; return { ...vr, item: this.get(v.inventoryItemId) }; }) };
  }
  deleteVariant(v) {
    this.variants = this.variants.filter(x => x !== v);
    this.indexSku(v, null);
    this.byId.delete(v.id);
    const item = this.get(v.inventoryItemId);
    this.inventoryItems = this.inventoryItems.filter(x => x !== item);
    for (const [k, lv] of this.levels) if (lv.itemId === item.id) { this.levels.delete(k); this.byId.delete(lv.id); }
    this.byId.delete(item.id);
  }
  setMetafields(owner, inputs) {
    owner.metafields = owner.metafields || [];
    for (const m of inputs) {
      let mf = owner.metafields.find(x => x.namespace === (m.namespace || '$app') && x.key === m.key);
      if (!mf) { mf = this.add('Metafield', { namespace: m.namespace || '$app', key: m.key, ownerId: owner.id }); owner.metafields.push(mf); }
      mf.type = m.type || mf.type || 'single_line_text_field'; mf.value = m.value; mf.updatedAt = now();
    }
  }
  productUpdate(args) {
    const input = args.product || args.input || {};
    const ident = args.identifier || {};
    const product = (ident.id || input.id) ? this.get(ident.id || input.id, 'Product') : ident.handle ? this.productByHandle(ident.handle) : null;
    if (!product) return { product: null, userErrors: [userError(['id'], 'Product does not exist', null)] };
    if (input.handle != null && input.handle !== product.handle) {
      const clash = this.productByHandle(input.handle);
      if (clash) return { product: null, userErrors: [userError(['handle'], `Handle '${input.handle}' already in use. Please provide a new handle.`, null)] };
      this.indexHandle(product, input.handle);
    }
    for (const k of ['title', 'descriptionHtml', 'vendor', 'productType', 'status', 'templateSuffix']) if (input[k] != null) product[k] = input[k];
    if (input.tags) product.tags = [...new Set(input.tags)].sort();
    if (input.metafields) this.setMetafields(product, input.metafields);
    for (const c of input.collectionsToJoin || []) { const col = this.get(c, 'Collection'); if (col && !col.productIds.includes(product.id)) { col.productIds.push(product.id); product.collectionIds.push(c); } }
    for (const c of input.collectionsToLeave || []) { const col = this.get(c, 'Collection'); if (col) { col.productIds = col.productIds.filter(x => x !== product.id); product.collectionIds = product.collectionIds.filter(x => x !== c); } }
    product.updatedAt = now();
    this.events('products/update', this.productRest(product));
    return { product, userErrors: [] };
  }

  // ---- inventory ------------------------------------------------------------------------------
  setQuantity(lv, name, quantity) {
    if (name === 'available') { lv.q.on_hand += quantity - lv.q.available; lv.q.available = quantity; }
    else if (name === 'on_hand') { lv.q.available += quantity - lv.q.on_hand; lv.q.on_hand = quantity; }
    lv.updatedAt = now();
  }
  // inventorySetQuantities with the compare-and-swap guard: changeFromQuantity must be given on every
  // quantity (null skips the check); a mismatch fails the whole mutation, nothing is changed.
  inventorySetQuantities({ input }) {
    const errors = [];
    if (!['available', 'on_hand'].includes(input.name)) errors.push(userError(['input', 'name'], "The quantity name must be either 'available' or 'on_hand'.", 'INVALID_NAME'));
    if (!REASONS.includes(input.reason)) errors.push(userError(['input', 'reason'], 'The specified reason is invalid.', 'INVALID_REASON'));
    if (input.referenceDocumentUri != null && !/^[a-z][a-z0-9+.-]*:\/\/?\S+/i.test(input.referenceDocumentUri)) errors.push(userError(['input', 'referenceDocumentUri'], 'The specified reference document is invalid.', 'INVALID_REFERENCE_DOCUMENT'));
    const seen = new Set();
    const planned = [];
    input.quantities.forEach((q, i) => {
      const f = k => ['input', 'quantities', String(i), k];
      const item = this.get(q.inventoryItemId, 'InventoryItem');
      const loc = this.get(q.locationId, 'Location');
      if (!item) { errors.push(userError(f('inventoryItemId'), 'The specified inventory item could not be found.', 'INVALID_INVENTORY_ITEM')); return; }
      if (!loc) { errors.push(userError(f('locationId'), 'The specified location could not be found.', 'INVALID_LOCATION')); return; }
      const k = item.id + '|' + loc.id;
      if (seen.has(k)) { errors.push(userError(f('locationId'), 'The combination of inventoryItemId and locationId must be unique.', 'NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR')); return; }
      seen.add(k);
      if (q.quantity > 1e9) { errors.push(userError(f('quantity'), "The total quantity can't be higher than 1,000,000,000.", 'INVALID_QUANTITY_TOO_HIGH')); return; }
      if (q.quantity < -1e9) { errors.push(userError(f('quantity'), "The total quantity can't be lower than -1,000,000,000.", 'INVALID_QUANTITY_TOO_LOW')); return; }
      if (!('changeFromQuantity' in q)) { errors.push(userError(f('changeFromQuantity'), 'changeFromQuantity must be given for each quantity (null to skip the check).', 'COMPARE_QUANTITY_REQUIRED')); return; }
      const lv = this.level(item.id, loc.id);
      const current = lv ? lv.q[input.name] ?? 0 : 0;
      if (q.changeFromQuantity !== null && q.changeFromQuantity !== current) {
        errors.push(userError(f('changeFromQuantity'), `The changeFromQuantity value (${q.changeFromQuantity}) does not match persisted value (${current}).`, 'CHANGE_FROM_QUANTITY_STALE'));
        return;
      }
      if (!lv) { errors.push(userError(f('locationId'), `The inventory item is not stocked at ${loc.name}: activate it there first (inventoryActivate).`, 'INVALID_LOCATION')); return; }
      planned.push({ lv, item, loc, quantity: q.quantity, before: current });
    });
    if (errors.length) return { inventoryAdjustmentGroup: null, userErrors: errors };
    const changes = [];
    for (const p of planned) {
      const delta = p.quantity - p.before;
      const onHandBefore = p.lv.q.on_hand;
      this.setQuantity(p.lv, input.name, p.quantity);
      changes.push({ __typename: 'InventoryChange', name: input.name, delta, quantityAfterChange: p.quantity, itemId: p.item.id, locationId: p.loc.id, ledgerDocumentUri: null });
      if (input.name === 'available' && delta) changes.push({ __typename: 'InventoryChange', name: 'on_hand', delta: p.lv.q.on_hand - onHandBefore, quantityAfterChange: p.lv.q.on_hand, itemId: p.item.id, locationId: p.loc.id, ledgerDocumentUri: null });
    }
    const group = this.add('InventoryAdjustmentGroup', { reason: input.reason, referenceDocumentUri: input.referenceDocumentUri ?? null, changesData: changes });
    this.adjustmentGroups.push(group);
    return { inventoryAdjustmentGroup: group, userErrors: [] };
  }
  inventoryActivate(args) {
    const item = this.get(args.inventoryItemId, 'InventoryItem');
    const loc = this.get(args.locationId, 'Location');
    if (!item) return { inventoryLevel: null, userErrors: [userError(['inventoryItemId'], 'Inventory item does not exist', null)] };
    if (!loc) return { inventoryLevel: null, userErrors: [userError(['locationId'], 'Location does not exist', null)] };
    const existed = !!this.level(item.id, loc.id);
    const lv = this.activate(item, loc);
    if (!existed) {
      if (args.onHand != null) this.setQuantity(lv, 'on_hand', args.onHand);
      if (args.available != null) this.setQuantity(lv, 'available', args.available);
    }
    return { inventoryLevel: lv, userErrors: [] };
  }

  // ---- collections, metafield definitions, customers, B2B, price lists --------------------------
  collectionCreate(args) {
    const input = args.collection || args.input;
    if (!input?.title) return { collection: null, userErrors: [userError(['title'], "Title can't be blank", null)] };
    const handle = input.handle || slug(input.title);
    if (this.collections.some(c => c.handle === handle)) return { collection: null, userErrors: [userError(['handle'], `Handle '${handle}' has already been taken`, null)] };
    const c = this.add('Collection', { title: input.title, handle, descriptionHtml: input.descriptionHtml || '', sortOrder: input.sortOrder || 'BEST_SELLING', productIds: [], metafields: [], sources: [] });
    if (input.metafields) this.setMetafields(c, input.metafields);
    for (const p of input.products || []) { const pr = this.get(p, 'Product'); if (pr) { c.productIds.push(pr.id); pr.collectionIds.push(c.id); } }
    this.collections.push(c);
    return { collection: c, userErrors: [] };
  }
  metafieldDefinitionCreate({ definition: d }) {
    const namespace = d.namespace || '$app';
    if (this.metafieldDefinitions.some(x => x.ownerType === d.ownerType && x.namespace === namespace && x.key === d.key)) {
      return { createdDefinition: null, userErrors: [{ field: ['definition', 'key'], message: 'Key is in use for this owner type and namespace.', code: 'TAKEN' }] };
    }
    if (!METAFIELD_TYPES.includes(d.type)) return { createdDefinition: null, userErrors: [{ field: ['definition', 'type'], message: `Type '${d.type}' is not a metafield type the emulator knows`, code: 'INCLUSION' }] };
    const def = this.add('MetafieldDefinition', { name: d.name, namespace, key: d.key, ownerType: d.ownerType, description: d.description ?? null,
      typeName: d.type, pinnedPosition: d.pin ? 1 : null, validations: (d.validations || []).map(v => ({ name: v.name, value: v.value })), useAsCollectionCondition: false,
      validationStatus: 'ALL_VALID' });
    this.metafieldDefinitions.push(def);
    return { createdDefinition: def, userErrors: [] };
  }
  customerByEmail(email) { return this.customers.find(c => c.email && email && c.email.toLowerCase() === String(email).toLowerCase()) || null; }
  customerSet({ identifier, input }) {
    let c = null;
    if (identifier?.id) { c = this.get(identifier.id, 'Customer'); if (!c) return { customer: null, userErrors: [{ field: ['identifier', 'id'], message: 'Resource matching the identifier was not found.', code: 'NOT_FOUND' }] }; }
    else if (identifier?.email) c = this.customerByEmail(identifier.email);
    else if (identifier?.phone) c = this.customers.find(x => x.phone === identifier.phone) || null;
    else if (identifier?.customId) return { customer: null, userErrors: [{ field: ['identifier', 'customId'], message: 'customId identifiers are not supported by the emulator', code: 'INVALID' }] };
    if (identifier?.email && input.email && identifier.email.toLowerCase() !== input.email.toLowerCase()) return { customer: null, userErrors: [{ field: ['input', 'email'], message: 'The identifier value does not match the value of the corresponding field in the input.', code: 'INPUT_MISMATCH' }] };
    if (input.email && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(input.email)) return { customer: null, userErrors: [{ field: ['input', 'email'], message: 'Email is invalid', code: 'INVALID' }] };
    const clash = input.email ? this.customerByEmail(input.email) : null;
    if (clash && clash !== c) return { customer: null, userErrors: [{ field: ['input', 'email'], message: 'Email has already been taken', code: 'TAKEN' }] };
    if (!c && !input.email && !input.phone && !input.firstName && !input.lastName) return { customer: null, userErrors: [{ field: ['input'], message: 'A name, phone number, or email address must be present', code: 'BLANK' }] };
    const creating = !c;
    if (creating) { c = this.add('Customer', { email: null, firstName: null, lastName: null, phone: null, note: null, tags: [], taxExempt: false, taxExemptions: [], addresses: [], metafields: [], locale: 'en', state: 'DISABLED', verifiedEmail: true }); this.customers.push(c); }
    for (const k of ['email', 'firstName', 'lastName', 'phone', 'note', 'taxExempt', 'locale']) if (input[k] !== undefined && input[k] !== null) c[k] = input[k];
    if (input.tags) c.tags = [...new Set(input.tags)].sort();
    if (input.taxExemptions) c.taxExemptions = input.taxExemptions;
    if (input.addresses) c.addresses = input.addresses.map(a => this.address(a));
    c.updatedAt = now();
    this.events(creating ? 'customers/create' : 'customers/update', this.customerRest(c));
    return { customer: c, userErrors: [] };
  }
  address(a) {
    if (!a) return null;
    return this.add('MailingAddress', { address1: a.address1 ?? null, address2: a.address2 ?? null, city: a.city ?? null, company: a.company ?? null,
      countryCodeV2: a.countryCode ?? a.country_code ?? null, firstName: a.firstName ?? a.first_name ?? null, lastName: a.lastName ?? a.last_name ?? null,
      phone: a.phone ?? null, provinceCode: a.provinceCode ?? a.province_code ?? null, zip: a.zip ?? null });
  }
  companyCreate({ input }) {
    if (!input.company?.name) return { company: null, userErrors: [{ field: ['input', 'company', 'name'], message: "Name can't be blank", code: 'BLANK' }] };
    if (input.company.externalId && this.companies.some(c => c.externalId === input.company.externalId)) return { company: null, userErrors: [{ field: ['input', 'company', 'externalId'], message: 'External Id has already been taken', code: 'TAKEN' }] };
    const company = this.add('Company', { name: input.company.name, externalId: input.company.externalId ?? null, note: input.company.note ?? null,
      customerSince: input.company.customerSince || now(), contactIds: [], locationIds: [], mainContactId: null, metafields: [] });
    this.companies.push(company);
    const loc = input.companyLocation || { name: company.name };
    const cl = this.add('CompanyLocation', { companyId: company.id, name: loc.name || company.name, externalId: loc.externalId ?? null, phone: loc.phone ?? null,
      note: loc.note ?? null, locale: loc.locale ?? 'en', currency: this.currency, taxRegistrationId: loc.taxRegistrationId ?? null, taxExempt: !!loc.taxExempt,
      billingAddress: loc.billingAddress ? { __typename: 'CompanyAddress', ...loc.billingAddress } : null,
      shippingAddress: loc.shippingAddress ? { __typename: 'CompanyAddress', ...loc.shippingAddress } : null, catalogIds: [], metafields: [] });
    if (loc.billingSameAsShipping && cl.shippingAddress) cl.billingAddress = cl.shippingAddress;
    company.locationIds.push(cl.id);
    if (input.companyContact) {
      const cust = this.customerSet({ identifier: input.companyContact.email ? { email: input.companyContact.email } : null, input: { email: input.companyContact.email, firstName: input.companyContact.firstName, lastName: input.companyContact.lastName, phone: input.companyContact.phone } });
      if (cust.customer) { const contact = this.contactFor(company, cust.customer, input.companyContact.title); company.mainContactId = contact.id; }
    }
    return { company, userErrors: [] };
  }
  contactFor(company, customer, title = null) {
    let contact = company.contactIds.map(id => this.get(id)).find(ct => ct.customerId === customer.id);
    if (!contact) { contact = this.add('CompanyContact', { companyId: company.id, customerId: customer.id, title, locale: 'en' }); company.contactIds.push(contact.id); }
    return contact;
  }
  companyAssignCustomerAsContact({ companyId, customerId }) {
    const company = this.get(companyId, 'Company'), customer = this.get(customerId, 'Customer');
    if (!company) return { companyContact: null, userErrors: [{ field: ['companyId'], message: 'Resource requested does not exist.', code: 'RESOURCE_NOT_FOUND' }] };
    if (!customer) return { companyContact: null, userErrors: [{ field: ['customerId'], message: 'Resource requested does not exist.', code: 'RESOURCE_NOT_FOUND' }] };
    return { companyContact: this.contactFor(company, customer), userErrors: [] };
  }
  catalogCreate({ input }) {
    const ids = input.context?.companyLocationIds || [];
    for (const id of ids) if (!this.get(id, 'CompanyLocation')) return { catalog: null, userErrors: [{ field: ['input', 'context', 'companyLocationIds'], message: `Company location ${id} does not exist`, code: 'COMPANY_LOCATION_NOT_FOUND' }] };
    if (input.priceListId && !this.get(input.priceListId, 'PriceList')) return { catalog: null, userErrors: [{ field: ['input', 'priceListId'], message: 'Price list not found.', code: 'PRICE_LIST_NOT_FOUND' }] };
    const cat = this.add('CompanyLocationCatalog', { title: input.title, status: input.status, companyLocationIds: ids, priceListId: input.priceListId ?? null, publicationId: input.publicationId ?? null });
    for (const id of ids) this.get(id).catalogIds.push(cat.id);
    if (cat.priceListId) this.get(cat.priceListId).catalogId = cat.id;
    this.catalogs.push(cat);
    return { catalog: cat, userErrors: [] };
  }
  priceListCreate({ input }) {
    if (this.priceLists.some(p => p.name === input.name)) return { priceList: null, userErrors: [{ field: ['input', 'name'], message: 'Name has already been taken', code: 'TAKEN' }] };
    if (input.catalogId && !this.get(input.catalogId)) return { priceList: null, userErrors: [{ field: ['input', 'catalogId'], message: 'Catalog does not exist', code: 'CATALOG_DOES_NOT_EXIST' }] };
    const pl = this.add('PriceList', { name: input.name, currency: input.currency, catalogId: input.catalogId ?? null,
      parent: { __typename: 'PriceListParent', adjustment: { __typename: 'PriceListAdjustment', type: input.parent.adjustment.type, value: input.parent.adjustment.value } },
      fixed: new Map(), breaks: [], quantityRules: new Map() });
    if (pl.catalogId) this.get(pl.catalogId).priceListId = pl.id;
    this.priceLists.push(pl);
    return { priceList: pl, userErrors: [] };
  }
  // fixed prices: checked all first, then applied (a bad variant id or currency changes nothing)
  checkPrices(pl, prices, field) {
    if (!pl) return [{ field: ['priceListId'], message: "The specified price list doesn't exist.", code: 'PRICE_LIST_NOT_FOUND' }];
    const errs = [];
    prices.forEach((p, i) => {
      if (!this.get(p.variantId, 'ProductVariant')) errs.push({ field: [field, String(i), 'variantId'], message: "The specified variant doesn't exist.", code: 'VARIANT_NOT_FOUND' });
      else if (p.price.currencyCode !== pl.currency) errs.push({ field: [field, String(i), 'price', 'currencyCode'], message: `The price's currency (${p.price.currencyCode}) doesn't match the price list's currency (${pl.currency}).`, code: 'PRICE_LIST_CURRENCY_MISMATCH' });
    });
    return errs;
  }
  applyPrices(pl, prices) {
    return prices.map(p => {
      pl.fixed.set(p.variantId, { priceCents: cents(p.price.amount, 'price.amount'), compareAtCents: p.compareAtPrice ? cents(p.compareAtPrice.amount, 'compareAtPrice.amount') : null });
      return this.priceListPrice(pl, p.variantId);
    });
  }
  priceListPrice(pl, variantId) {
    const f = pl.fixed.get(variantId);
    return { __typename: 'PriceListPrice', id: variantId, priceListId: pl.id, variantId, originType: 'FIXED', priceCents: f.priceCents, compareAtCents: f.compareAtCents };
  }
  priceListFixedPricesAdd({ priceListId, prices }) {
    const pl = this.get(priceListId, 'PriceList');
    const errs = this.checkPrices(pl, prices, 'prices');
    if (errs.length) return { prices: null, userErrors: errs };
    return { prices: this.applyPrices(pl, prices), userErrors: [] };
  }
  priceListFixedPricesUpdate({ priceListId, pricesToAdd, variantIdsToDelete }) {
    const pl = this.get(priceListId, 'PriceList');
    const errs = this.checkPrices(pl, pricesToAdd, 'pricesToAdd');
    if (errs.length) return { priceList: null, pricesAdded: null, deletedFixedPriceVariantIds: null, userErrors: errs };
    const added = this.applyPrices(pl, pricesToAdd);
    const deleted = variantIdsToDelete.filter(id => pl.fixed.delete(id));
    return { priceList: pl, pricesAdded: added, deletedFixedPriceVariantIds: deleted, userErrors: [] };
  }
  quantityPricingByVariantUpdate({ priceListId, input }) {
    const pl = this.get(priceListId, 'PriceList');
    const errs = this.checkPrices(pl, input.pricesToAdd, 'pricesToAdd').map(e => ({ ...e, code: e.code === 'VARIANT_NOT_FOUND' ? 'PRICE_ADD_VARIANT_NOT_FOUND' : e.code === 'PRICE_LIST_NOT_FOUND' ? 'PRICE_LIST_NOT_FOUND' : 'PRICE_ADD_CURRENCY_MISMATCH' }));
    input.quantityPriceBreaksToAdd.forEach((b, i) => {
      const fixedLater = pl && (pl.fixed.has(b.variantId) || input.pricesToAdd.some(p => p.variantId === b.variantId));
      if (!this.get(b.variantId, 'ProductVariant')) errs.push({ field: ['input', 'quantityPriceBreaksToAdd', String(i), 'variantId'], message: 'Quantity price break variant not found.', code: 'QUANTITY_PRICE_BREAK_ADD_VARIANT_NOT_FOUND' });
      else if (!fixedLater) errs.push({ field: ['input', 'quantityPriceBreaksToAdd', String(i), 'variantId'], message: 'Quantity price breaks can only be added to a variant with a fixed price on the price list.', code: 'QUANTITY_PRICE_BREAK_ADD_PRICE_LIST_PRICE_NOT_FOUND' });
      else if (b.minimumQuantity < 2) errs.push({ field: ['input', 'quantityPriceBreaksToAdd', String(i), 'minimumQuantity'], message: 'Minimum quantity must be greater than 1.', code: 'QUANTITY_PRICE_BREAK_ADD_INVALID' });
      else if (pl && b.price.currencyCode !== pl.currency) errs.push({ field: ['input', 'quantityPriceBreaksToAdd', String(i), 'price', 'currencyCode'], message: 'Currency mismatch.', code: 'QUANTITY_PRICE_BREAK_ADD_CURRENCY_MISMATCH' });
    });
    if (errs.length) return { productVariants: null, userErrors: errs };
    const touched = new Set();
    for (const id of input.pricesToDeleteByVariantId) { pl.fixed.delete(id); pl.breaks = pl.breaks.filter(b => b.variantId !== id); touched.add(id); }
    for (const id of input.quantityPriceBreaksToDelete) pl.breaks = pl.breaks.filter(b => b.id !== id);
    for (const id of input.quantityPriceBreaksToDeleteByVariantId || []) { pl.breaks = pl.breaks.filter(b => b.variantId !== id); touched.add(id); }
    for (const id of input.quantityRulesToDeleteByVariantId) { pl.quantityRules.delete(id); touched.add(id); }
    this.applyPrices(pl, input.pricesToAdd); input.pricesToAdd.forEach(p => touched.add(p.variantId));
    for (const b of input.quantityPriceBreaksToAdd) {
      pl.breaks = pl.breaks.filter(x => !(x.variantId === b.variantId && x.minimumQuantity === b.minimumQuantity));
      pl.breaks.push(this.add('QuantityPriceBreak', { variantId: b.variantId, priceListId: pl.id, minimumQuantity: b.minimumQuantity, priceCents: cents(b.price.amount, 'price.amount') }));
      touched.add(b.variantId);
    }
    for (const r of input.quantityRulesToAdd) { pl.quantityRules.set(r.variantId, { minimum: r.minimum, maximum: r.maximum ?? null, increment: r.increment }); touched.add(r.variantId); }
    return { productVariants: [...touched].map(id => this.get(id)).filter(Boolean), userErrors: [] };
  }

  // metafieldsSet: up to 25 per call, all validated before any is written; compareDigest guards a value
  metafieldsSet({ metafields }) {
    const errs = [];
    if (metafields.length > 25) errs.push({ field: ['metafields'], message: 'Exceeded the maximum metafields input limit of 25.', code: 'LESS_THAN_OR_EQUAL_TO', elementIndex: null });
    const owners = metafields.map((m, i) => {
      const owner = this.get(m.ownerId);
      const f = k => ['metafields', String(i), k];
      if (!owner || !OWNER_TYPES[owner.__typename]) { errs.push({ field: f('ownerId'), message: 'Owner does not exist.', code: 'INVALID', elementIndex: i }); return null; }
      const ns = m.namespace || '$app';
      const def = this.metafieldDefinitions.find(d => d.ownerType === OWNER_TYPES[owner.__typename] && d.namespace === ns && d.key === m.key);
      const existing = (owner.metafields || []).find(x => x.namespace === ns && x.key === m.key);
      const type = m.type || def?.typeName || existing?.type;
      if (!type) errs.push({ field: f('type'), message: "Type can't be blank.", code: 'BLANK', elementIndex: i });
      else if (def && def.typeName !== type) errs.push({ field: f('type'), message: `Type must be ${def.typeName} (the metafield definition's).`, code: 'INVALID_TYPE', elementIndex: i });
      else if (!METAFIELD_TYPES.includes(type)) errs.push({ field: f('type'), message: `'${type}' is not a metafield type the emulator knows.`, code: 'INVALID_TYPE', elementIndex: i });
      else if (type === 'number_integer' && !/^-?\d+$/.test(m.value)) errs.push({ field: f('value'), message: 'Value must be an integer.', code: 'INVALID_VALUE', elementIndex: i });
      else if (type === 'json' || type.startsWith('list.')) { try { JSON.parse(m.value); } catch { errs.push({ field: f('value'), message: 'Value is invalid JSON.', code: 'INVALID_VALUE', elementIndex: i }); } }
      if (m.compareDigest != null && (existing ? Buffer.from(String(existing.value)).toString('base64url') : null) !== m.compareDigest) {
        errs.push({ field: f('compareDigest'), message: 'The resource has been updated since it was loaded. Try again with an updated `compareDigest` value.', code: 'STALE_OBJECT', elementIndex: i });
      }
      return owner;
    });
    if (errs.length) return { metafields: [], userErrors: errs };
    const out = metafields.map((m, i) => {
      const owner = owners[i];
      this.setMetafields(owner, [{ namespace: m.namespace, key: m.key, type: m.type || this.metafieldDefinitions.find(d => d.ownerType === OWNER_TYPES[owner.__typename] && d.namespace === (m.namespace || '$app') && d.key === m.key)?.typeName || (owner.metafields || []).find(x => x.namespace === (m.namespace || '$app') && x.key === m.key)?.type, value: m.value }]);
      owner.updatedAt = now();
      return owner.metafields.find(x => x.namespace === (m.namespace || '$app') && x.key === m.key);
    });
    return { metafields: out, userErrors: [] };
  }
  // tagsAdd / tagsRemove on products, customers, orders (Shopify trims tags and keeps them unique)
  tags(id, tags, add) {
    const r = this.get(id);
    if (!r || !['Product', 'Customer', 'Order', 'DraftOrder'].includes(r.__typename)) return { node: null, userErrors: [{ field: ['id'], message: 'Resource does not exist or does not support tags' }] };
    const clean = tags.flatMap(t => String(t).split(',')).map(t => t.trim()).filter(Boolean);
    if (clean.some(t => t.length > 255)) return { node: null, userErrors: [{ field: ['tags'], message: 'Tags are limited to 255 characters' }] };
    const next = add ? [...new Set([...(r.tags || []), ...clean])] : (r.tags || []).filter(t => !clean.includes(t));
    if (JSON.stringify(next) !== JSON.stringify(r.tags)) {
      r.tags = next; r.updatedAt = now();
      // a tag change is an update of the resource, with its webhook
      if (r.__typename === 'Order') this.events('orders/updated', this.orderRest(r));
      if (r.__typename === 'Product') this.events('products/update', this.productRest(r));
      if (r.__typename === 'Customer') this.events('customers/update', this.customerRest(r));
    }
    return { node: r, userErrors: [] };
  }
  catalogContextUpdate({ catalogId, contextsToAdd, contextsToRemove }) {
    const cat = this.get(catalogId, 'CompanyLocationCatalog');
    if (!cat) return { catalog: null, userErrors: [{ field: ['catalogId'], message: 'Catalog does not exist.', code: 'CATALOG_NOT_FOUND' }] };
    if (contextsToAdd?.marketIds?.length || contextsToRemove?.marketIds?.length) return { catalog: null, userErrors: [{ field: ['contextsToAdd'], message: 'A company location catalog takes company locations only.', code: 'INVALID_CATALOG_CONTEXT_TYPE' }] };
    const add = contextsToAdd?.companyLocationIds || [], remove = contextsToRemove?.companyLocationIds || [];
    for (const id of [...add, ...remove]) if (!this.get(id, 'CompanyLocation')) return { catalog: null, userErrors: [{ field: ['contextsToAdd', 'companyLocationIds'], message: `Company location ${id} does not exist.`, code: 'COMPANY_LOCATION_NOT_FOUND' }] };
    for (const id of add) if (!cat.companyLocationIds.includes(id)) { cat.companyLocationIds.push(id); this.get(id).catalogIds.push(cat.id); }
    for (const id of remove) { cat.companyLocationIds = cat.companyLocationIds.filter(x => x !== id); const cl = this.get(id); cl.catalogIds = cl.catalogIds.filter(x => x !== cat.id); }
    cat.updatedAt = now();
    return { catalog: cat, userErrors: [] };
  }

  // ---- orders (placed through /_emulator/orders) ------------------------------------------------
  // Shopify's arithmetic: line discounts allocated per line (a fixed amount across lines in proportion
  // to their totals, remainder on the last), tax per line on the discounted line total rounded to the
  // cent, shipping taxed on its own; total = subtotal (after discounts) + shipping + tax (unless included).
  placeOrder(body) {
    const fail = (field, msg) => { throw new GraphQLishError(`order.${field}: ${msg}`, 'BAD_REQUEST'); };
    if (!Array.isArray(body.lines) || !body.lines.length) fail('lines', 'at least one line is required');
    const currency = body.currency || this.currency;
    const included = !!body.taxes_included;
    const ratePpm = ppm(body.tax_rate ?? '0.10', 'order.tax_rate');
    const lines = body.lines.map((l, i) => {
      const variant = this.variantBySku(l.sku);
      if (!variant) fail(`lines[${i}].sku`, `no variant has SKU '${l.sku}'`);
      if (!Number.isInteger(l.quantity) || l.quantity < 1) fail(`lines[${i}].quantity`, `must be a positive integer (got ${l.quantity})`);
      const unit = l.price != null ? cents(l.price, `order.lines[${i}].price`) : variant.priceCents;
      return { variant, product: this.get(variant.productId), quantity: l.quantity, unit, total: unit * l.quantity };
    });
    let discount = null, allocs = lines.map(() => 0);
    if (body.discount_code) {
      const d = body.discount_code;
      if (d.percentage != null) {
        const p = ppm(d.percentage, 'order.discount_code.percentage'); // percentage as "10" → 10 %
        allocs = lines.map(l => divRoundPct(l.total, p));
        discount = { code: d.code, type: 'percentage', value: d.percentage };
      } else if (d.amount != null) {
        const amt = cents(d.amount, 'order.discount_code.amount');
        allocs = allocate(Math.min(amt, lines.reduce((s, l) => s + l.total, 0)), lines.map(l => l.total));
        discount = { code: d.code, type: 'fixed_amount', value: fmt(amt) };
      } else fail('discount_code', 'needs amount or percentage');
    }
    const at = now();
    if (body.name != null && (typeof body.name !== 'string' || !body.name.trim())) fail('name', 'must be a non-empty string');
    if (body.name != null && this.orders.some(o => o.name === body.name)) fail('name', `an order named '${body.name}' exists already`);
    const number = ++this.orderNumber;
    this.saveCounters();
    const order = this.add('Order', { name: body.name ?? '#' + number, number, email: body.email ?? null, phone: body.phone ?? null, currencyCode: currency,
      presentmentCurrencyCode: currency, taxesIncluded: included, processedAt: at, cancelledAt: null, cancelReason: null, closed: false, closedAt: null,
      note: body.note ?? null, tags: body.tags || [], confirmed: true, test: true, sourceName: 'web', financial: body.financial_status || 'paid',
      discountCodes: discount ? [discount.code] : [], discount, lineItemIds: [], transactions: [], refunds: [], fulfillmentOrderIds: [], fulfillmentIds: [] });
    if (body.customer || body.email) {
      const c = body.customer || {};
      const email = c.email || body.email;
      const found = email ? this.customerByEmail(email) : null;
      order.customerId = found ? found.id : this.customerSet({ identifier: null, input: { email, firstName: c.first_name, lastName: c.last_name } }).customer.id;
    }
    order.shippingAddress = this.address(body.shipping_address);
    order.billingAddress = this.address(body.billing_address || body.shipping_address);
    const taxTitle = body.tax_title || 'GST';
    order.lineItemIds = lines.map((l, i) => {
      const discounted = l.total - allocs[i];
      const tax = l.variant.taxable ? taxOn(discounted, ratePpm, included) : 0;
      const li = this.add('LineItem', { orderId: order.id, variantId: l.variant.id, productId: l.product.id, sku: l.variant.sku, name: l.product.title + (l.variant.title === 'Default Title' ? '' : ' - ' + l.variant.title),
        title: l.product.title, variantTitle: l.variant.title === 'Default Title' ? null : l.variant.title, vendor: l.product.vendor || null, quantity: l.quantity,
        unitCents: l.unit, totalCents: l.total, discountCents: allocs[i], taxCents: tax, taxable: l.variant.taxable, requiresShipping: true,
        taxLinesData: l.variant.taxable ? [{ title: taxTitle, ratePpm, cents: tax }] : [], refundedQty: 0, fulfilledQty: 0 });
      return li.id;
    });
    const lineItems = order.lineItemIds.map(id => this.get(id));
    if (body.shipping) {
      const price = cents(body.shipping.price, 'order.shipping.price');
      const tax = body.shipping.tax != null ? cents(body.shipping.tax, 'order.shipping.tax') : taxOn(price, ratePpm, included);
      order.shippingLineData = this.add('ShippingLine', { title: body.shipping.title || 'Standard', code: body.shipping.code || body.shipping.title || 'Standard', priceCents: price, taxCents: tax,
        taxLinesData: tax ? [{ title: taxTitle, ratePpm, cents: tax }] : [], source: 'shopify', custom: false, isRemoved: false });
    }
    this.recomputeTotals(order, lineItems, ratePpm, taxTitle);
    if (order.financial === 'paid') order.transactions.push(this.transaction(order, 'SALE', order.totalCents));
    else if (order.financial === 'authorized') order.transactions.push(this.transaction(order, 'AUTHORIZATION', order.totalCents));
    this.orders.push(order);
    // stock: committed at the location each line is fulfilled from; one fulfillment order per location
    const byLocation = new Map();
    for (const li of lineItems) {
      const v = this.get(li.variantId);
      const loc = this.locations.find(l => { const lv = this.level(v.inventoryItemId, l.id); return lv && lv.q.available >= li.quantity; })
        || this.locations.find(l => this.level(v.inventoryItemId, l.id)) || this.mainLocation();
      const lv = this.activate(this.get(v.inventoryItemId), loc);
      lv.q.available -= li.quantity; lv.q.committed += li.quantity;
      if (!byLocation.has(loc.id)) byLocation.set(loc.id, []);
      byLocation.get(loc.id).push(li);
    }
    for (const [locId, lis] of byLocation) {
      const fo = this.add('FulfillmentOrder', { orderId: order.id, locationId: locId, status: 'OPEN', requestStatus: 'UNSUBMITTED', fulfillAt: at, lineItemIds: [], fulfillmentIds: [] });
      fo.lineItemIds = lis.map(li => this.add('FulfillmentOrderLineItem', { fulfillmentOrderId: fo.id, lineItemId: li.id, totalQuantity: li.quantity, remainingQuantity: li.quantity }).id);
      this.fulfillmentOrders.push(fo);
      order.fulfillmentOrderIds.push(fo.id);
    }
    this.events('orders/create', this.orderRest(order));
    return order;
  }
  recomputeTotals(order, lineItems, ratePpm, taxTitle) {
    const ship = order.shippingLineData;
    order.subtotalCents = lineItems.reduce((s, l) => s + l.totalCents - l.discountCents, 0);
    order.lineTaxCents = lineItems.reduce((s, l) => s + l.taxCents, 0);
    order.shippingCents = ship ? ship.priceCents : 0;
    order.totalTaxCents = order.lineTaxCents + (ship ? ship.taxCents : 0);
    order.totalDiscountCents = lineItems.reduce((s, l) => s + l.discountCents, 0);
    order.totalCents = order.subtotalCents + order.shippingCents + (order.taxesIncluded ? 0 : order.totalTaxCents);
    order.taxLinesData = order.totalTaxCents ? [{ title: taxTitle, ratePpm, cents: order.totalTaxCents }] : [];
  }
  transaction(order, kind, c, parent = null) {
    return this.add('OrderTransaction', { orderId: order.id, kind, status: 'SUCCESS', amountCents: c, gateway: 'manual', test: true, processedAt: now(), parentId: parent?.id ?? null, manualPaymentGateway: true });
  }
  orderOrFail(n) {
    const order = this.get(gid('Order', n), 'Order') || this.get(n, 'Order');
    if (!order) throw new GraphQLishError(`no order ${n}`, 'NOT_FOUND');
    return order;
  }
  cancelOrder(n, { reason = 'CUSTOMER', refund = false, restock = true } = {}) {
    const order = this.orderOrFail(n);
    if (order.cancelledAt) throw new GraphQLishError(`order ${order.name} is already cancelled`, 'BAD_REQUEST');
    reason = String(reason).toUpperCase();
    if (!['CUSTOMER', 'DECLINED', 'FRAUD', 'INVENTORY', 'OTHER', 'STAFF'].includes(reason)) throw new GraphQLishError(`cancel.reason: '${reason}' is not an OrderCancelReason`, 'BAD_REQUEST');
    order.cancelledAt = now(); order.cancelReason = reason; order.closed = true; order.closedAt = order.cancelledAt; order.updatedAt = order.cancelledAt;
    for (const id of order.fulfillmentOrderIds) {
      const fo = this.get(id);
      if (fo.status === 'OPEN' || fo.status === 'IN_PROGRESS') {
        fo.status = 'CANCELLED';
        for (const foliId of fo.lineItemIds) {
          const foli = this.get(foliId), li = this.get(foli.lineItemId), v = this.get(li.variantId);
          const lv = v && this.level(v.inventoryItemId, fo.locationId);
          if (lv && restock) { lv.q.committed -= foli.remainingQuantity; lv.q.available += foli.remainingQuantity; }
          foli.remainingQuantity = 0;
        }
      }
    }
    if (refund) {
      const paid = this.netPaidCents(order);
      if (paid > 0) this.addRefund(order, { lines: [], shipping: false, amountCents: paid, note: 'Order cancelled' });
    }
    this.events('orders/cancelled', this.orderRest(order));
    this.events('orders/updated', this.orderRest(order));
    return order;
  }
  netPaidCents(order) {
    return order.transactions.reduce((s, t) => s + (t.kind === 'SALE' || t.kind === 'CAPTURE' ? t.amountCents : t.kind === 'REFUND' ? -t.amountCents : 0), 0);
  }
  // refund lines (by SKU) and/or shipping: each line refunds its discounted unit share and its tax share
  refundOrder(n, body = {}) {
    const order = this.orderOrFail(n);
    const lineItems = order.lineItemIds.map(id => this.get(id));
    const lines = (body.lines || []).map((l, i) => {
      const li = lineItems.find(x => x.sku === l.sku);
      if (!li) throw new GraphQLishError(`refund.lines[${i}].sku: order ${order.name} has no line with SKU '${l.sku}'`, 'BAD_REQUEST');
      if (!Number.isInteger(l.quantity) || l.quantity < 1 || l.quantity > li.quantity - li.refundedQty) throw new GraphQLishError(`refund.lines[${i}].quantity: ${l.quantity} is more than the ${li.quantity - li.refundedQty} refundable`, 'BAD_REQUEST');
      return { li, quantity: l.quantity };
    });
    return this.addRefund(order, { lines, shipping: !!body.shipping, note: body.note ?? null });
  }
  addRefund(order, { lines, shipping, note, amountCents }) {
    const rlis = lines.map(({ li, quantity }) => {
      // the refunded share of a line's discounted total and tax, exact on the last unit
      const left = li.quantity - li.refundedQty;
      const netLeft = li.totalCents - li.discountCents - Math.round(((li.totalCents - li.discountCents) * li.refundedQty) / li.quantity);
      const taxLeft = li.taxCents - Math.round((li.taxCents * li.refundedQty) / li.quantity);
      const sub = quantity === left ? netLeft : Math.round(((li.totalCents - li.discountCents) * quantity) / li.quantity);
      const tax = quantity === left ? taxLeft : Math.round((li.taxCents * quantity) / li.quantity);
      li.refundedQty += quantity;
      return this.add('RefundLineItem', { lineItemId: li.id, quantity, subtotalCents: sub, taxCents: tax, priceCents: li.unitCents, restockType: 'NO_RESTOCK', restocked: false });
    });
    const ship = shipping && order.shippingLineData && !order.shippingRefunded ? order.shippingLineData : null;
    if (ship) order.shippingRefunded = true;
    let total = amountCents ?? rlis.reduce((s, r) => s + r.subtotalCents + (order.taxesIncluded ? 0 : r.taxCents), 0) + (ship ? ship.priceCents + (order.taxesIncluded ? 0 : ship.taxCents) : 0);
    total = Math.min(total, this.netPaidCents(order));
    const refund = this.add('Refund', { orderId: order.id, note, processedAt: now(), refundLineItemIds: rlis.map(r => r.id), totalRefundedCents: total,
      shippingCents: ship ? ship.priceCents : 0, shippingTaxCents: ship ? ship.taxCents : 0, transactionIds: [] });
    if (total > 0) {
      const parent = order.transactions.find(t => t.kind === 'SALE' || t.kind === 'CAPTURE');
      const t = this.transaction(order, 'REFUND', total, parent);
      order.transactions.push(t);
      refund.transactionIds.push(t.id);
    }
    order.refunds.push(refund.id);
    const paid = this.netPaidCents(order);
    order.financial = paid <= 0 ? 'refunded' : 'partially_refunded';
    order.updatedAt = now();
    this.events('refunds/create', this.refundRest(order, refund));
    this.events('orders/updated', this.orderRest(order));
    return refund;
  }

  // ---- fulfillment ----------------------------------------------------------------------------
  // fulfillmentCreate: lines of open fulfillment orders (all remaining when none listed), with tracking.
  fulfillmentCreate({ fulfillment: input }) {
    const errs = [];
    const plan = [];
    input.lineItemsByFulfillmentOrder.forEach((g, i) => {
      const fo = this.get(g.fulfillmentOrderId, 'FulfillmentOrder');
      if (!fo) { errs.push(userError(['fulfillment', 'lineItemsByFulfillmentOrder', String(i), 'fulfillmentOrderId'], 'Fulfillment order does not exist.')); return; }
      if (!['OPEN', 'IN_PROGRESS'].includes(fo.status)) { errs.push(userError(['fulfillment'], `Fulfillment order ${fo.id} has an unfulfillable status= ${fo.status.toLowerCase()}.`)); return; }
      const items = g.fulfillmentOrderLineItems?.length ? g.fulfillmentOrderLineItems : fo.lineItemIds.map(id => ({ id, quantity: this.get(id).remainingQuantity })).filter(x => x.quantity > 0);
      for (const it of items) {
        const foli = this.get(it.id, 'FulfillmentOrderLineItem');
        if (!foli || foli.fulfillmentOrderId !== fo.id) { errs.push(userError(['fulfillment', 'lineItemsByFulfillmentOrder', String(i), 'fulfillmentOrderLineItems'], `Fulfillment order line item ${it.id} does not belong to ${fo.id}.`)); continue; }
        if (it.quantity < 1 || it.quantity > foli.remainingQuantity) { errs.push(userError(['fulfillment', 'lineItemsByFulfillmentOrder', String(i), 'fulfillmentOrderLineItems'], `Invalid fulfillment order line item quantity requested: ${it.quantity} (remaining ${foli.remainingQuantity}).`)); continue; }
        plan.push({ fo, foli, quantity: it.quantity });
      }
    });
    const orderIds = new Set(plan.map(p => p.fo.orderId));
    if (!errs.length && orderIds.size > 1) errs.push(userError(['fulfillment'], 'All fulfillment orders must belong to the same order.'));
    if (!errs.length && !plan.length) errs.push(userError(['fulfillment'], 'No line items to fulfill.'));
    if (errs.length) return { fulfillment: null, userErrors: errs };
    const order = this.get([...orderIds][0]);
    const t = input.trackingInfo || {};
    const numbers = t.numbers?.length ? t.numbers : t.number ? [t.number] : [];
    const urls = t.urls?.length ? t.urls : t.url ? [t.url] : [];
    const f = this.add('Fulfillment', { orderId: order.id, status: 'SUCCESS', displayStatus: 'FULFILLED', locationId: plan[0].fo.locationId, name: `${order.name}-F${order.fulfillmentIds.length + 1}`,
      tracking: numbers.length ? numbers.map((n, i) => ({ company: t.company ?? null, number: n, url: urls[i] ?? null })) : (t.company || urls.length ? [{ company: t.company ?? null, number: null, url: urls[0] ?? null }] : []),
      lineData: [], fulfillmentOrderIds: [...new Set(plan.map(p => p.fo.id))], notifyCustomer: !!input.notifyCustomer, requiresShipping: true });
    for (const p of plan) {
      p.foli.remainingQuantity -= p.quantity;
      const li = this.get(p.foli.lineItemId); li.fulfilledQty += p.quantity;
      const lv = this.level(this.get(li.variantId)?.inventoryItemId, p.fo.locationId);
      if (lv) { lv.q.committed -= p.quantity; lv.q.on_hand -= p.quantity; }
      f.lineData.push(this.add('FulfillmentLineItem', { lineItemId: li.id, quantity: p.quantity }));
      p.fo.fulfillmentIds.push(f.id);
    }
    for (const fo of new Set(plan.map(p => p.fo))) {
      fo.status = fo.lineItemIds.every(id => this.get(id).remainingQuantity === 0) ? 'CLOSED' : 'IN_PROGRESS';
      fo.updatedAt = now();
    }
    order.fulfillmentIds.push(f.id);
    this.fulfillments.push(f);
    order.updatedAt = now();
    this.events('fulfillments/create', this.fulfillmentRest(order, f));
    this.events('orders/updated', this.orderRest(order));
    return { fulfillment: f, userErrors: [] };
  }
  fulfillmentStatus(order) {
    const lis = order.lineItemIds.map(id => this.get(id));
    const done = lis.reduce((s, l) => s + l.fulfilledQty, 0), all = lis.reduce((s, l) => s + l.quantity - l.refundedQty, 0);
    return done === 0 ? 'UNFULFILLED' : done >= all ? 'FULFILLED' : 'PARTIALLY_FULFILLED';
  }

  // ---- REST-style webhook payloads ------------------------------------------------------------
  productRest(p) {
    return { id: Number(p.legacyResourceId), admin_graphql_api_id: p.id, title: p.title, handle: p.handle, body_html: p.descriptionHtml, vendor: p.vendor,
      product_type: p.productType, status: p.status.toLowerCase(), tags: p.tags.join(', '), created_at: p.createdAt, updated_at: p.updatedAt,
      variants: p.variantIds.map(id => { const v = this.get(id); return { id: Number(v.legacyResourceId), admin_graphql_api_id: v.id, sku: v.sku, price: fmt(v.priceCents),
        compare_at_price: v.compareAtPriceCents == null ? null : fmt(v.compareAtPriceCents), title: v.title, inventory_item_id: Number(this.get(v.inventoryItemId).legacyResourceId) }; }) };
  }
  customerRest(c) {
    return { id: Number(c.legacyResourceId), admin_graphql_api_id: c.id, email: c.email, first_name: c.firstName, last_name: c.lastName, phone: c.phone,
      tags: c.tags.join(', '), created_at: c.createdAt, updated_at: c.updatedAt };
  }
  addressRest(a) {
    return a && { first_name: a.firstName, last_name: a.lastName, address1: a.address1, address2: a.address2, city: a.city, company: a.company,
      country_code: a.countryCodeV2, province_code: a.provinceCode, zip: a.zip, phone: a.phone };
  }
  orderRest(o) {
    const tl = x => x.taxLinesData.map(t => ({ title: t.title, rate: t.ratePpm / 1e6, price: fmt(t.cents) }));
    const c = o.customerId && this.get(o.customerId);
    return { id: Number(o.legacyResourceId), admin_graphql_api_id: o.id, name: o.name, order_number: o.number, email: o.email, created_at: o.createdAt, updated_at: o.updatedAt,
      processed_at: o.processedAt, tags: o.tags.join(', '), note: o.note, cancelled_at: o.cancelledAt, cancel_reason: o.cancelReason && o.cancelReason.toLowerCase(), closed_at: o.closedAt, currency: o.currencyCode,
      presentment_currency: o.currencyCode, taxes_included: o.taxesIncluded, financial_status: o.financial, fulfillment_status: { UNFULFILLED: null, FULFILLED: 'fulfilled', PARTIALLY_FULFILLED: 'partial' }[this.fulfillmentStatus(o)],
      subtotal_price: fmt(o.subtotalCents), total_tax: fmt(o.totalTaxCents), total_discounts: fmt(o.totalDiscountCents), total_price: fmt(o.totalCents),
      total_line_items_price: fmt(o.lineItemIds.reduce((s, id) => s + this.get(id).totalCents, 0)), tax_lines: tl(o),
      discount_codes: o.discount ? [{ code: o.discount.code, amount: fmt(o.totalDiscountCents), type: o.discount.type }] : [],
      line_items: o.lineItemIds.map(id => { const l = this.get(id), v = this.get(l.variantId); return { id: Number(l.legacyResourceId), admin_graphql_api_id: l.id, sku: l.sku, title: l.title,
        variant_title: l.variantTitle, name: l.name, quantity: l.quantity, current_quantity: l.quantity - l.refundedQty, price: fmt(l.unitCents), total_discount: fmt(l.discountCents), taxable: l.taxable,
        variant_id: v ? Number(v.legacyResourceId) : null, product_id: Number(this.get(l.productId)?.legacyResourceId ?? 0) || null, tax_lines: tl(l),
        discount_allocations: l.discountCents ? [{ amount: fmt(l.discountCents), discount_application_index: 0 }] : [] }; }),
      shipping_lines: o.shippingLineData ? [{ id: Number(o.shippingLineData.legacyResourceId), title: o.shippingLineData.title, code: o.shippingLineData.code, price: fmt(o.shippingLineData.priceCents), tax_lines: tl(o.shippingLineData) }] : [],
      customer: c ? this.customerRest(c) : null, shipping_address: this.addressRest(o.shippingAddress), billing_address: this.addressRest(o.billingAddress) };
  }
  refundRest(o, r) {
    return { id: Number(r.legacyResourceId), admin_graphql_api_id: r.id, order_id: Number(o.legacyResourceId), note: r.note, created_at: r.createdAt, processed_at: r.processedAt,
      refund_line_items: r.refundLineItemIds.map(id => { const x = this.get(id), l = this.get(x.lineItemId); return { id: Number(x.legacyResourceId), line_item_id: Number(l.legacyResourceId), quantity: x.quantity, subtotal: fmt(x.subtotalCents), total_tax: fmt(x.taxCents), line_item: { sku: l.sku } }; }),
      transactions: r.transactionIds.map(id => { const t = this.get(id); return { id: Number(t.legacyResourceId), admin_graphql_api_id: t.id, kind: 'refund', status: 'success', amount: fmt(t.amountCents), currency: o.currencyCode, gateway: t.gateway }; }) };
  }
  fulfillmentRest(o, f) {
    return { id: Number(f.legacyResourceId), admin_graphql_api_id: f.id, order_id: Number(o.legacyResourceId), name: f.name, status: 'success', created_at: f.createdAt, updated_at: f.updatedAt,
      location_id: Number(this.get(f.locationId).legacyResourceId), tracking_company: f.tracking[0]?.company ?? null, tracking_number: f.tracking[0]?.number ?? null,
      tracking_numbers: f.tracking.map(t => t.number).filter(Boolean), tracking_url: f.tracking[0]?.url ?? null, tracking_urls: f.tracking.map(t => t.url).filter(Boolean),
      line_items: f.lineData.map(x => { const l = this.get(x.lineItemId); return { id: Number(l.legacyResourceId), sku: l.sku, quantity: x.quantity }; }) };
  }

  // ---- state dump for tests -------------------------------------------------------------------
  dump() {
    const lv = [...this.levels.values()].map(l => ({ sku: this.get(l.itemId)?.sku, inventoryItemId: l.itemId, location: this.get(l.locationId).name, locationId: l.locationId, ...l.q }));
    return {
      shop: { name: this.shop.name, currencyCode: this.currency, myshopifyDomain: this.domain },
      locations: this.locations.map(l => ({ id: l.id, name: l.name })),
      products: Object.fromEntries(this.products.map(p => [p.handle, { id: p.id, title: p.title, status: p.status, vendor: p.vendor, tags: p.tags, descriptionHtml: p.descriptionHtml, updatedAt: p.updatedAt,
        options: p.optionsData, collections: p.collectionIds, metafields: p.metafields.map(m => ({ namespace: m.namespace, key: m.key, type: m.type, value: m.value })), files: p.mediaData,
        variants: p.variantIds.map(id => { const v = this.get(id); return { id: v.id, sku: v.sku, price: fmt(v.priceCents), compareAtPrice: v.compareAtPriceCents == null ? null : fmt(v.compareAtPriceCents), inventoryItemId: v.inventoryItemId, options: v.selectedOptions,
          barcode: v.barcode, taxable: v.taxable, metafields: (v.metafields || []).map(m => ({ namespace: m.namespace, key: m.key, type: m.type, value: m.value })) }; }) }])),
      inventoryLevels: lv,
      customers: this.customers.map(c => ({ id: c.id, email: c.email, firstName: c.firstName, lastName: c.lastName, phone: c.phone, note: c.note, tags: c.tags,
        taxExempt: c.taxExempt, addresses: c.addresses.map(a => ({ address1: a.address1, address2: a.address2, city: a.city, company: a.company, zip: a.zip,
          countryCode: a.countryCodeV2, provinceCode: a.provinceCode, firstName: a.firstName, lastName: a.lastName, phone: a.phone })),
        metafields: (c.metafields || []).map(m => ({ namespace: m.namespace, key: m.key, type: m.type, value: m.value })) })),
      companies: this.companies.map(c => ({ id: c.id, name: c.name, externalId: c.externalId, contacts: c.contactIds.map(id => this.get(id).customerId), locations: c.locationIds })),
      collections: this.collections.map(c => ({ id: c.id, title: c.title, handle: c.handle, products: c.productIds })),
      metafieldDefinitions: this.metafieldDefinitions.map(d => ({ id: d.id, ownerType: d.ownerType, namespace: d.namespace, key: d.key, type: d.typeName })),
      priceLists: this.priceLists.map(p => ({ id: p.id, name: p.name, currency: p.currency, catalogId: p.catalogId,
        fixedPrices: Object.fromEntries([...p.fixed].map(([k, v]) => [k, { price: fmt(v.priceCents), compareAtPrice: v.compareAtCents == null ? null : fmt(v.compareAtCents) }])),
        quantityPriceBreaks: p.breaks.map(b => ({ id: b.id, variantId: b.variantId, minimumQuantity: b.minimumQuantity, price: fmt(b.priceCents) })),
        quantityRules: Object.fromEntries(p.quantityRules) })),
      catalogs: this.catalogs.map(c => ({ id: c.id, title: c.title, status: c.status, companyLocationIds: c.companyLocationIds, priceListId: c.priceListId })),
      orders: this.orders.map(o => ({ id: o.id, name: o.name, total: fmt(o.totalCents), subtotal: fmt(o.subtotalCents), tax: fmt(o.totalTaxCents), financialStatus: o.financial, cancelledAt: o.cancelledAt,
        fulfillmentStatus: this.fulfillmentStatus(o), fulfillmentOrders: o.fulfillmentOrderIds.map(id => { const fo = this.get(id); return { id, status: fo.status, location: this.get(fo.locationId).name }; }) })),
      fulfillments: this.fulfillments.map(f => ({ id: f.id, orderId: f.orderId, tracking: f.tracking, lines: f.lineData.map(x => ({ sku: this.get(x.lineItemId).sku, quantity: x.quantity })) })),
      webhookSubscriptions: this.webhookSubscriptions.map(w => ({ id: w.id, topic: w.topic, uri: w.uri })),
      bulkOperations: this.bulkOperations.map(b => ({ id: b.id, type: b.type, status: b.status, objectCount: b.objectCount, url: b.url })),
    };
  }
}

// percentage "10" (as ppm of 1, i.e. 10_000_000 for 10) of an amount in cents, rounded to the cent
function divRoundPct(amountCents, pctPpm) { return Math.floor((2 * amountCents * pctPpm + 100e6) / (200e6)); }

export const OWNER_TYPES = { Product: 'PRODUCT', ProductVariant: 'PRODUCTVARIANT', Collection: 'COLLECTION', Customer: 'CUSTOMER', Order: 'ORDER', Company: 'COMPANY', CompanyLocation: 'COMPANY_LOCATION', Location: 'LOCATION', Shop: 'SHOP' };

// Reasons inventorySetQuantities accepts (shopify.dev "Manage inventory quantities and states").
export const REASONS = ['correction', 'cycle_count_available', 'damaged', 'movement_created', 'movement_updated', 'movement_received',
  'movement_canceled', 'other', 'promotion', 'quality_control', 'received', 'reservation_created', 'reservation_deleted', 'reservation_updated',
  'restock', 'safety_stock', 'shrinkage'];
export const METAFIELD_TYPES = ['boolean', 'color', 'date', 'date_time', 'dimension', 'id', 'json', 'link', 'money', 'multi_line_text_field', 'number_decimal',
  'number_integer', 'rating', 'rich_text_field', 'single_line_text_field', 'url', 'volume', 'weight', 'collection_reference', 'customer_reference',
  'file_reference', 'metaobject_reference', 'mixed_reference', 'page_reference', 'product_reference', 'variant_reference', 'company_reference',
  ...['single_line_text_field', 'number_integer', 'number_decimal', 'date', 'date_time', 'url', 'color', 'product_reference', 'variant_reference',
    'collection_reference', 'file_reference', 'metaobject_reference', 'weight', 'dimension', 'volume', 'rating', 'link', 'customer_reference', 'company_reference'].map(t => `list.${t}`)];
