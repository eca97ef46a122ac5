// Vendure EventBus events → the JSON Ferry's Vendure connector reads (`webhook_signals` in
// crates/connectors/src/vendure/mod.rs). Each body is `{type, at, ...}`; the fields below are the
// wire format, shared with the Rust side and its tests.

import {
    CustomerEvent,
    CustomerGroupChangeEvent,
    CustomerGroupEvent,
    EventBus,
    Logger,
    OrderEvent,
    OrderLineEvent,
    OrderStateTransitionEvent,
    ProductEvent,
    ProductVariantEvent,
    RefundEvent,
    RefundStateTransitionEvent,
    StockMovementEvent,
    VendureEvent,
} from '@vendure/core';

/** Every `type` the plugin sends. */
export const EVENT_TYPES = [
    'order.state',
    'order.refund',
    'order.updated',
    'order.cancelled',
    'product.created',
    'product.updated',
    'product.deleted',
    'variant.created',
    'variant.updated',
    'variant.deleted',
    'stock.movement',
    'customer.created',
    'customer.updated',
    'customer.deleted',
    'customer_group.assigned',
    'customer_group.removed',
    'customer_group.created',
    'customer_group.updated',
    'customer_group.deleted',
] as const;
export type FerryEventType = (typeof EVENT_TYPES)[number];

/** Whether `type` is selected by `events`: an entry is a whole type (`order.state`) or its prefix (`order`). */
export function selects(events: readonly string[], type: string): boolean {
    return events.some(e => e === type || type.startsWith(e + '.'));
}

/** The entries of `events` that select no type the plugin sends (a typo would otherwise silence a feed). */
export function unknownEventNames(events: readonly string[]): string[] {
    return events.filter(e => !EVENT_TYPES.some(t => selects([e], t)));
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type EventClass<E> = new (...args: any[]) => E;
type Send = (type: FerryEventType, fields: Record<string, unknown>) => void;
interface Unsubscribe {
    unsubscribe(): void;
}

/**
 * Subscribes to the events `events` selects and hands each one to `send` as `{type, fields}`. The body
 * is built at once, inside the subscriber: entities can change after the event.
 */
export function subscribe(eventBus: EventBus, events: readonly string[], send: Send): Unsubscribe[] {
    const want = (type: FerryEventType) => selects(events, type);
    const wantAny = (prefix: string) => EVENT_TYPES.some(t => t.startsWith(prefix) && want(t));
    const subs: Unsubscribe[] = [];
    const emit = (type: FerryEventType, fields: Record<string, unknown>) => {
        if (want(type)) send(type, fields);
    };
    // A subscriber that throws would end its subscription (and RxJS rethrows it outside any request):
    // an event the plugin cannot read is logged and skipped instead.
    const on = <E extends VendureEvent>(type: EventClass<E>, handle: (event: E) => void): Unsubscribe =>
        eventBus.ofType(type).subscribe(event => {
            try {
                handle(event);
            } catch (e) {
                Logger.error(`cannot send ${type.name} to Ferry: ${e instanceof Error ? e.message : String(e)}`, 'FerryPlugin');
            }
        });

    if (want('order.state')) {
        subs.push(
            on(OrderStateTransitionEvent, e =>
                emit('order.state', { id: e.order.id, code: e.order.code, from: e.fromState, to: e.toState }),
            ),
        );
    }
    if (want('order.refund')) {
        // Refunds and modifications do not move the order's updatedAt in Vendure 3.7, so an incremental
        // read cannot see them: these events name the order for a re-read.
        subs.push(
            on(RefundEvent, e =>
                emit('order.refund', { id: e.order.id, code: e.order.code, refundId: e.refund.id, state: e.refund.state }),
            ),
            on(RefundStateTransitionEvent, e =>
                emit('order.refund', { id: e.order.id, code: e.order.code, refundId: e.refund.id, from: e.fromState, to: e.toState }),
            ),
        );
    }
    if (want('order.updated')) {
        subs.push(
            on(OrderEvent, e => {
                if (e.type === 'updated') emit('order.updated', { id: e.order.id, code: e.order.code });
            }),
        );
    }
    if (want('order.cancelled')) {
        // Units cancelled on some lines (`cancelOrder` with lines): the order stays, its lines change. A
        // whole order cancelled is also an `order.state` to Cancelled. (No quantity: Vendure 3.7 publishes
        // the line as it was before the cancellation; Ferry re-reads the order anyway.)
        subs.push(
            on(OrderLineEvent, e => {
                if (e.type === 'cancelled') emit('order.cancelled', { id: e.order.id, code: e.order.code, lineId: e.orderLine.id });
            }),
        );
    }
    if (wantAny('variant.')) {
        subs.push(
            on(ProductVariantEvent, e =>
                emit(`variant.${e.type}`, { ids: e.entity.map(v => v.id), skus: e.entity.map(v => v.sku) }),
            ),
        );
    }
    if (wantAny('product.')) {
        subs.push(
            on(ProductEvent, e => {
                const custom = e.entity.customFields as { ferryGroup?: string | null } | undefined;
                emit(`product.${e.type}`, { id: e.entity.id, group: custom?.ferryGroup ?? null });
            }),
        );
    }
    if (want('stock.movement')) {
        subs.push(
            on(StockMovementEvent, e =>
                emit('stock.movement', {
                    movements: e.stockMovements.map(m => ({
                        type: m.type,
                        qty: m.quantity,
                        variantId: m.productVariant?.id,
                        sku: m.productVariant?.sku,
                    })),
                }),
            ),
        );
    }
    if (wantAny('customer.')) {
        subs.push(on(CustomerEvent, e => emit(`customer.${e.type}`, { id: e.entity.id, email: e.entity.emailAddress })));
    }
    if (want('customer_group.assigned') || want('customer_group.removed')) {
        subs.push(
            on(CustomerGroupChangeEvent, e =>
                emit(`customer_group.${e.type}`, { group: e.customGroup?.name, ids: e.customers.map(c => c.id) }),
            ),
        );
    }
    if (want('customer_group.created') || want('customer_group.updated') || want('customer_group.deleted')) {
        subs.push(
            on(CustomerGroupEvent, e => emit(`customer_group.${e.type}`, { id: e.entity.id, group: e.entity.name })),
        );
    }
    return subs;
}
