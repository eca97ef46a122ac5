// Ferry's test peer: a minimal Vendure 3.x server in plain JS (no TypeScript build step).
// Copied into DIR and started by scripts/peers/vendure/up.sh; see that script for the environment
// (DATABASE_URL set: PostgreSQL instead of sql.js).
//
// What it adds to a stock Vendure:
// - custom fields the Ferry connector writes (see docs/connectors/vendure.md for the mapping);
// - FerryWebhookPlugin: EventBus events -> signed HTTP POST to WEBHOOK_URL
//   (X-Ferry-Signature: sha256=<hex HMAC-SHA256(raw body, WEBHOOK_SECRET)>, X-Ferry-Timestamp: unix s,
//   X-Ferry-Delivery: a UUID per event); order state, refund and modification events name the order to re-read;
// - the promotion action `ferry_variant_fixed_price` used for group / customer prices;
// - the test payment handler settles refunds at once (Vendure's dummy leaves them Pending).
const path = require('path');
const http = require('http');
const https = require('https');
const crypto = require('crypto');
const {
  bootstrap, DefaultJobQueuePlugin, DefaultSearchPlugin, dummyPaymentHandler,
  VendurePlugin, PluginCommonModule, EventBus, OrderStateTransitionEvent,
  ProductVariantEvent, ProductEvent, StockMovementEvent, CustomerEvent, CustomerGroupChangeEvent,
  PromotionItemAction, defaultPromotionActions, LanguageCode, FulfillmentHandler, manualFulfillmentHandler,
  PaymentMethodHandler, RefundEvent, RefundStateTransitionEvent, OrderEvent,
} = require('@vendure/core');

// ---- webhooks ---------------------------------------------------------------------------------
// Vendure has no built-in webhooks: this in-process bridge turns EventBus events into signed POSTs.
// Deliveries are fire-and-forget (Ferry treats webhooks as signals and reconciles on a schedule).
class FerryWebhookPlugin {
  constructor(eventBus) { this.eventBus = eventBus; }
  onApplicationBootstrap() {
    const url = process.env.WEBHOOK_URL;
    if (!url) return;
    const secret = process.env.WEBHOOK_SECRET || '';
    const u = new URL(url);
    const client = u.protocol === 'https:' ? https : http;
    const send = (type, body) => {
      const data = JSON.stringify({ type, at: new Date().toISOString(), ...body });
      const delivery = crypto.randomUUID();
      const signature = 'sha256=' + crypto.createHmac('sha256', secret).update(data).digest('hex');
      const req = client.request({
        hostname: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST',
        headers: {
          'content-type': 'application/json', 'content-length': Buffer.byteLength(data),
          'x-ferry-signature': signature, 'x-ferry-timestamp': String(Math.floor(Date.now() / 1000)),
          'x-ferry-event': type,
          // One id per event: a delivery repeated by a retrying proxy or queue is acknowledged by Ferry
          // without a second job (within [server] webhook_dedup_window_seconds).
          'x-ferry-delivery': delivery,
        },
        timeout: 5000,
      });
      req.on('error', e => console.error('[webhook] ' + type + ': ' + e.message));
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('response', res => res.resume());
      req.end(data);
    };
    this.eventBus.ofType(OrderStateTransitionEvent).subscribe(e =>
      send('order.state', { id: e.order.id, code: e.order.code, from: e.fromState, to: e.toState }));
    // Refunds and order modifications do not move the order's updatedAt in Vendure 3.7, so an incremental
    // read cannot see them: these events name the order for a re-read.
    this.eventBus.ofType(RefundEvent).subscribe(e =>
      send('order.refund', { id: e.order.id, code: e.order.code, refundId: e.refund.id, state: e.refund.state }));
    this.eventBus.ofType(RefundStateTransitionEvent).subscribe(e =>
      send('order.refund', { id: e.order.id, code: e.order.code, refundId: e.refund.id, from: e.fromState, to: e.toState }));
    this.eventBus.ofType(OrderEvent).subscribe(e => {
      if (e.type === 'updated') send('order.updated', { id: e.order.id, code: e.order.code });
    });
    this.eventBus.ofType(ProductVariantEvent).subscribe(e =>
      send('variant.' + e.type, { ids: e.entity.map(v => v.id), skus: e.entity.map(v => v.sku) }));
    this.eventBus.ofType(ProductEvent).subscribe(e =>
      send('product.' + e.type, { id: e.entity.id, group: e.entity.customFields && e.entity.customFields.ferryGroup }));
    this.eventBus.ofType(StockMovementEvent).subscribe(e => send('stock.movement', {
      movements: e.stockMovements.map(m => ({
        type: m.type, qty: m.quantity,
        variantId: m.productVariant && m.productVariant.id, sku: m.productVariant && m.productVariant.sku,
      })) }));
    this.eventBus.ofType(CustomerEvent).subscribe(e =>
      send('customer.' + e.type, { id: e.entity.id, email: e.entity.emailAddress }));
    this.eventBus.ofType(CustomerGroupChangeEvent).subscribe(e =>
      send('customer_group.' + e.type, { group: e.customGroup && e.customGroup.name, ids: e.customers.map(c => c.id) }));
  }
}
Reflect.defineMetadata('design:paramtypes', [EventBus], FerryWebhookPlugin);
VendurePlugin({ imports: [PluginCommonModule], compatibility: '^3.0.0' })(FerryWebhookPlugin);

