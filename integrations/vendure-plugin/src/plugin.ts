import { EventBus, Logger, PluginCommonModule, RuntimeVendureConfig, VendurePlugin } from '@vendure/core';
import { addCustomFields, ferryCustomFields } from './custom-fields';
import { DeliveryQueue } from './delivery';
import { EVENT_TYPES, selects, subscribe } from './events';
import { ferryVariantFixedPrice } from './fixed-price-action';
import { ferryFulfillmentHandler } from './fulfillment-handler';
import { FerryPluginOptions, ResolvedOptions, resolveOptions } from './options';

const loggerCtx = 'FerryPlugin';

/**
 * Ferry's shop-side pieces for Vendure 3.x:
 * - signed webhooks (`X-Ferry-Signature`, `X-Ferry-Delivery`) for order, refund, cancellation, product,
 *   variant, stock, customer and customer-group events, queued and retried off the request path;
 * - the promotion action `ferry_variant_fixed_price` (B2B price lists, exact to the cent);
 * - the fulfilment handler `ferry-fulfillment` (shipment number and tracking URL from the ERP);
 * - the custom fields the connector reads and writes.
 *
 * ```ts
 * plugins: [FerryPlugin.init({ webhookUrl: 'https://ferry.example.com/hooks/shop', secret: process.env.FERRY_WEBHOOK_SECRET })]
 * ```
 */
@VendurePlugin({
    imports: [PluginCommonModule],
    compatibility: '^3.0.0',
    configuration: config => FerryPlugin.configure(config),
})
export class FerryPlugin {
    static options: ResolvedOptions = resolveOptions({});
    private queue: DeliveryQueue | undefined;
    private subscriptions: { unsubscribe(): void }[] = [];

    constructor(private readonly eventBus: EventBus) {}

    static init(options: FerryPluginOptions): typeof FerryPlugin {
        FerryPlugin.options = resolveOptions(options);
        return FerryPlugin;
    }

    /** Declares the promotion action, the fulfilment handler and the custom fields (Vendure calls it at bootstrap). */
    static configure(config: RuntimeVendureConfig): RuntimeVendureConfig {
        const actions = config.promotionOptions.promotionActions ?? (config.promotionOptions.promotionActions = []);
        if (!actions.some(a => a.code === ferryVariantFixedPrice.code)) actions.push(ferryVariantFixedPrice);
        const handlers = config.shippingOptions.fulfillmentHandlers;
        if (!handlers.some(h => h.code === ferryFulfillmentHandler.code)) handlers.push(ferryFulfillmentHandler);
        for (const c of addCustomFields(config.customFields, ferryCustomFields)) {
            Logger.warn(
                `custom field ${c.entity}.${c.name} is declared by the shop as ${c.theirs}; Ferry's connector expects ${c.ours}: kept the shop's`,
                loggerCtx,
            );
        }
        return config;
    }

    onApplicationBootstrap(): void {
        const o = FerryPlugin.options;
        if (!o.webhookUrl) {
            Logger.info('no webhookUrl: Ferry webhooks are off (promotion action, fulfilment handler and custom fields are declared)', loggerCtx);
            return;
        }
        const queue = new DeliveryQueue({
            url: o.webhookUrl,
            secret: o.secret,
            retry: o.retry,
            maxQueued: o.maxQueued,
            concurrency: o.concurrency,
            timeoutMs: o.timeoutMs,
            log: {
                info: m => Logger.info(m, loggerCtx),
                warn: m => Logger.warn(m, loggerCtx),
                error: m => Logger.error(m, loggerCtx),
            },
        });
        this.queue = queue;
        this.subscriptions = subscribe(this.eventBus, o.events, (type, fields) => queue.enqueue(type, fields));
        const which = EVENT_TYPES.every(t => selects(o.events, t)) ? 'all' : o.events.join(', ');
        Logger.info(`posting ${which} events to ${o.webhookUrl}, signed`, loggerCtx);
    }

    onApplicationShutdown(): void {
        for (const s of this.subscriptions) s.unsubscribe();
        this.subscriptions = [];
        this.queue?.stop();
    }
}
