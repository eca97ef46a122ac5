// Resolvers: root fields (QueryRoot, Mutation) the emulator implements, and computed fields of the
// records' types. Any other field is read from the record by name (see server.mjs's fieldResolver).
import { bag, money, fmt, parseSearch, matches, connection, compareTuples, GraphQLishError } from './util.mjs';
import { OWNER_TYPES } from './store.mjs';

const lower = s => (s == null ? s : String(s).toLowerCase());
const numId = id => { const m = /\/(\d+)$/.exec(String(id)); return m ? Number(m[1]) : null; };

// search fields by type: key → value(s) for Shopify's query syntax; null key = bare words
const SEARCH = {
  Product: (s, p, k) => ({ null: [p.title, p.handle, p.vendor], title: p.title, handle: p.handle, status: lower(p.status), vendor: p.vendor, product_type: p.productType,
    tag: p.tags, tags: p.tags, sku: p.variantIds.map(id => s.get(id).sku), id: numId(p.id), created_at: p.createdAt, updated_at: p.updatedAt, barcode: p.variantIds.map(id => s.get(id).barcode) })[k],
  ProductVariant: (s, v, k) => ({ null: [v.sku, v.title], sku: v.sku, barcode: v.barcode, title: v.title, product_id: numId(v.productId), id: numId(v.id), updated_at: v.updatedAt,
    inventory_item_id: numId(v.inventoryItemId) })[k],
  Customer: (s, c, k) => ({ null: [c.email, c.firstName, c.lastName], email: c.email, first_name: c.firstName, last_name: c.lastName, phone: c.phone, tag: c.tags,
    id: numId(c.id), updated_at: c.updatedAt, created_at: c.createdAt })[k],
  Order: (s, o, k) => ({ null: [o.name, o.email], name: [o.name, o.name.replace(/^#/, '')], email: o.email, id: numId(o.id), updated_at: o.updatedAt, created_at: o.createdAt, processed_at: o.processedAt,
    status: o.cancelledAt ? 'cancelled' : o.closed ? 'closed' : 'open', financial_status: o.financial, fulfillment_status: lower(s.fulfillmentStatus(o)),
    sku: o.lineItemIds.map(id => s.get(id).sku), tag: o.tags })[k],
  Collection: (s, c, k) => ({ null: [c.title, c.handle], title: c.title, handle: c.handle, id: numId(c.id), updated_at: c.updatedAt })[k],
  Company: (s, c, k) => ({ null: [c.name, c.externalId], name: c.name, external_id: c.externalId, id: numId(c.id), updated_at: c.updatedAt })[k],
  Location: (s, l, k) => ({ null: [l.name], name: l.name, id: numId(l.id), active: l.isActive })[k],
  Catalog: (s, c, k) => ({ null: [c.title], title: c.title, status: lower(c.status), id: numId(c.id) })[k],
  BulkOperation: (s, b, k) => ({ null: [b.id], status: lower(b.status), operation_type: lower(b.type), created_at: b.createdAt, id: numId(b.id) })[k],
  PriceListPrice: (s, x, k) => ({ null: [s.get(x.variantId)?.sku], variant_id: numId(x.variantId), product_id: numId(s.get(x.variantId)?.productId), sku: s.get(x.variantId)?.sku })[k],
  MetafieldDefinition: (s, d, k) => ({ null: [d.name, d.key], key: d.key, namespace: d.namespace, name: d.name, type: d.typeName, id: numId(d.id) })[k],
};
// Sort keys as tuples (the sort value, then the numeric id): the list is ordered by them and cursors carry
// them, so a page after a cursor starts after that position even when its record has moved since.
const SORT = {
  ID: x => [numId(x.id)], CREATED_AT: x => [x.createdAt, numId(x.id)], UPDATED_AT: x => [x.updatedAt, numId(x.id)],
  TITLE: x => [String(x.title), numId(x.id)], NAME: x => [String(x.name), numId(x.id)], PROCESSED_AT: x => [x.processedAt, numId(x.id)],
  ORDER_NUMBER: x => [x.number, numId(x.id)], SKU: x => [String(x.sku), numId(x.id)], RELEVANCE: x => [numId(x.id)], POSITION: x => [x.position, numId(x.id)],
};

export function makeResolvers(shop, { bulk, stagedUploads, subscriptions }) {
  // filtered, sorted list → Relay connection (bulk operations read every page at once)
  const list = (type, items, args, ctx) => {
    let out = items;
    if (args.query) {
      const groups = parseSearch(args.query);
      try { out = out.filter(x => matches(x, groups, (item, key) => SEARCH[type](shop, item, key === null ? 'null' : key))); }
      catch (e) { throw new GraphQLishError(`${type} search "${args.query}": ${e.message}`, 'BAD_REQUEST'); }
    }
    const sortKey = args.sortKey || 'ID';
    if (!SORT[sortKey]) throw new GraphQLishError(`sortKey ${sortKey} is not supported by the emulator`, 'BAD_REQUEST');
    const tupleOf = SORT[sortKey];
    out = [...out].sort((a, b) => compareTuples(tupleOf(a), tupleOf(b)));
    return connection(out, args, { unlimited: !!ctx?.bulk, tupleOf });
  };
  const cur = o => o.currencyCode || shop.currency;
  const metafieldFns = {
    metafield: (r, a) => (r.metafields || []).find(m => m.namespace === (a.namespace || '$app') && m.key === a.key) || null,
    metafields: (r, a) => (r.metafields || []).filter(m => !a.namespace || m.namespace === a.namespace).filter(m => !a.keys || a.keys.includes(`${m.namespace}.${m.key}`)),
  };
  const taxLines = (x, currency) => x.taxLinesData.map(t => ({ __typename: 'TaxLine', title: t.title, rate: t.ratePpm / 1e6, ratePercentage: t.ratePpm / 1e4, priceSet: bag(t.cents, currency), source: 'Shopify', channelLiable: false }));
  const count = n => ({ count: n, precision: 'EXACT' });
  const lineOf = (li) => shop.get(li.orderId);

  const types = {
    Shop: { ...metafieldFns },
    Location: {
      ...metafieldFns,
      inventoryLevel: (l, a) => shop.level(a.inventoryItemId, l.id),
      inventoryLevels: (l, a, ctx) => list('Location', [...shop.levels.values()].filter(x => x.locationId === l.id), { ...a, query: undefined }, ctx),
    },
    Product: {
      ...metafieldFns,
      variants: (p, a, ctx) => connection(p.variantIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      variantsCount: p => count(p.variantIds.length),
      options: (p, a) => p.optionsData.slice(0, a.first ?? undefined).map((o, i) => ({ __typename: 'ProductOption', id: `gid://shopify/ProductOption/${numId(p.id)}${String(i + 1).padStart(2, '0')}`, name: o.name, position: o.position, values: o.values,
        optionValues: o.values.map((v, j) => ({ __typename: 'ProductOptionValue', id: `gid://shopify/ProductOptionValue/${numId(p.id)}${String(i + 1).padStart(2, '0')}${String(j + 1).padStart(2, '0')}`, name: v, hasVariants: p.variantIds.some(id => shop.get(id).selectedOptions.some(s => s.name === o.name && s.value === v)) })) })),
      collections: (p, a, ctx) => connection(p.collectionIds.map(id => shop.get(id)).filter(Boolean), a, { unlimited: !!ctx?.bulk }),
      hasOnlyDefaultVariant: p => p.variantIds.length === 1 && shop.get(p.variantIds[0]).title === 'Default Title',
      totalInventory: p => p.variantIds.reduce((s, id) => s + [...shop.levels.values()].filter(l => l.itemId === shop.get(id).inventoryItemId).reduce((t, l) => t + l.q.available, 0), 0),
      tracksInventory: p => p.variantIds.some(id => shop.get(shop.get(id).inventoryItemId).tracked),
      hasOutOfStockVariants: p => p.variantIds.some(id => [...shop.levels.values()].filter(l => l.itemId === shop.get(id).inventoryItemId).reduce((t, l) => t + l.q.available, 0) <= 0),
      description: p => String(p.descriptionHtml || '').replace(/<[^>]*>/g, ''),
      priceRangeV2: p => { const ps = p.variantIds.map(id => shop.get(id).priceCents); return { minVariantPrice: money(Math.min(...ps), shop.currency), maxVariantPrice: money(Math.max(...ps), shop.currency) }; },
      seo: p => ({ title: p.seoTitle ?? null, description: p.seoDescription ?? null }),
      onlineStoreUrl: p => (p.status === 'ACTIVE' ? `https://${shop.domain}/products/${p.handle}` : null),
      media: (p, a, ctx) => connection(p.mediaData.map((m, i) => ({ __typename: m.contentType === 'EXTERNAL_VIDEO' ? 'ExternalVideo' : 'MediaImage', id: `gid://shopify/MediaImage/${numId(p.id)}${String(i + 1).padStart(2, '0')}`,
        alt: m.alt, mediaContentType: m.contentType === 'EXTERNAL_VIDEO' ? 'EXTERNAL_VIDEO' : 'IMAGE', status: 'READY', fileStatus: 'READY', mediaErrors: [], mediaWarnings: [], fileErrors: [],
        originalSource: { url: m.originalSource }, image: { url: m.originalSource, altText: m.alt }, originUrl: m.originalSource, embedUrl: m.originalSource, createdAt: p.createdAt, updatedAt: p.updatedAt })), a, { unlimited: !!ctx?.bulk }),
      inCollection: (p, a) => p.collectionIds.includes(a.id),
      publishedOnPublication: p => p.status === 'ACTIVE',
      defaultCursor: p => Buffer.from(JSON.stringify({ id: p.id })).toString('base64url'),
    },
    ProductVariant: {
      ...metafieldFns,
      product: v => shop.get(v.productId),
      inventoryItem: v => shop.get(v.inventoryItemId),
      price: v => fmt(v.priceCents),
      compareAtPrice: v => (v.compareAtPriceCents == null ? null : fmt(v.compareAtPriceCents)),
      inventoryQuantity: v => [...shop.levels.values()].filter(l => l.itemId === v.inventoryItemId).reduce((t, l) => t + l.q.available, 0),
      displayName: v => `${shop.get(v.productId).title} - ${v.title}`,
      availableForSale: v => shop.get(v.productId).status === 'ACTIVE',
      selectedOptions: v => v.selectedOptions.map(s => ({ ...s, optionValue: { __typename: 'ProductOptionValue', id: `gid://shopify/ProductOptionValue/${numId(v.id)}`, name: s.value, hasVariants: true } })),
      requiresComponents: () => false, showUnitPrice: () => false, sellableOnlineQuantity: v => types.ProductVariant.inventoryQuantity(v),
      contextualPricing: (v, a) => {
        // a company location's catalog price list (fixed price, else the variant price)
        const locId = a.context?.companyLocationId;
        const cl = locId ? shop.get(locId, 'CompanyLocation') : null;
        const pl = cl && cl.catalogIds.map(id => shop.get(id)).map(c => c.priceListId && shop.get(c.priceListId)).find(Boolean);
        const f = pl && pl.fixed.get(v.id);
        const c = f ? f.priceCents : v.priceCents;
        return { price: money(c, pl?.currency || shop.currency), compareAtPrice: f?.compareAtCents != null ? money(f.compareAtCents, pl.currency) : null,
          quantityPriceBreaks: connection(pl ? pl.breaks.filter(b => b.variantId === v.id) : [], { first: 250 }), quantityRule: { minimum: 1, maximum: null, increment: 1, isDefault: true, originType: 'FIXED' } };
      },
    },
    InventoryItem: {
      variant: i => shop.get(i.variantId),
      unitCost: i => (i.unitCostCents == null ? null : money(i.unitCostCents, shop.currency)),
      inventoryLevel: (i, a) => shop.level(i.id, a.locationId),
      inventoryLevels: (i, a, ctx) => connection([...shop.levels.values()].filter(l => l.itemId === i.id), a, { unlimited: !!ctx?.bulk }),
      locationsCount: i => count([...shop.levels.values()].filter(l => l.itemId === i.id).length),
      measurement: () => ({ weight: { unit: 'KILOGRAMS', value: 0 } }),
      trackedEditable: () => ({ locked: false, reason: null }),
      variants: (i, a, ctx) => connection([shop.get(i.variantId)], a, { unlimited: !!ctx?.bulk }),
    },
    InventoryLevel: {
      item: l => shop.get(l.itemId),
      location: l => shop.get(l.locationId),
      quantities: (l, a) => a.names.map(n => {
        if (!(n in l.q)) throw new GraphQLishError(`InventoryLevel.quantities: '${n}' is not a quantity name (available, on_hand, committed, incoming, reserved, damaged, safety_stock, quality_control)`, 'BAD_REQUEST');
        return { __typename: 'InventoryQuantity', id: `${l.id}?name=${n}`, name: n, quantity: l.q[n], updatedAt: l.updatedAt };
      }),
    },
    InventoryAdjustmentGroup: { changes: (g, a) => g.changesData.filter(c => !a.inventoryItemIds || a.inventoryItemIds.includes(c.itemId)).filter(c => !a.locationIds || a.locationIds.includes(c.locationId)).filter(c => !a.quantityNames || a.quantityNames.includes(c.name)) },
    InventoryChange: { item: c => shop.get(c.itemId), location: c => shop.get(c.locationId) },
    Metafield: {
      jsonValue: m => { try { return JSON.parse(m.value); } catch { return m.value; } },
      owner: m => shop.get(m.ownerId), ownerType: m => OWNER_TYPES[shop.get(m.ownerId)?.__typename] || 'PRODUCT',
      definition: m => { const ot = types.Metafield.ownerType(m); return shop.metafieldDefinitions.find(d => d.ownerType === ot && d.namespace === m.namespace && d.key === m.key) || null; },
      compareDigest: m => Buffer.from(String(m.value)).toString('base64url'), sizeInBytes: m => Buffer.byteLength(String(m.value)),
    },
    MetafieldDefinition: {
      type: d => ({ name: d.typeName, category: 'TEXT', supportedValidations: [], supportsDefinitionMigrations: true }),
      validations: d => d.validations.map(v => ({ name: v.name, value: v.value, type: 'single_line_text_field' })),
      access: () => ({ admin: 'PUBLIC_READ_WRITE', storefront: 'NONE', customerAccount: 'NONE' }),
      capabilities: () => ({ adminFilterable: { enabled: false, eligible: true, status: 'NOT_FILTERABLE' }, smartCollectionCondition: { enabled: false, eligible: true }, uniqueValues: { enabled: false, eligible: true } }),
      metafieldsCount: d => shop.products.concat(shop.variants, shop.customers, shop.collections).reduce((s, o) => s + (o.metafields || []).filter(m => m.namespace === d.namespace && m.key === d.key).length, 0),
    },
    Collection: {
      ...metafieldFns,
      products: (c, a, ctx) => connection(c.productIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      productsCount: c => count(c.productIds.length),
      hasProduct: (c, a) => c.productIds.includes(a.id),
      description: c => String(c.descriptionHtml || '').replace(/<[^>]*>/g, ''),
      seo: () => ({ title: null, description: null }),
    },
    Customer: {
      ...metafieldFns,
      displayName: c => [c.firstName, c.lastName].filter(Boolean).join(' ') || c.email || c.phone || '',
      defaultEmailAddress: c => (c.email ? { emailAddress: c.email, marketingState: 'NOT_SUBSCRIBED', marketingOptInLevel: null, marketingUpdatedAt: null, validFormat: true, sourceLocation: null } : null),
      defaultPhoneNumber: c => (c.phone ? { phoneNumber: c.phone, marketingState: 'NOT_SUBSCRIBED', marketingOptInLevel: null, marketingUpdatedAt: null, marketingCollectedFrom: null } : null),
      defaultAddress: c => c.addresses[0] || null,
      addressesV2: (c, a, ctx) => connection(c.addresses, a, { unlimited: !!ctx?.bulk }),
      orders: (c, a, ctx) => list('Order', shop.orders.filter(o => o.customerId === c.id), a, ctx),
      numberOfOrders: c => String(shop.orders.filter(o => o.customerId === c.id).length),
      amountSpent: c => money(shop.orders.filter(o => o.customerId === c.id).reduce((s, o) => s + shop.netPaidCents(o), 0), shop.currency),
      companyContactProfiles: c => shop.companies.flatMap(co => co.contactIds.map(id => shop.get(id))).filter(ct => ct.customerId === c.id),
      lifetimeDuration: () => 'less than a day', canDelete: c => !shop.orders.some(o => o.customerId === c.id), dataSaleOptOut: () => false,
    },
    MailingAddress: { country: a => (a.countryCodeV2 === 'AU' ? 'Australia' : a.countryCodeV2), name: a => [a.firstName, a.lastName].filter(Boolean).join(' '), formatted: a => [a.address1, a.address2, [a.city, a.provinceCode, a.zip].filter(Boolean).join(' '), a.countryCodeV2].filter(Boolean), coordinatesValidated: () => false },
    Company: {
      ...metafieldFns,
      contacts: (c, a, ctx) => connection(c.contactIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      locations: (c, a, ctx) => connection(c.locationIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      mainContact: c => (c.mainContactId ? shop.get(c.mainContactId) : null),
      contactsCount: c => count(c.contactIds.length), locationsCount: c => count(c.locationIds.length),
      totalSpent: () => money(0, shop.currency), lifetimeDuration: () => 'less than a day', hasTimelineComment: () => false,
    },
    CompanyContact: { company: c => shop.get(c.companyId), customer: c => shop.get(c.customerId), isMainContact: c => shop.get(c.companyId).mainContactId === c.id, lifetimeDuration: () => 'less than a day' },
    CompanyLocation: {
      ...metafieldFns,
      company: l => shop.get(l.companyId),
      catalogs: (l, a, ctx) => connection(l.catalogIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      inCatalog: (l, a) => l.catalogIds.includes(a.catalogId), totalSpent: () => money(0, shop.currency),
      taxSettings: l => ({ taxExempt: l.taxExempt, taxExemptions: [], taxRegistrationId: l.taxRegistrationId }),
    },
    CompanyAddress: { companyName: a => a.companyName ?? a.recipient ?? '', id: a => a.id ?? 'gid://shopify/CompanyAddress/1', createdAt: () => new Date(0).toISOString(), updatedAt: () => new Date(0).toISOString(), formattedAddress: a => [a.address1, a.city, a.countryCode].filter(Boolean) },
    CompanyLocationCatalog: {
      companyLocations: (c, a, ctx) => connection(c.companyLocationIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      companyLocationsCount: c => count(c.companyLocationIds.length),
      priceList: c => (c.priceListId ? shop.get(c.priceListId) : null), publication: c => (c.publicationId ? shop.get(c.publicationId) : null), operations: () => [],
    },
    PriceList: {
      catalog: p => (p.catalogId ? shop.get(p.catalogId) : null),
      fixedPricesCount: p => p.fixed.size,
      // only fixed prices are stored (relative ones follow from the parent adjustment, not listed here)
      prices: (p, a, ctx) => list('PriceListPrice', a.originType === 'RELATIVE' ? [] : [...p.fixed.keys()].map(v => shop.priceListPrice(p, v)), a, ctx),
      quantityRules: (p, a, ctx) => connection([...p.quantityRules].map(([v, r]) => ({ __typename: 'QuantityRule', id: v, variantId: v, ...r, isDefault: false, originType: 'FIXED' })), a, { unlimited: !!ctx?.bulk }),
      parent: p => ({ ...p.parent, settings: { compareAtMode: 'ADJUSTED' } }),
    },
    PriceListPrice: {
      price: x => money(x.priceCents, shop.get(x.priceListId).currency),
      compareAtPrice: x => (x.compareAtCents == null ? null : money(x.compareAtCents, shop.get(x.priceListId).currency)),
      variant: x => shop.get(x.variantId),
      quantityPriceBreaks: (x, a, ctx) => connection(shop.get(x.priceListId).breaks.filter(b => b.variantId === x.variantId).sort((m, n) => m.minimumQuantity - n.minimumQuantity), a, { unlimited: !!ctx?.bulk }),
    },
    QuantityPriceBreak: { price: b => money(b.priceCents, shop.get(b.priceListId).currency), priceList: b => shop.get(b.priceListId), variant: b => shop.get(b.variantId) },
    QuantityRule: { productVariant: r => shop.get(r.variantId) },
    Order: {
      ...metafieldFns,
      customer: o => (o.customerId ? shop.get(o.customerId) : null),
      lineItems: (o, a, ctx) => connection(o.lineItemIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      fulfillmentOrders: (o, a, ctx) => connection(o.fulfillmentOrderIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      fulfillments: (o, a) => o.fulfillmentIds.map(id => shop.get(id)).slice(0, a.first ?? undefined),
      fulfillmentsCount: o => count(o.fulfillmentIds.length),
      refunds: (o, a) => o.refunds.map(id => shop.get(id)).slice(0, a.first ?? undefined),
      transactions: (o, a) => o.transactions.slice(0, a.first ?? undefined),
      shippingLine: o => o.shippingLineData || null,
      shippingLines: (o, a, ctx) => connection(o.shippingLineData ? [o.shippingLineData] : [], a, { unlimited: !!ctx?.bulk }),
      discountApplications: (o, a, ctx) => connection(o.discount ? [{ __typename: 'DiscountCodeApplication', id: o.id + '#discount', code: o.discount.code, index: 0, allocationMethod: o.discount.type === 'percentage' ? 'EACH' : 'ACROSS',
        targetSelection: 'ALL', targetType: 'LINE_ITEM', value: o.discount.type === 'percentage' ? { __typename: 'PricingPercentageValue', percentage: Number(o.discount.value) } : { __typename: 'MoneyV2', amount: o.discount.value, currencyCode: cur(o) } }] : [], a, { unlimited: !!ctx?.bulk }),
      discountCode: o => o.discountCodes[0] ?? null,
      taxLines: o => taxLines(o, cur(o)), currentTaxLines: o => taxLines(o, cur(o)),
      subtotalPriceSet: o => bag(o.subtotalCents, cur(o)), currentSubtotalPriceSet: o => bag(o.subtotalCents - refundedSub(o), cur(o)),
      totalPriceSet: o => bag(o.totalCents, cur(o)), currentTotalPriceSet: o => bag(o.totalCents - refundedTotal(o), cur(o)), originalTotalPriceSet: o => bag(o.totalCents, cur(o)),
      totalTaxSet: o => bag(o.totalTaxCents, cur(o)), currentTotalTaxSet: o => bag(o.totalTaxCents - refundedTax(o), cur(o)),
      totalDiscountsSet: o => bag(o.totalDiscountCents, cur(o)), currentTotalDiscountsSet: o => bag(o.totalDiscountCents, cur(o)), cartDiscountAmountSet: o => bag(0, cur(o)), currentCartDiscountAmountSet: o => bag(0, cur(o)),
      totalShippingPriceSet: o => bag(o.shippingCents, cur(o)), currentShippingPriceSet: o => bag(o.shippingCents, cur(o)),
      totalLineItemsPriceSet: o => bag(o.lineItemIds.reduce((s, id) => s + shop.get(id).totalCents, 0), cur(o)),
      totalRefundedSet: o => bag(refundedTotal(o), cur(o)), totalRefundedShippingSet: o => bag(o.shippingRefunded ? o.shippingCents : 0, cur(o)),
      totalReceivedSet: o => bag(o.transactions.filter(t => t.kind === 'SALE' || t.kind === 'CAPTURE').reduce((s, t) => s + t.amountCents, 0), cur(o)),
      netPaymentSet: o => bag(shop.netPaidCents(o), cur(o)), totalOutstandingSet: o => bag(Math.max(0, o.totalCents - refundedTotal(o) - shop.netPaidCents(o)), cur(o)),
      totalCapturableSet: o => bag(o.financial === 'authorized' ? o.totalCents : 0, cur(o)), refundDiscrepancySet: o => bag(0, cur(o)), totalTipReceivedSet: o => bag(0, cur(o)),
      displayFinancialStatus: o => o.financial.toUpperCase(), displayFulfillmentStatus: o => shop.fulfillmentStatus(o),
      currentSubtotalLineItemsQuantity: o => o.lineItemIds.reduce((s, id) => s + shop.get(id).quantity - shop.get(id).refundedQty, 0),
      subtotalLineItemsQuantity: o => o.lineItemIds.reduce((s, id) => s + shop.get(id).quantity, 0),
      fullyPaid: o => shop.netPaidCents(o) >= o.totalCents, unpaid: o => shop.netPaidCents(o) === 0 && !o.refunds.length,
      paymentGatewayNames: o => (o.transactions.length ? ['manual'] : []), requiresShipping: () => true, fulfillable: o => o.fulfillmentOrderIds.some(id => ['OPEN', 'IN_PROGRESS'].includes(shop.get(id).status)),
      refundable: o => shop.netPaidCents(o) > 0, restockable: () => true, capturable: o => o.financial === 'authorized', canMarkAsPaid: o => o.financial === 'pending',
      cancellation: o => (o.cancelledAt ? { staffNote: null } : null), currentTotalWeight: () => '0', totalWeight: () => '0', customerAcceptsMarketing: () => false,
      estimatedTaxes: () => false, edited: () => false, dutiesIncluded: () => false, productNetwork: () => false, merchantEditable: o => !o.cancelledAt, merchantEditableErrors: () => [],
      returnStatus: () => 'NO_RETURN', statusPageUrl: o => `https://${shop.domain}/orders/${o.legacyResourceId}`, displayAddress: o => o.shippingAddress || o.billingAddress,
      billingAddressMatchesShippingAddress: o => JSON.stringify(shop.addressRest(o.billingAddress)) === JSON.stringify(shop.addressRest(o.shippingAddress)),
      canNotifyCustomer: o => !!o.email, hasTimelineComment: () => false, currencyCode: o => o.currencyCode, presentmentCurrencyCode: o => o.currencyCode,
    },
    LineItem: {
      variant: l => shop.get(l.variantId), product: l => shop.get(l.productId),
      originalUnitPriceSet: l => bag(l.unitCents, cur(lineOf(l))), originalTotalSet: l => bag(l.totalCents, cur(lineOf(l))),
      discountedUnitPriceSet: l => bag(l.unitCents - Math.floor(l.discountCents / l.quantity), cur(lineOf(l))),
      discountedUnitPriceAfterAllDiscountsSet: l => bag(l.unitCents - Math.floor(l.discountCents / l.quantity), cur(lineOf(l))),
      discountedTotalSet: l => bag(l.totalCents - l.discountCents, cur(lineOf(l))), totalDiscountSet: l => bag(l.discountCents, cur(lineOf(l))),
      priceAfterAllDiscountsBeforeTaxesSet: l => bag(l.totalCents - l.discountCents, cur(lineOf(l))),
      unfulfilledDiscountedTotalSet: l => bag(Math.round(((l.totalCents - l.discountCents) * (l.quantity - l.fulfilledQty)) / l.quantity), cur(lineOf(l))),
      unfulfilledOriginalTotalSet: l => bag(l.unitCents * (l.quantity - l.fulfilledQty), cur(lineOf(l))),
      taxLines: (l, a) => taxLines(l, cur(lineOf(l))).slice(0, a.first ?? undefined),
      discountAllocations: l => (l.discountCents ? [{ allocatedAmountSet: bag(l.discountCents, cur(lineOf(l))), discountApplication: types.Order.discountApplications(lineOf(l), { first: 1 }).nodes[0] }] : []),
      currentQuantity: l => l.quantity - l.refundedQty, refundableQuantity: l => l.quantity - l.refundedQty, unfulfilledQuantity: l => l.quantity - l.fulfilledQty - l.refundedQty,
      nonFulfillableQuantity: l => l.refundedQty, fulfillableQuantity: l => l.quantity - l.fulfilledQty - l.refundedQty, isGiftCard: () => false, restockable: () => true, merchantEditable: () => true, duties: () => [], customAttributes: () => [],
    },
    ShippingLine: {
      originalPriceSet: s => bag(s.priceCents, shop.currency), discountedPriceSet: s => bag(s.priceCents, shop.currency), currentDiscountedPriceSet: s => bag(s.priceCents, shop.currency),
      taxLines: s => taxLines(s, shop.currency), discountAllocations: () => [],
    },
    OrderTransaction: {
      amountSet: t => bag(t.amountCents, shop.currency), order: t => shop.get(t.orderId), parentTransaction: t => (t.parentId ? shop.get(t.parentId) : null),
      formattedGateway: () => 'Manual', manuallyCapturable: t => t.kind === 'AUTHORIZATION', multiCapturable: () => false, fees: () => [],
    },
    Refund: {
      order: r => shop.get(r.orderId), totalRefundedSet: r => bag(r.totalRefundedCents, shop.currency),
      refundLineItems: (r, a, ctx) => connection(r.refundLineItemIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      refundShippingLines: (r, a, ctx) => connection(r.shippingCents ? [{ __typename: 'RefundShippingLine', id: r.id + '#shipping', shippingLine: shop.get(r.orderId).shippingLineData, subtotalAmountSet: bag(r.shippingCents, shop.currency), taxAmountSet: bag(r.shippingTaxCents, shop.currency) }] : [], a, { unlimited: !!ctx?.bulk }),
      transactions: (r, a, ctx) => connection(r.transactionIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      orderAdjustments: (r, a, ctx) => connection([], a, { unlimited: !!ctx?.bulk }),
    },
    RefundLineItem: { lineItem: x => shop.get(x.lineItemId), priceSet: x => bag(x.priceCents, shop.currency), subtotalSet: x => bag(x.subtotalCents, shop.currency), totalTaxSet: x => bag(x.taxCents, shop.currency) },
    FulfillmentOrder: {
      order: fo => shop.get(fo.orderId), orderId: fo => fo.orderId, orderName: fo => shop.get(fo.orderId).name, orderProcessedAt: fo => shop.get(fo.orderId).processedAt,
      assignedLocation: fo => { const l = shop.get(fo.locationId); return { name: l.name, location: l, countryCode: l.address.countryCode, city: l.address.city, address1: l.address.address1, zip: l.address.zip, province: l.address.provinceCode }; },
      lineItems: (fo, a, ctx) => connection(fo.lineItemIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      fulfillments: (fo, a, ctx) => connection(fo.fulfillmentIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      supportedActions: fo => (['OPEN', 'IN_PROGRESS'].includes(fo.status) ? [{ action: 'CREATE_FULFILLMENT', externalUrl: null }] : []),
      destination: fo => { const a = shop.get(fo.orderId).shippingAddress; return a ? { ...a, countryCode: a.countryCodeV2, province: a.provinceCode, email: shop.get(fo.orderId).email } : null; },
      fulfillmentHolds: () => [],
    },
    FulfillmentOrderLineItem: {
      lineItem: x => shop.get(x.lineItemId), sku: x => shop.get(x.lineItemId).sku, variant: x => shop.get(shop.get(x.lineItemId).variantId),
      inventoryItemId: x => shop.get(shop.get(shop.get(x.lineItemId).variantId)?.inventoryItemId)?.id ?? null,
      productTitle: x => shop.get(x.lineItemId).title, variantTitle: x => shop.get(x.lineItemId).variantTitle, vendor: x => shop.get(x.lineItemId).vendor,
      requiresShipping: () => true, warnings: () => [], financialSummaries: () => [],
    },
    Fulfillment: {
      order: f => shop.get(f.orderId), location: f => shop.get(f.locationId),
      trackingInfo: (f, a) => f.tracking.slice(0, a.first ?? undefined),
      fulfillmentLineItems: (f, a, ctx) => connection(f.lineData, a, { unlimited: !!ctx?.bulk }),
      fulfillmentOrders: (f, a, ctx) => connection(f.fulfillmentOrderIds.map(id => shop.get(id)), a, { unlimited: !!ctx?.bulk }),
      totalQuantity: f => f.lineData.reduce((s, x) => s + x.quantity, 0), events: (f, a) => connection([], a),
    },
    FulfillmentLineItem: {
      lineItem: x => shop.get(x.lineItemId),
      originalTotalSet: x => { const l = shop.get(x.lineItemId); return bag(l.unitCents * x.quantity, shop.currency); },
      discountedTotalSet: x => { const l = shop.get(x.lineItemId); return bag(Math.round(((l.totalCents - l.discountCents) * x.quantity) / l.quantity), shop.currency); },
    },
    ProductSetOperation: { product: o => (o.productId ? shop.get(o.productId) : null) },
    WebhookSubscription: { apiVersion: () => ({ handle: '2026-10', displayName: '2026-10', supported: true }) },
  };
  const refundedOf = (o, f) => o.refunds.map(id => shop.get(id)).reduce((s, r) => s + f(r), 0);
  const refundedSub = o => refundedOf(o, r => r.refundLineItemIds.reduce((s, id) => s + shop.get(id).subtotalCents, 0));
  const refundedTax = o => refundedOf(o, r => r.refundLineItemIds.reduce((s, id) => s + shop.get(id).taxCents, 0) + r.shippingTaxCents);
  const refundedTotal = o => refundedOf(o, r => r.totalRefundedCents);

  const Query = {
    shop: () => shop.shop,
    node: (_, a) => shop.get(a.id),
    nodes: (_, a) => a.ids.map(id => shop.get(id)),
    location: (_, a) => (a.id ? shop.get(a.id, 'Location') : shop.mainLocation()),
    locations: (_, a, ctx) => list('Location', shop.locations, a, ctx),
    product: (_, a) => shop.get(a.id, 'Product'),
    productByIdentifier: (_, a) => (a.identifier.id ? shop.get(a.identifier.id, 'Product') : a.identifier.handle ? shop.productByHandle(a.identifier.handle) : null),
    productByHandle: (_, a) => shop.productByHandle(a.handle),
    products: (_, a, ctx) => list('Product', shop.products, a, ctx),
    productOperation: (_, a) => shop.get(a.id, 'ProductSetOperation'),
    productVariant: (_, a) => shop.get(a.id, 'ProductVariant'),
    productVariants: (_, a, ctx) => list('ProductVariant', shop.variants, a, ctx),
    productsCount: (_, a) => count(a.query ? list('Product', shop.products, { first: 250, query: a.query }).nodes.length : shop.products.length),
    inventoryItem: (_, a) => shop.get(a.id, 'InventoryItem'),
    inventoryLevel: (_, a) => shop.get(a.id, 'InventoryLevel'),
    customer: (_, a) => shop.get(a.id, 'Customer'),
    customers: (_, a, ctx) => list('Customer', shop.customers, a, ctx),
    customerByIdentifier: (_, a) => {
      const i = a.identifier;
      if (i.id) return shop.get(i.id, 'Customer');
      if (i.emailAddress) return shop.customerByEmail(i.emailAddress);
      if (i.phoneNumber) return shop.customers.find(c => c.phone === i.phoneNumber) || null;
      throw new GraphQLishError('customerByIdentifier: customId is not supported by the emulator', 'BAD_REQUEST');
    },
    order: (_, a) => shop.get(a.id, 'Order'),
    orders: (_, a, ctx) => list('Order', shop.orders, a, ctx),
    fulfillmentOrder: (_, a) => shop.get(a.id, 'FulfillmentOrder'),
    fulfillment: (_, a) => shop.get(a.id, 'Fulfillment'),
    collection: (_, a) => shop.get(a.id, 'Collection'),
    collectionByIdentifier: (_, a) => (a.identifier.id ? shop.get(a.identifier.id, 'Collection') : shop.collections.find(c => c.handle === a.identifier.handle) || null),
    collections: (_, a, ctx) => list('Collection', shop.collections, a, ctx),
    company: (_, a) => shop.get(a.id, 'Company'),
    companies: (_, a, ctx) => list('Company', shop.companies, a, ctx),
    companyLocation: (_, a) => shop.get(a.id, 'CompanyLocation'),
    catalog: (_, a) => shop.get(a.id),
    catalogs: (_, a, ctx) => list('Catalog', shop.catalogs.filter(c => !a.type || a.type === 'COMPANY_LOCATION'), a, ctx),
    priceList: (_, a) => shop.get(a.id, 'PriceList'),
    priceLists: (_, a, ctx) => list('Catalog', shop.priceLists, { ...a, sortKey: a.sortKey === 'NAME' ? 'NAME' : 'ID' }, ctx),
    metafieldDefinitions: (_, a, ctx) => list('MetafieldDefinition', shop.metafieldDefinitions.filter(d => d.ownerType === a.ownerType && (!a.namespace || d.namespace === a.namespace) && (!a.key || d.key === a.key)), { ...a, sortKey: 'ID' }, ctx),
    metafieldDefinition: (_, a) => (a.id ? shop.get(a.id) : shop.metafieldDefinitions.find(d => a.identifier && d.ownerType === a.identifier.ownerType && d.namespace === a.identifier.namespace && d.key === a.identifier.key) || null),
    publications: (_, a, ctx) => connection(shop.publications, a, { unlimited: !!ctx?.bulk }),
    // newest first by default (as documented); reverse: oldest first
    bulkOperations: (_, a, ctx) => {
      const tupleOf = a.sortKey === 'COMPLETED_AT' ? x => [String(x.completedAt), numId(x.id)] : x => [x.createdAt, numId(x.id)];
      let items = shop.bulkOperations;
      if (a.query) { const g = parseSearch(a.query); items = items.filter(x => matches(x, g, (b, k) => SEARCH.BulkOperation(shop, b, k === null ? 'null' : k))); }
      const newestFirst = [...items].sort((x, y) => compareTuples(tupleOf(y), tupleOf(x)));
      return connection(newestFirst, a, { unlimited: !!ctx?.bulk, tupleOf, descending: true });
    },
    currentBulkOperation: (_, a) => [...shop.bulkOperations].reverse().find(b => b.type === (a.type || 'QUERY')) || null,
    bulkOperation: (_, a) => shop.get(a.id, 'BulkOperation'),
    webhookSubscriptions: (_, a, ctx) => connection(shop.webhookSubscriptions.filter(w => !a.topics || a.topics.includes(w.topic)), a, { unlimited: !!ctx?.bulk }),
    webhookSubscription: (_, a) => shop.get(a.id, 'WebhookSubscription'),
  };

  const Mutation = {
    productSet: (_, a) => {
      const r = shop.productSet(a);
      if (a.synchronous !== false) return r;
      // synchronous: false answers a ProductSetOperation (read back with productOperation); the work is done
      // at once here, so it is COMPLETE, its userErrors those of the run
      const op = shop.add('ProductSetOperation', { status: 'COMPLETE', productId: r.product?.id ?? null, userErrors: r.userErrors });
      return { product: null, productSetOperation: op, userErrors: [] };
    },
    productUpdate: (_, a) => shop.productUpdate(a),
    inventorySetQuantities: (_, a) => shop.inventorySetQuantities(a),
    inventoryActivate: (_, a) => shop.inventoryActivate(a),
    collectionCreate: (_, a) => shop.collectionCreate(a),
    metafieldDefinitionCreate: (_, a) => shop.metafieldDefinitionCreate(a),
    customerSet: (_, a) => shop.customerSet(a),
    customerCreate: (_, a) => {
      if (a.input.email && shop.customerByEmail(a.input.email)) return { customer: null, userErrors: [{ field: ['email'], message: 'Email has already been taken' }] };
      const r = shop.customerSet({ identifier: null, input: a.input });
      return { customer: r.customer, userErrors: r.userErrors.map(({ field, message }) => ({ field, message })) };
    },
    customerUpdate: (_, a) => {
      if (!shop.get(a.input.id, 'Customer')) return { customer: null, userErrors: [{ field: ['id'], message: 'Customer does not exist' }] };
      const { id, ...input } = a.input;
      const r = shop.customerSet({ identifier: { id }, input });
      return { customer: r.customer, userErrors: r.userErrors.map(({ field, message }) => ({ field, message })) };
    },
    companyCreate: (_, a) => shop.companyCreate(a),
    companyAssignCustomerAsContact: (_, a) => shop.companyAssignCustomerAsContact(a),
    catalogCreate: (_, a) => shop.catalogCreate(a),
    priceListCreate: (_, a) => shop.priceListCreate(a),
    priceListFixedPricesAdd: (_, a) => shop.priceListFixedPricesAdd(a),
    priceListFixedPricesUpdate: (_, a) => shop.priceListFixedPricesUpdate(a),
    quantityPricingByVariantUpdate: (_, a) => shop.quantityPricingByVariantUpdate(a),
    fulfillmentCreate: (_, a) => shop.fulfillmentCreate(a),
    bulkOperationRunQuery: (_, a, ctx) => bulk.runQuery(a, ctx),
    bulkOperationRunMutation: (_, a, ctx) => bulk.runMutation(a, ctx),
    bulkOperationCancel: (_, a) => {
      const b = shop.get(a.id, 'BulkOperation');
      if (!b) return { bulkOperation: null, userErrors: [{ field: ['id'], message: 'Bulk operation does not exist' }] };
      if (!['CREATED', 'RUNNING'].includes(b.status)) return { bulkOperation: b, userErrors: [{ field: null, message: `A bulk operation cannot be canceled when it is ${b.status.toLowerCase()}` }] };
      b.status = 'CANCELED'; b.completedAt = new Date().toISOString();
      return { bulkOperation: b, userErrors: [] };
    },
    metafieldsSet: (_, a) => shop.metafieldsSet(a),
    tagsAdd: (_, a) => shop.tags(a.id, a.tags, true),
    tagsRemove: (_, a) => shop.tags(a.id, a.tags, false),
    catalogContextUpdate: (_, a) => shop.catalogContextUpdate(a),
    stagedUploadsCreate: (_, a) => stagedUploads.create(a),
    webhookSubscriptionCreate: (_, a) => subscriptions.create(a),
    webhookSubscriptionDelete: (_, a) => subscriptions.remove(a),
  };
  return { Query, Mutation, types };
}