// ---- group prices -----------------------------------------------------------------------------
// Vendure has no customer-group price lists. Its native tool for "this group pays less" is a
// promotion with the built-in `customer_group` condition. The built-in actions only take percentages
// (not exact to the cent), so this action takes the target unit price itself (integer minor units, in
// the channel's tax mode) and discounts each unit of that variant down to it (never up).
const ferryVariantFixedPrice = new PromotionItemAction({
  code: 'ferry_variant_fixed_price',
  description: [{ languageCode: LanguageCode.en, value: 'Ferry price list: variant { variantId } costs { price }' }],
  args: {
    variantId: { type: 'ID', ui: { component: 'product-selector-form-input' } },
    price: { type: 'int', ui: { component: 'currency-form-input' } },
  },
  execute(ctx, orderLine, args) {
    if (String(orderLine.productVariant.id) !== String(args.variantId)) return 0;
    const unit = ctx.channel.pricesIncludeTax ? orderLine.unitPriceWithTax : orderLine.unitPrice;
    return -Math.max(0, unit - args.price); // per unit
  },
});

// ---- fulfilments ------------------------------------------------------------------------------
// Vendure's manual handler with two more arguments: the ERP's shipment number and tracking URL are
// stored on the Fulfillment in the same insert (Vendure has no mutation to edit a fulfilment later),
// so a retried shipment write can always recognise the fulfilment it already created.
const ferryFulfillmentHandler = new FulfillmentHandler({
  code: 'ferry-fulfillment',
  description: [{ languageCode: LanguageCode.en, value: 'Shipment from the ERP (via Ferry)' }],
  args: {
    method: { type: 'string', required: false },
    trackingCode: { type: 'string', required: false },
    shipmentNumber: { type: 'string', required: false },
    trackingUrl: { type: 'string', required: false },
  },
  createFulfillment: (ctx, orders, lines, args) => ({
    method: args.method || '',
    trackingCode: args.trackingCode || '',
    customFields: { ferryShipmentNumber: args.shipmentNumber || null, trackingUrl: args.trackingUrl || null },
  }),
});

// ---- payments ---------------------------------------------------------------------------------
// Vendure's dummy handler (code `dummy-payment-handler`, which up.sh's `test-pay` method names) with
// refunds: the dummy has no createRefund, so its refunds stay Pending until settled by hand. A provider
// that refunds at once settles them, as this one does.
const testPaymentHandler = new PaymentMethodHandler({
  code: dummyPaymentHandler.code,
  description: dummyPaymentHandler.description,
  args: dummyPaymentHandler.args,
  // the dummy's own functions (its methods of the same name take Vendure's raw argument list)
  createPayment: dummyPaymentHandler.createPaymentFn,
  settlePayment: dummyPaymentHandler.settlePaymentFn,
  cancelPayment: dummyPaymentHandler.cancelPaymentFn,
  createRefund: (ctx, input, amount, order, payment) => ({
    state: 'Settled',
    transactionId: 'refund-' + payment.id + '-' + Date.now().toString(36),
    metadata: { amount },
  }),
});

