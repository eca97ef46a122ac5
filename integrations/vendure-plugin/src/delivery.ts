// Signed webhook deliveries to Ferry, queued in process and retried with bounded backoff.
//
// Why an in-process queue and not Vendure's JobQueue: a job runs in Vendure's worker process, which a
// small shop (and Ferry's test peer) may not run at all, and the database-backed queue writes a row per
// job into the shop's database. Ferry treats a webhook as a signal to re-read current state and runs a
// scheduled reconcile behind it, so a delivery lost with a restarted process delays a sync, it never
// loses a record. What matters is that the request path never waits: `enqueue` only serialises and
// stores; the POSTs happen on timers, `concurrency` at a time.

import { createHmac, randomUUID } from 'node:crypto';

/** How long and how often a failed delivery is tried again. */
export interface RetryPolicy {
    /** Delay after the first failed attempt; doubles per attempt (with jitter). */
    initialDelayMs: number;
    /** The longest delay between two attempts (also caps a `Retry-After`). */
    maxDelayMs: number;
    /** A delivery still failing this long after its event is dropped (and logged). */
    giveUpAfterMs: number;
}

export interface DeliveryLog {
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
}

export interface DeliveryQueueOptions {
    url: string;
    secret: string;
    retry: RetryPolicy;
    /** Deliveries held at most (waiting or retrying); beyond it the oldest is dropped. */
    maxQueued: number;
    /** POSTs in flight at once. */
    concurrency: number;
    /** One POST's time limit. */
    timeoutMs: number;
    log: DeliveryLog;
}

/** `sha256=<hex HMAC-SHA256 of the raw body>`: what `ferry serve` checks in `X-Ferry-Signature`. */
export function signature(secret: string, body: string): string {
    return 'sha256=' + createHmac('sha256', secret).update(body, 'utf8').digest('hex');
}

/**
 * The wait before attempt `attempt + 1` after `attempt` failed ones: exponential with equal jitter,
 * at most `maxDelayMs`, at least the server's `Retry-After` (itself capped at `maxDelayMs`).
 */
