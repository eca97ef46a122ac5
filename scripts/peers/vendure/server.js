// Ferry's test peer: a minimal Vendure 3.x server in plain JS (no TypeScript build step).
// Copied into DIR and started by scripts/peers/vendure/up.sh; see that script for the environment
// (DATABASE_URL set: PostgreSQL instead of sql.js).
//
// What it adds to a stock Vendure:
// - Ferry's plugin, `@ferry/vendure-plugin` (integrations/vendure-plugin), installed by up.sh from the
//   tarball `npm pack` builds from the repo, exactly as a shop installs it: signed webhooks to WEBHOOK_URL,
//   the promotion action `ferry_variant_fixed_price`, the `ferry-fulfillment` handler and the custom fields
//   the connector uses;
// - the test payment handler settles refunds at once (Vendure's dummy leaves them Pending).
const path = require('path');
const {
  bootstrap, DefaultJobQueuePlugin, DefaultSearchPlugin, dummyPaymentHandler, manualFulfillmentHandler,
  PaymentMethodHandler,
} = require('@vendure/core');
const { FerryPlugin } = require('@ferry/vendure-plugin');

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
  // The plugin adds `ferry-fulfillment` beside these (and its promotion action beside Vendure's own).
  shippingOptions: { fulfillmentHandlers: [manualFulfillmentHandler] },
  plugins: [
    DefaultJobQueuePlugin.init({ useDatabaseForBuffer: true }),
    DefaultSearchPlugin.init({ bufferUpdates: false, indexStockStatus: true }),
    FerryPlugin.init({
      webhookUrl: process.env.WEBHOOK_URL || undefined,
      secret: process.env.WEBHOOK_SECRET || '',
      // Tests open the webhook port only now and then: retry quickly and not for long, so a test listening
      // sees a failed delivery come again within seconds, and others' old events stop soon.
      retry: { initialDelayMs: 250, maxDelayMs: 2000, giveUpAfterMs: 1000 * +(process.env.WEBHOOK_RETRY_SECONDS || 20) },
    }),
  ],
}).then(() => console.log(`[ferry-vendure] Vendure up on http://127.0.0.1:${port} (${process.env.DATABASE_URL ? 'postgres' : 'sql.js'}) in ${Date.now() - t0} ms`))
  .catch(err => { console.error(err); process.exit(1); });