// ---- server -----------------------------------------------------------------------------------
const port = +(process.env.PORT || 3000);
const t0 = Date.now();
const str = (name, extra) => ({ name, type: 'string', nullable: true, public: true, ...extra });
bootstrap({
  apiOptions: { hostname: '127.0.0.1', port, adminApiPath: 'admin-api', shopApiPath: 'shop-api' },
  authOptions: {
    tokenMethod: ['bearer', 'cookie'],
    cookieOptions: { secret: 'ferry-peer-cookie-secret' },
    superadminCredentials: {
      identifier: process.env.VENDURE_SUPERADMIN || 'superadmin',
      password: process.env.VENDURE_SUPERADMIN_PASSWORD || 'superadmin',
    },
    requireVerification: false,
  },
  // sql.js by default; PostgreSQL (npm `pg`, installed by up.sh) when DATABASE_URL is set. Either way
  // TypeORM synchronizes the schema at start (a test peer, no migrations).
  dbConnectionOptions: process.env.DATABASE_URL
    ? { type: 'postgres', url: process.env.DATABASE_URL, synchronize: true, logging: false }
    : { type: 'sqljs', synchronize: true, autoSave: true, logging: false,
        location: process.env.DB_FILE || path.join(__dirname, 'vendure.sqlite') },
  paymentOptions: { paymentMethodHandlers: [testPaymentHandler] },
  shippingOptions: { fulfillmentHandlers: [manualFulfillmentHandler, ferryFulfillmentHandler] },
  promotionOptions: { promotionActions: [...defaultPromotionActions, ferryVariantFixedPrice] },
  customFields: {
    Product: [
      // The canonical `group` (parent / template code): how the connector finds the product again.
      str('ferryGroup', { unique: false }),
      str('brand'),
      { name: 'imageUrls', type: 'string', list: true, nullable: true, public: true },
      { name: 'documentUrls', type: 'string', list: true, nullable: true, public: true },
      { name: 'videoUrls', type: 'string', list: true, nullable: true, public: true },
      { name: 'shortDescription', type: 'text', nullable: true, public: true },
    ],
    ProductVariant: [
      str('barcode'),
      { name: 'weightGrams', type: 'int', nullable: true, public: true },
    ],
    Customer: [
      // The ERP's customer code, read back onto orders as customer.code.
      str('ferryCode'),
      str('taxId'),
      str('company'),
    ],
    Address: [
      // The ERP's address id, so a re-sync updates the same address instead of adding a copy.
      str('ferryKey'),
    ],
    Order: [
      // ";SH-1;SH-2;": ERP shipment numbers written to this order, searchable with `contains` (Vendure
      // has no list query of fulfilments), so find_by_key can go from a shipment number to the order.
      { name: 'ferryShipments', type: 'text', nullable: true, public: false },
    ],
    Fulfillment: [
      // The ERP's shipment number: how `find_by_key` recognises a fulfilment it already created.
      str('ferryShipmentNumber'),
      str('trackingUrl'),
    ],
  },
  plugins: [
    DefaultJobQueuePlugin.init({ useDatabaseForBuffer: true }),
    DefaultSearchPlugin.init({ bufferUpdates: false, indexStockStatus: true }),
    FerryWebhookPlugin,
  ],
}).then(() => console.log(`[ferry-vendure] Vendure up on http://127.0.0.1:${port} (${process.env.DATABASE_URL ? 'postgres' : 'sql.js'}) in ${Date.now() - t0} ms`))
  .catch(err => { console.error(err); process.exit(1); });
