import { RetryPolicy } from './delivery';
import { EVENT_TYPES, unknownEventNames } from './events';

/** What `FerryPlugin.init` takes. */
export interface FerryPluginOptions {
    /**
     * Where events are POSTed: `ferry serve`'s route for the Vendure connection,
     * `https://HOST/hooks/<connection>` (or `/hooks/<workspace>/<connection>`). Empty or absent: no
     * webhooks (the promotion action, fulfilment handler and custom fields are still declared).
     */
    webhookUrl?: string;
    /** HMAC-SHA256 key of `X-Ferry-Signature`: the connection's `webhook_secret` in Ferry. Required with `webhookUrl`. */
    secret?: string;
    /** Types to send, whole (`order.state`) or by prefix (`order`, `variant`); default: all of them. */
    events?: string[];
    /** Retry of failed deliveries; defaults: 1 s doubling to at most 5 min, given up after 24 h. */
    retry?: Partial<RetryPolicy>;
    /** Deliveries held at most while Ferry is unreachable (default 10,000); the oldest is dropped beyond. */
    maxQueued?: number;
    /** POSTs in flight at once (default 4). */
    concurrency?: number;
    /** One POST's time limit in ms (default 10,000). */
    timeoutMs?: number;
}

export interface ResolvedOptions {
    webhookUrl: string | undefined;
    secret: string;
    events: readonly string[];
    retry: RetryPolicy;
    maxQueued: number;
    concurrency: number;
    timeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { initialDelayMs: 1_000, maxDelayMs: 300_000, giveUpAfterMs: 24 * 3_600_000 };

/** Checks and completes the options; throws naming the option at fault (Vendure then refuses to start). */
export function resolveOptions(options: FerryPluginOptions): ResolvedOptions {
    const fail = (option: string, why: string): never => {
        throw new Error(`FerryPlugin.init: ${option} ${why}`);
    };
    const webhookUrl = options.webhookUrl?.trim() || undefined;
    if (webhookUrl !== undefined) {
        let url: URL | undefined;
        try {
            url = new URL(webhookUrl);
        } catch {
            fail('webhookUrl', `is not a URL: ${JSON.stringify(webhookUrl)}`);
        }
        if (url && url.protocol !== 'http:' && url.protocol !== 'https:') fail('webhookUrl', `must be http(s), not ${url.protocol}`);
        if (!options.secret) fail('secret', "is required with webhookUrl (the connection's webhook_secret in Ferry)");
    }
    const events = options.events ?? [...EVENT_TYPES];
    const unknown = unknownEventNames(events);
    if (unknown.length > 0) fail('events', `names no event type: ${unknown.join(', ')} (known: ${EVENT_TYPES.join(', ')})`);
    const positive = (option: string, value: number | undefined, fallback: number): number => {
        const v = value ?? fallback;
        if (!Number.isFinite(v) || v <= 0) fail(option, `must be a positive number (got ${value})`);
        return v;
    };
    const retry: RetryPolicy = {
        initialDelayMs: positive('retry.initialDelayMs', options.retry?.initialDelayMs, DEFAULT_RETRY.initialDelayMs),
        maxDelayMs: positive('retry.maxDelayMs', options.retry?.maxDelayMs, DEFAULT_RETRY.maxDelayMs),
        giveUpAfterMs: positive('retry.giveUpAfterMs', options.retry?.giveUpAfterMs, DEFAULT_RETRY.giveUpAfterMs),
    };
    return {
        webhookUrl,
        secret: options.secret ?? '',
        events,
        retry,
        maxQueued: Math.floor(positive('maxQueued', options.maxQueued, 10_000)),
        concurrency: Math.floor(positive('concurrency', options.concurrency, 4)),
        timeoutMs: positive('timeoutMs', options.timeoutMs, 10_000),
    };
}
