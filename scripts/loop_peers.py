#!/usr/bin/env python3
"""The ERP's and the shopper's side of scripts/loop.sh, with nothing but the Python standard library.

  loop_peers.py seed    create a few products (with stock) and a B2B customer in Tryton, once
  loop_peers.py order   a guest buys through Vendure's Shop API (prints the order code)
  loop_peers.py ship    ship the Tryton sale of a web order (carrier + tracking code)
  loop_peers.py show    what each side holds now (products, stock, the order, its sale, its fulfilment)

Env: TRYTON_URL (http://127.0.0.1:18100), TRYTON_DB (tryton), TRYTON_PASSWORD (admin's),
     VENDURE_URL (http://127.0.0.1:18400), VENDURE_ADMIN_PASSWORD (superadmin's).
"""
import base64
import json
import os
import sys
import time
import urllib.request

TRYTON = os.environ.get("TRYTON_URL", "http://127.0.0.1:18100").rstrip("/")
DB = os.environ.get("TRYTON_DB", "tryton")
TRYTON_PASSWORD = os.environ.get("TRYTON_PASSWORD", "admin-pass-123")
VENDURE = os.environ.get("VENDURE_URL", "http://127.0.0.1:18400").rstrip("/")
VENDURE_PASSWORD = os.environ.get("VENDURE_ADMIN_PASSWORD", "superadmin")

# The demo catalogue: (template code, name, list price, [variant suffixes], stock per variant).
CATALOGUE = [
    ("LOOP-SPADE", "Garden spade", "49.90", [""], 20),
    ("LOOP-TEE", "Organic tee", "29.90", ["-S", "-M", "-L"], 12),
    ("LOOP-MUG", "Enamel mug", "12.50", [""], 40),
]
CUSTOMER = ("LOOP-ACME", "Acme Landscaping Pty Ltd", "orders@acme-landscaping.example")


def post(url, body, headers=None):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read()), resp.headers


def dec(s):
    return {"__class__": "Decimal", "decimal": s}


class Tryton:
    """Tryton's JSON-RPC: POST /<db>/rpc/ {method, params}; the last parameter is the context."""

    def __init__(self):
        self.url = f"{TRYTON}/{DB}/rpc/"
        result = self._call("common.db.login", ["admin", {"password": TRYTON_PASSWORD}, "en"], auth=False)
        user, session = result[0], result[1]
        self.auth = {"Authorization": "Session " + base64.b64encode(f"admin:{user}:{session}".encode()).decode()}
        self.ctx = self._call("model.res.user.get_preferences", [True, {}])

    def _call(self, method, params, auth=True):
        body, _ = post(self.url, {"id": 1, "method": method, "params": params}, self.auth if auth else None)
        if body.get("error"):
            raise SystemExit(f"Tryton {method}: {body['error']}")
        return body["result"]

    def __call__(self, model, method, *args, ctx=None):
        return self._call(f"model.{model}.{method}", [*args, {**self.ctx, **(ctx or {})}])

    def search_read(self, model, domain, fields, ctx=None):
        return self(model, "search_read", domain, 0, None, [["id", "ASC"]], fields, ctx=ctx)

    def one(self, model, domain):
        ids = self(model, "search", domain, 0, 1, None)
        if not ids:
            raise SystemExit(f"Tryton: no {model} matching {domain}")
        return ids[0]


class Vendure:
    """A GraphQL session (Admin or Shop API) keeping Vendure's bearer token."""

    def __init__(self, api):
        self.url = f"{VENDURE}/{api}"
        self.token = None

    def __call__(self, query, variables=None):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body, resp_headers = post(self.url, {"query": query, "variables": variables or {}}, headers)
        self.token = resp_headers.get("vendure-auth-token") or self.token
        if body.get("errors"):
            raise SystemExit(f"Vendure {query.split('(')[0].split('{')[0].strip()}: {body['errors']}")
        text = json.dumps(body["data"])
        if '"errorCode"' in text:
            raise SystemExit(f"Vendure: {text}")
        return body["data"]


