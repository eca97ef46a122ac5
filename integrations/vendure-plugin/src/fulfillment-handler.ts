// Vendure's manual fulfilment with two more arguments: the ERP's shipment number and tracking URL are
// stored on the Fulfillment in the same insert (Vendure has no mutation to edit a fulfilment later), so
// a retried shipment write from Ferry can always recognise the fulfilment it already created.

import { FulfillmentHandler, LanguageCode } from '@vendure/core';

export const FULFILLMENT_HANDLER_CODE = 'ferry-fulfillment';

export const ferryFulfillmentHandler = new FulfillmentHandler({
    code: FULFILLMENT_HANDLER_CODE,
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
        // Declared by this plugin (custom-fields.ts); Vendure's type knows custom fields only by declaration merging.
        customFields: { ferryShipmentNumber: args.shipmentNumber || null, trackingUrl: args.trackingUrl || null } as never,
    }),
});
