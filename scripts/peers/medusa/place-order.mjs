#!/usr/bin/env node
// Places an order in the Medusa peer through its Store API, as a shopper's checkout does:
//   node scripts/peers/medusa/place-order.mjs DIR ITEM... [--email ADDR] [--first-name N] [--last-name N]
// DIR is the up.sh DIR (its seed.json names the server and the publishable key). Each ITEM is
// `VARIANT_ID=QTY` or `sku:SKU=QTY` (QTY defaults to 1). Prints the completed order (JSON) on stdout.
//
// Steps: region "Australia" -> cart with the items, e-mail and an Australian shipping address ->
// the cart's first shipping option -> payment collection -> payment session with Medusa's system
// provider (pp_system_default, authorises at once) -> complete. A failing step exits 1 naming it.
import { readFileSync } from "node:fs"
import { join } from "node:path"

function usage(msg) {
  if (msg) console.error(`place-order: ${msg}`)
  console.error("usage: place-order.mjs DIR VARIANT_ID[=QTY]|sku:SKU[=QTY]... [--email ADDR] [--first-name N] [--last-name N]")
  process.exit(2)
}

const args = process.argv.slice(2)
const opts = { email: "jane.citizen@example.com", "first-name": "Jane", "last-name": "Citizen" }
const positional = []
for (let i = 0; i < args.length; i++) {
  if (args[i].startsWith("--")) {
    const name = args[i].slice(2)
    if (!(name in opts) || i + 1 >= args.length) usage(`unknown or incomplete option ${args[i]}`)
    opts[name] = args[++i]
  } else positional.push(args[i])
}
const [dir, ...itemSpecs] = positional
if (!dir || itemSpecs.length === 0) usage()

let seed
try {
  seed = JSON.parse(readFileSync(join(dir, "seed.json"), "utf8"))
} catch (e) {
  usage(`cannot read ${join(dir, "seed.json")} (has up.sh seeded DIR?): ${e.message}`)
}
const base = seed.base_url
const key = seed.publishable_api_key

async function store(step, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { "x-publishable-api-key": key, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  if (!res.ok) {
    console.error(`place-order: ${step}: ${method} ${path} -> HTTP ${res.status}: ${text}`)
    process.exit(1)
  }
  return JSON.parse(text)
}

async function variantId(spec) {
  if (!spec.startsWith("sku:")) return spec
  const sku = spec.slice(4)
  // The Store API has no variant-by-SKU look-up: list the channel's products with their variants' SKUs.
  for (let offset = 0; ; offset += 100) {
    const page = await store(`find SKU ${sku}`, "GET", `/store/products?limit=100&offset=${offset}&fields=id,*variants`)
    for (const p of page.products) {
      const v = (p.variants || []).find((v) => v.sku === sku)
      if (v) return v.id
    }
    if (offset + page.products.length >= page.count || page.products.length === 0) break
  }
  console.error(`place-order: no variant with SKU ${sku} is sold in the publishable key's sales channel`)
  process.exit(1)
}

const items = []
for (const spec of itemSpecs) {
  const m = /^(.+?)(?:=(\d+))?$/.exec(spec)
  const quantity = m[2] === undefined ? 1 : Number(m[2])
  if (quantity < 1) usage(`item ${spec}: quantity must be at least 1`)
  items.push({ variant_id: await variantId(m[1]), quantity })
}

const { regions } = await store("find region", "GET", "/store/regions")
const region = regions.find((r) => r.name === "Australia")
if (!region) {
  console.error("place-order: no region named Australia (was DIR seeded by up.sh?)")
  process.exit(1)
}
const { cart } = await store("create cart", "POST", "/store/carts", {
  region_id: region.id,
  email: opts.email,
  items,
  shipping_address: {
    first_name: opts["first-name"], last_name: opts["last-name"], address_1: "10 Queen St", city: "Melbourne",
    province: "VIC", postal_code: "3000", country_code: "au", phone: "0400 000 000",
  },
})
const { shipping_options } = await store("list shipping options", "GET", `/store/shipping-options?cart_id=${cart.id}`)
if (shipping_options.length === 0) {
  console.error(`place-order: no shipping option for cart ${cart.id}`)
  process.exit(1)
}
await store("add shipping method", "POST", `/store/carts/${cart.id}/shipping-methods`, { option_id: shipping_options[0].id })
const { payment_collection } = await store("create payment collection", "POST", "/store/payment-collections", { cart_id: cart.id })
await store("create payment session", "POST", `/store/payment-collections/${payment_collection.id}/payment-sessions`, {
  provider_id: "pp_system_default",
})
const done = await store("complete cart", "POST", `/store/carts/${cart.id}/complete`)
if (done.type !== "order") {
  console.error(`place-order: complete cart ${cart.id} did not place an order: ${JSON.stringify(done.error ?? done)}`)
  process.exit(1)
}
console.log(JSON.stringify(done.order, null, 2))
