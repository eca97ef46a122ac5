// Ferry's Medusa test peer (scripts/peers/medusa/up.sh copies this into DIR as medusa-config.js).
// No Redis here: without REDIS_URL Medusa falls back to its in-memory event bus, cache, workflow engine
// and locking modules, which is what a single test process needs. No admin dashboard (its Vite build
// is slow and nothing here uses it).
const { defineConfig } = require("@medusajs/framework/utils")

module.exports = defineConfig({
  projectConfig: {
    databaseUrl: process.env.DATABASE_URL,
    databaseDriverOptions: { connection: { ssl: false } },
    workerMode: "shared",
    http: {
      // Only clients on this machine reach the peer; browsers are not part of the tests.
      storeCors: "http://127.0.0.1",
      adminCors: "http://127.0.0.1",
      authCors: "http://127.0.0.1",
      jwtSecret: process.env.JWT_SECRET || "ferry-test-jwt-secret",
      cookieSecret: process.env.COOKIE_SECRET || "ferry-test-cookie-secret",
    },
  },
  admin: { disable: true },
})