def seed():
    t = Tryton()
    unit = t("ir.model.data", "get_id", "product", "uom_unit")
    goods = t.one("product.category", [["name", "=", "Goods"], ["accounting", "=", True]])
    wh = t.search_read("stock.location", [["type", "=", "warehouse"], ["code", "=", "WH"]], ["storage_location"])[0]
    for code, name, price, suffixes, qty in CATALOGUE:
        if t("product.template", "search", [["code", "=", code]], 0, 1, None):
            print(f"  {code}: already in Tryton")
            continue
        variants = [{"suffix_code": s, "cost_price": dec("5")} for s in suffixes]
        tpl = t("product.template", "create", [{
            "name": name, "code": code, "type": "goods", "default_uom": unit, "salable": True, "sale_uom": unit,
            "list_price": dec(price), "account_category": goods, "products": [["create", variants]],
        }])[0]
        products = t("product.product", "search", [["template", "=", tpl]], 0, None, [["id", "ASC"]])
        inv = t("stock.inventory", "create", [{"location": wh["storage_location"], "company": t.ctx["company"],
                                               "lines": [["create", [{"product": p, "quantity": qty} for p in products]]]}])
        t("stock.inventory", "confirm", inv)
        print(f"  {code}: {name}, {price} AUD, SKUs {', '.join(code + s for s in suffixes)}, {qty} in stock each")
    code, name, email = CUSTOMER
    if not t("party.party", "search", [["code", "=", code]], 0, 1, None):
        au = t.one("country.country", [["code", "=", "AU"]])
        t("party.party", "create", [{
            "name": name, "code": code,
            "contact_mechanisms": [["create", [{"type": "email", "value": email}]]],
            "addresses": [["create", [{"street": "12 Fern St", "city": "Newcastle", "postal_code": "2300", "country": au,
                                       "invoice": True, "delivery": True}]]],
        }])
        print(f"  customer {code}: {name} <{email}>")
    else:
        print(f"  customer {code}: already in Tryton")
    # The trade customer buys at the "Trade" price list (10 % off): a customer price in the shop.
    party = t.one("party.party", [["code", "=", code]])
    t("party.party", "write", [party], {"sale_price_list": t.one("product.price_list", [["name", "=", "Trade"]])})


def order():
    admin = Vendure("admin-api")
    admin("mutation($u:String!,$p:String!){ login(username:$u,password:$p){ ... on CurrentUser { id } } }",
          {"u": "superadmin", "p": VENDURE_PASSWORD})
    skus = {"LOOP-SPADE": 1, "LOOP-TEE-M": 2}
    found = admin("query($s:[String!]!){ productVariants(options:{filter:{sku:{in:$s}}}){ items { id sku name } } }",
                  {"s": list(skus)})["productVariants"]["items"]
    if len(found) != len(skus):
        raise SystemExit(f"the shop does not sell {sorted(set(skus) - {v['sku'] for v in found})} yet: sync products first")
    shop = Vendure("shop-api")
    fields = "... on Order { code state totalWithTax } ... on ErrorResult { errorCode message }"
    for v in found:
        shop(f"mutation($v:ID!,$q:Int!){{ addItemToOrder(productVariantId:$v, quantity:$q){{ {fields} }} }}",
             {"v": v["id"], "q": skus[v["sku"]]})
    email = f"guest-{int(time.time())}@example.test"
    shop(f"mutation($i:CreateCustomerInput!){{ setCustomerForOrder(input:$i){{ {fields} }} }}",
         {"i": {"emailAddress": email, "firstName": "Gus", "lastName": "Guest"}})
    addr = {"fullName": "Gus Guest", "streetLine1": "7 Dock Rd", "city": "Port Botany", "province": "NSW",
            "postalCode": "2036", "countryCode": "AU"}
    shop(f"mutation($i:CreateAddressInput!){{ setOrderShippingAddress(input:$i){{ {fields} }} }}", {"i": addr})
    methods = shop("{ eligibleShippingMethods { id code } }")["eligibleShippingMethods"]
    standard = next(m["id"] for m in methods if m["code"] == "standard")
    shop(f"mutation($s:[ID!]!){{ setOrderShippingMethod(shippingMethodId:$s){{ {fields} }} }}", {"s": [standard]})
    shop('mutation{ transitionOrderToState(state:"ArrangingPayment"){ ... on Order { state } '
         '... on OrderStateTransitionError { errorCode message } } }')
    paid = shop(f'mutation{{ addPaymentToOrder(input:{{method:"test-pay", metadata:{{}}}}){{ {fields} }} }}')["addPaymentToOrder"]
    print(f"  {email} bought {', '.join(f'{q} × {s}' for s, q in skus.items())} + standard shipping: "
          f"order {paid['code']}, {paid['state']}, {paid['totalWithTax'] / 100:.2f} AUD", file=sys.stderr)
    print(paid["code"])


