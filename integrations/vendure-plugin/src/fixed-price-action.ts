// The promotion action behind Ferry's B2B prices.
//
// Vendure has no customer-group price lists; its native tool for "this group pays less" is a promotion
// with the built-in `customer_group` condition. The built-in actions discount by a percentage, which
// cannot hit a price list's amount to the cent, so this action takes the target unit price itself
// (integer minor units, in the channel's tax mode, as Ferry's connector writes it) and discounts each
// unit of one variant down to it, never up.

import { LanguageCode, PromotionItemAction } from '@vendure/core';

export const FIXED_PRICE_ACTION_CODE = 'ferry_variant_fixed_price';

/**
 * The per-unit adjustment (≤ 0, minor units) that brings `listPrice` down to `target`. Both are first put
 * in the line's tax mode (`listIncludesTax`), because that is the mode Vendure reads an item adjustment
 * in; `target` is in the channel's (`targetIncludesTax`), which differs only when the channel's setting
 * changed after the line was priced.
 */
export function fixedPriceAdjustment(
    listPrice: number,
    listIncludesTax: boolean,
    target: number,
    targetIncludesTax: boolean,
    taxRatePercent: number,
): number {
    let targetInLineMode = target;
    if (targetIncludesTax !== listIncludesTax) {
        const factor = 1 + taxRatePercent / 100;
        targetInLineMode = Math.round(listIncludesTax ? target * factor : target / factor);
    }
    const discount = listPrice - targetInLineMode;
    return discount > 0 ? -discount : 0;
}

export const ferryVariantFixedPrice = new PromotionItemAction({
    code: FIXED_PRICE_ACTION_CODE,
    description: [{ languageCode: LanguageCode.en, value: 'Ferry price list: variant { variantId } costs { price }' }],
    args: {
        variantId: { type: 'ID', ui: { component: 'product-selector-form-input' } },
        price: { type: 'int', ui: { component: 'currency-form-input' } },
    },
    execute(ctx, orderLine, args) {
        const variantId = orderLine.productVariantId ?? orderLine.productVariant?.id;
        if (String(variantId) !== String(args.variantId)) return 0;
        // Per unit: Vendure multiplies an item action's amount by the line's quantity.
        return fixedPriceAdjustment(orderLine.listPrice, orderLine.listPriceIncludesTax, args.price, ctx.channel.pricesIncludeTax, orderLine.taxRate);
    },
});