export function backoffMs(attempt: number, retry: RetryPolicy, retryAfterMs?: number, random: () => number = Math.random): number {
    const exp = Math.min(retry.maxDelayMs, retry.initialDelayMs * 2 ** Math.max(0, attempt - 1));
    const jittered = exp / 2 + random() * (exp / 2);
    const floor = retryAfterMs === undefined ? 0 : Math.min(retryAfterMs, retry.maxDelayMs);
    return Math.max(jittered, floor);
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
    if (!value) return undefined;
    const trimmed = value.trim();
    if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
    const at = Date.parse(trimmed);
    return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

interface Delivery {
    id: string;
    type: string;
    body: string;
    attempts: number;
    firstAt: number;
    dueAt: number;
}

type Outcome = { kind: 'delivered' } | { kind: 'refused'; reason: string } | { kind: 'retry'; reason: string; retryAfterMs?: number };

export class DeliveryQueue {
    /** Waiting deliveries, sorted by `dueAt`. */
    private waiting: Delivery[] = [];
    private inFlight = 0;
    private timer: NodeJS.Timeout | undefined;
    private timerDueAt = Infinity;
    private stopped = false;
    /** One per POST in flight, so `stop` can end them. */
    private readonly requests = new Set<AbortController>();
    /** Set while deliveries fail: the first reason, so an outage is logged once, not per attempt. */
    private failingSince: { at: number; reason: string } | undefined;
    private failedAttempts = 0;
    private givenUp = 0;
    private givenUpLoggedAt = 0;
    private dropped = 0;

    constructor(private readonly options: DeliveryQueueOptions) {}

    /** Deliveries waiting or in flight. */
    get size(): number {
        return this.waiting.length + this.inFlight;
    }

    /**
     * Queues `{type, at, ...fields}` for delivery and returns its delivery id (`X-Ferry-Delivery`, the
     * same on every attempt, so Ferry acknowledges a repeat without a second job). Never waits.
     */
    enqueue(type: string, fields: Record<string, unknown>): string {
        const body = JSON.stringify({ type, at: new Date().toISOString(), ...fields });
        const now = Date.now();
        const delivery: Delivery = { id: randomUUID(), type, body, attempts: 0, firstAt: now, dueAt: now };
        if (this.stopped) return delivery.id;
        if (this.size >= this.options.maxQueued) this.dropOldest();
        this.insert(delivery);
        this.pump();
        return delivery.id;
    }

    /** Stops sending; what is still queued is logged and forgotten. */
    stop(): void {
        this.stopped = true;
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        if (this.size > 0) {
            this.options.log.warn(`stopping with ${this.size} webhook deliveries not yet accepted by ${this.options.url}; Ferry's scheduled sync covers them`);
        }
        this.waiting = [];
        for (const request of this.requests) request.abort(new Error('stopped'));
    }

    private insert(d: Delivery): void {
        // Binary search: most inserts go at the end (new events, or retries later than everything waiting).
        let lo = 0;
        let hi = this.waiting.length;
        while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if (this.waiting[mid].dueAt <= d.dueAt) lo = mid + 1;
            else hi = mid;
        }
        this.waiting.splice(lo, 0, d);
    }

    private dropOldest(): void {
        if (this.waiting.length === 0) return;
        let oldest = 0;
        for (let i = 1; i < this.waiting.length; i++) {
            if (this.waiting[i].firstAt < this.waiting[oldest].firstAt) oldest = i;
        }
        const [d] = this.waiting.splice(oldest, 1);
        this.dropped++;
        if (this.dropped === 1 || this.dropped % 1000 === 0) {
            this.options.log.error(
                `webhook queue full (${this.options.maxQueued}): dropped delivery ${d.id} (${d.type}); ${this.dropped} dropped so far. ` +
                    `Is Ferry at ${this.options.url} down? Its scheduled sync covers dropped events.`,
            );
        }
    }

    /** Starts due deliveries up to `concurrency`, then sets a timer for the next one. */
    private pump(): void {
        if (this.stopped) return;
        const now = Date.now();
        while (this.inFlight < this.options.concurrency && this.waiting.length > 0 && this.waiting[0].dueAt <= now) {
            const d = this.waiting.shift() as Delivery;
            this.inFlight++;
            void this.attempt(d).finally(() => {
                this.inFlight--;
                this.pump();
            });
        }
        this.arm();
    }

    private arm(): void {
        const next = this.inFlight < this.options.concurrency && this.waiting.length > 0 ? this.waiting[0].dueAt : Infinity;
        if (next === this.timerDueAt) return;
        if (this.timer) clearTimeout(this.timer);
        this.timer = undefined;
        this.timerDueAt = next;
        if (next === Infinity) return;
        this.timer = setTimeout(() => {
            this.timer = undefined;
            this.timerDueAt = Infinity;
            this.pump();
        }, Math.max(0, next - Date.now()));
        // Pending deliveries never keep a stopping process alive.
        this.timer.unref();
    }

    private async attempt(d: Delivery): Promise<void> {
        d.attempts++;
        const outcome = await this.post(d);
        if (this.stopped) return;
        const log = this.options.log;
        if (outcome.kind === 'delivered') {
            if (this.failingSince) {
                log.info(
                    `webhook deliveries to ${this.options.url} work again (failing since ${new Date(this.failingSince.at).toISOString()}: ` +
                        `${this.failedAttempts} failed attempts, ${this.givenUp} deliveries given up)`,
                );
                this.failingSince = undefined;
                this.failedAttempts = 0;
                this.givenUp = 0;
            }
            return;
        }
        if (outcome.kind === 'refused') {
            // A 4xx other than 408/429: the URL, secret or body is wrong; the same bytes would be refused again.
            log.error(`webhook delivery ${d.id} (${d.type}) refused by ${this.options.url}: ${outcome.reason}; not retried (check the URL and the secret)`);
            return;
        }
        this.failedAttempts++;
        const now = Date.now();
        if (!this.failingSince) {
            this.failingSince = { at: now, reason: outcome.reason };
            log.warn(
                `webhook delivery ${d.id} (${d.type}) to ${this.options.url} failed: ${outcome.reason}; ` +
                    `retrying deliveries for up to ${Math.round(this.options.retry.giveUpAfterMs / 1000)} s each`,
            );
        }
        const delay = backoffMs(d.attempts, this.options.retry, outcome.retryAfterMs);
        if (now + delay - d.firstAt > this.options.retry.giveUpAfterMs) {
            this.givenUp++;
            if (this.givenUp === 1 || now - this.givenUpLoggedAt >= 60_000) {
                this.givenUpLoggedAt = now;
                log.error(
                    `gave up on webhook delivery ${d.id} (${d.type}) after ${d.attempts} attempts over ${Math.round((now - d.firstAt) / 1000)} s: ` +
                        `${outcome.reason} (${this.givenUp} given up since ${new Date(this.failingSince.at).toISOString()}); Ferry's scheduled sync covers it`,
                );
            }
            return;
        }
        d.dueAt = now + delay;
        if (!this.stopped) this.insert(d);
    }

    private async post(d: Delivery): Promise<Outcome> {
        const request = new AbortController();
        const timeout = setTimeout(() => request.abort(new TimeoutError()), this.options.timeoutMs);
        this.requests.add(request);
        try {
            const res = await fetch(this.options.url, {
                method: 'POST',
                headers: {
                    'content-type': 'application/json',
                    'x-ferry-signature': signature(this.options.secret, d.body),
                    // The time of this attempt: Ferry refuses timestamps more than 5 minutes off, and the
                    // delivery id (not the timestamp) is what makes a repeat recognisable.
                    'x-ferry-timestamp': String(Math.floor(Date.now() / 1000)),
                    'x-ferry-event': d.type,
                    'x-ferry-delivery': d.id,
                },
                body: d.body,
                redirect: 'manual',
                signal: request.signal,
            });
            const text = await res.text().catch(() => '');
            if (res.status >= 200 && res.status < 300) return { kind: 'delivered' };
            const reason = `HTTP ${res.status}${text ? ': ' + text.slice(0, 300) : ''}`;
            if (res.status === 408 || res.status === 429 || res.status >= 500) {
                return { kind: 'retry', reason, retryAfterMs: parseRetryAfter(res.headers.get('retry-after')) };
            }
            return { kind: 'refused', reason };
        } catch (e) {
            return { kind: 'retry', reason: describeError(e) };
        } finally {
            clearTimeout(timeout);
            this.requests.delete(request);
        }
    }
}

class TimeoutError extends Error {
    constructor() {
        super('no answer in time');
        this.name = 'TimeoutError';
    }
}

/** `fetch failed` says little: name the cause (ECONNREFUSED, a timeout). */
function describeError(e: unknown): string {
    if (e instanceof Error) {
        if (e.name === 'TimeoutError') return 'no answer in time';
        const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
        if (cause && (cause.code || cause.message)) return `${e.message} (${cause.code ?? cause.message})`;
        return e.message;
    }
    return String(e);
}
