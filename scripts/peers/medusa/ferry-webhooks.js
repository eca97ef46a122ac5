// Ferry's webhook sender for the Medusa test peer: scripts/peers/medusa/up.sh copies this file into the
// Medusa project as src/subscribers/ferry-webhooks.js, where Medusa loads it as a subscriber.
//
// Every event below is POSTed to WEBHOOK_URL (when set) as JSON
//   {"event": "<medusa event name>", "data": <the event's data, e.g. {"id": "order_..."}>,
//    "id": "<delivery id>", "occurred_at": "<RFC 3339 time the event was handled>"}
// signed the way `ferry serve` verifies a delivery (crates/server/src/webhook.rs):
//   X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the raw body, key WEBHOOK_SECRET>
//   X-Ferry-Timestamp: <unix seconds of this attempt>
//   X-Ferry-Delivery:  <delivery id, the same on every retry, so Ferry can drop repeats>
//   X-Ferry-Event:     <event name>
// A delivery that fails (network error, 5xx, 429) is retried with backoff for WEBHOOK_RETRY_SECONDS
// (default 20), then dropped with a log line: Ferry's scheduled sync catches up on what a lost
// delivery named. A 4xx other than 429 is not retried (the request itself is wrong: bad secret, unknown
// connection). Deliveries are sent in the background, so a slow or absent Ferry never slows Medusa's
// own workflows (placing an order emits order.placed from inside the checkout).
"use strict"
const crypto = require("crypto")

const EVENTS = [
  // Workflow events (what the Admin and Store APIs emit).
  "order.placed", "order.updated", "order.canceled", "order.completed", "order.archived",
  "order.fulfillment_created", "order.fulfillment_canceled", "order.return_received",
  "shipment.created", "delivery.created", "payment.captured", "payment.refunded",
  "product.created", "product.updated", "product.deleted",
  "product-variant.created", "product-variant.updated", "product-variant.deleted",
  "customer.created", "customer.updated", "customer.deleted",
  // Module events: the inventory module emits these when a stock level changes (no workflow event exists).
  "inventory.inventory-level.created", "inventory.inventory-level.updated", "inventory.inventory-level.deleted",
]

const url = process.env.WEBHOOK_URL || ""
const secret = process.env.WEBHOOK_SECRET || "ferry-test-webhook-secret"
const retrySeconds = Number(process.env.WEBHOOK_RETRY_SECONDS || 20)
const ATTEMPT_TIMEOUT_MS = 5000

function sign(body) {
  return "sha256=" + crypto.createHmac("sha256", secret).update(body).digest("hex")
}

async function deliver(logger, event, id, body) {
  const deadline = Date.now() + retrySeconds * 1000
  let delayMs = 250
  for (let attempt = 1; ; attempt++) {
    let problem
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-ferry-signature": sign(body),
          "x-ferry-timestamp": String(Math.floor(Date.now() / 1000)),
          "x-ferry-delivery": id,
          "x-ferry-event": event,
        },
        body,
        signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS),
      })
      await res.arrayBuffer().catch(() => undefined)
      if (res.ok) return
      problem = `HTTP ${res.status}`
      if (res.status < 500 && res.status !== 429) {
        logger.warn(`[ferry-webhooks] ${event} delivery ${id} refused by ${url}: ${problem}; not retried`)
        return
      }
    } catch (e) {
      problem = e && e.cause ? `${e.message} (${e.cause.code || e.cause.message})` : String(e)
    }
    if (Date.now() + delayMs > deadline) {
      logger.warn(`[ferry-webhooks] ${event} delivery ${id} to ${url} dropped after ${attempt} attempts: ${problem}`)
      return
    }
    await new Promise((r) => setTimeout(r, delayMs))
    delayMs = Math.min(delayMs * 2, 4000)
  }
}

async function ferryWebhooks({ event, container }) {
  if (!url) return
  const id = crypto.randomUUID()
  const body = JSON.stringify({ event: event.name, data: event.data, id, occurred_at: new Date().toISOString() })
  const logger = container.resolve("logger")
  deliver(logger, event.name, id, body).catch((e) => logger.error(`[ferry-webhooks] ${event.name} delivery ${id}: ${e}`))
}

module.exports = { default: ferryWebhooks, config: { event: EVENTS, context: { subscriberId: "ferry-webhooks" } } }
