export { FerryPlugin } from './plugin';
export { FerryPluginOptions, DEFAULT_RETRY, resolveOptions } from './options';
export { EVENT_TYPES, FerryEventType } from './events';
export { DeliveryQueue, RetryPolicy, signature, backoffMs, parseRetryAfter } from './delivery';
export { ferryVariantFixedPrice, fixedPriceAdjustment, FIXED_PRICE_ACTION_CODE } from './fixed-price-action';
export { ferryFulfillmentHandler, FULFILLMENT_HANDLER_CODE } from './fulfillment-handler';
export { ferryCustomFields, addCustomFields } from './custom-fields';
