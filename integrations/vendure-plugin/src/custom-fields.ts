// The custom fields Ferry's Vendure connector reads and writes (docs/connectors/vendure.md says which
// canonical field each one carries).

import { CustomFieldConfig, CustomFields } from '@vendure/core';

const text = (name: string): CustomFieldConfig => ({ name, type: 'string', nullable: true, public: true });
const urls = (name: string): CustomFieldConfig => ({ name, type: 'string', list: true, nullable: true, public: true });

export const ferryCustomFields: CustomFields = {
    Product: [
        // The canonical `group` (parent / template code): how the connector finds the product again.
        text('ferryGroup'),
        text('brand'),
        urls('imageUrls'),
        urls('documentUrls'),
        urls('videoUrls'),
        { name: 'shortDescription', type: 'text', nullable: true, public: true },
    ],
    ProductVariant: [text('barcode'), { name: 'weightGrams', type: 'int', nullable: true, public: true }],
    // `ferryCode`: the ERP's customer code, read back onto orders as customer.code.
    Customer: [text('ferryCode'), text('taxId'), text('company')],
    // The ERP's address id, so a re-sync updates the same address instead of adding a copy.
    Address: [text('ferryKey')],
    Order: [
        // ";SH-1;SH-2;": ERP shipment numbers written to this order, searchable with `contains` (Vendure has
        // no list query of fulfilments), so the connector can go from a shipment number to the order.
        { name: 'ferryShipments', type: 'text', nullable: true, public: false },
    ],
    // The ERP's shipment number: how the connector recognises a fulfilment it already created.
    Fulfillment: [text('ferryShipmentNumber'), text('trackingUrl')],
};

/**
 * Adds `fields` to `config`, entity by entity. A field the shop already declares under the same name is
 * kept as the shop declared it (returned, so the plugin can say so when its type differs).
 */
export function addCustomFields(config: CustomFields, fields: CustomFields): { entity: string; name: string; theirs: string; ours: string }[] {
    const clashes: { entity: string; name: string; theirs: string; ours: string }[] = [];
    for (const [entity, ours] of Object.entries(fields) as [keyof CustomFields, CustomFieldConfig[]][]) {
        const existing = (config[entity] ??= []);
        for (const field of ours) {
            const theirs = existing.find(f => f.name === field.name);
            if (!theirs) {
                existing.push(field);
            } else if (theirs.type !== field.type || Boolean(theirs.list) !== Boolean(field.list)) {
                clashes.push({ entity: String(entity), name: field.name, theirs: theirs.type + (theirs.list ? '[]' : ''), ours: field.type + (field.list ? '[]' : '') });
            }
        }
    }
    return clashes;
}