def sale_of(t, number):
    sales = t.search_read("sale.sale", [["web_id", "=", number]], ["number", "state", "party.name", "total_amount", "shipments"])
    if not sales:
        raise SystemExit(f"Tryton has no sale for web order {number}: sync orders first")
    return sales


def ship(number):
    t = Tryton()
    sale = sale_of(t, number)[0]
    for _ in range(150):  # confirming queues the processing that creates the shipment
        if sale["shipments"]:
            break
        time.sleep(0.2)
        sale = sale_of(t, number)[0]
    else:
        raise SystemExit(f"Tryton created no shipment for sale {sale['number']}")
    shipment = sale["shipments"][0]
    carrier = t.one("carrier", [])
    tracking = f"TRK{number}"
    t("stock.shipment.out", "write", [shipment], {"carrier": carrier, "shipping_reference": tracking})
    for step in ["assign_try", "pick", "pack", "do"]:
        t("stock.shipment.out", step, [shipment])
    done = t.search_read("stock.shipment.out", [["id", "=", shipment]], ["number", "state"])[0]
    print(f"  sale {sale['number']}: shipment {done['number']} {done['state']}, carrier Courier Co, tracking {tracking}")


def show(number=None):
    t = Tryton()
    wh = t.one("stock.location", [["code", "=", "WH"]])
    rows = t.search_read("product.product", [["code", "like", "LOOP-%"]], ["code", "template.list_price", "quantity", "forecast_quantity"],
                         ctx={"locations": [wh]})
    admin = Vendure("admin-api")
    admin("mutation($u:String!,$p:String!){ login(username:$u,password:$p){ ... on CurrentUser { id } } }",
          {"u": "superadmin", "p": VENDURE_PASSWORD})
    variants = admin('{ productVariants(options:{filter:{sku:{contains:"LOOP-"}}, take:100}){ items { sku price stockOnHand stockAllocated } } }')
    shop = {v["sku"]: v for v in variants["productVariants"]["items"]}
    print(f"  {'SKU':<12} {'Tryton price':>12} {'on hand':>8} {'forecast':>8} | {'shop price':>10} {'on hand':>8} {'allocated':>9} {'saleable':>8}")
    for r in rows:
        v = shop.get(r["code"])
        left = f"  {r['code']:<12} {float(r['template.']['list_price']['decimal']):>12.2f} {r['quantity']:>8.0f} {r['forecast_quantity']:>8.0f}"
        right = (f"{v['price'] / 100:>10.2f} {v['stockOnHand']:>8} {v['stockAllocated']:>9} {v['stockOnHand'] - v['stockAllocated']:>8}"
                 if v else f"{'(not in the shop)':>38}")
        print(f"{left} | {right}")
    if number:
        for s in t.search_read("sale.sale", [["web_id", "=", number]], ["number", "state", "party.name", "total_amount"]):
            print(f"  Tryton sale {s['number']} for web order {number}: {s['state']}, party {s['party.']['name']}, "
                  f"total {float(s['total_amount']['decimal']):.2f} AUD")
        o = admin("query($c:String!){ orders(options:{filter:{code:{eq:$c}}}){ items { state totalWithTax "
                  "fulfillments { state method trackingCode } } } }", {"c": number})["orders"]["items"]
        if o:
            fs = ", ".join(f"{f['method']} {f['trackingCode']} ({f['state']})" for f in o[0]["fulfillments"]) or "none"
            print(f"  Vendure order {number}: {o[0]['state']}, {o[0]['totalWithTax'] / 100:.2f} AUD, fulfilments: {fs}")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    if cmd == "seed":
        seed()
    elif cmd == "order":
        order()
    elif cmd == "ship":
        ship(*args)
    elif cmd == "show":
        show(*args)
    else:
        print(__doc__)
        sys.exit(2)
