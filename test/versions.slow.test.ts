/**
 * The README's version table, installed as a user would: the packed tarball and exactly the
 * table's versions from the npm registry, in a project of its own (outside this repository's
 * node_modules), then each part used there — the Redis store, an HTTP server with the
 * middleware, a grammY bot with the middleware, a test run by `vitest` with `@effect/vitest`,
 * metrics scraped from the Prometheus exporter and spans received over OTLP.
 */
import { describe, expect, it } from "vitest"
import { execFile } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import path from "node:path"
import { promisify } from "node:util"
import { redisUrl } from "./support.js"

const run = promisify(execFile)
const root = path.resolve(import.meta.dirname, "..")

/** The rows of the README's version table: `| \`name\` | version | what for |`. */
const versionTable = async () => {
  const readme = await readFile(path.join(root, "README.md"), "utf8")
  return Array.from(readme.matchAll(/^\| `([@\w/.-]+)` +\| (\d+\.\d+\.\d+) +\|/gm), ([, name, version]) => ({
    name: name!,
    version: version!
  }))
}

/** Uses the store, the HTTP middleware, the grammY middleware and the OpenTelemetry export; prints one line each. */
const useEveryPart = `
import { NodeSdk } from "@effect/opentelemetry"
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Deferred, Effect, ManagedRuntime } from "effect"
import { QueueManager } from "effect-queue-manager"
import * as QueueGrammy from "effect-queue-manager/Grammy"
import * as QueueHttp from "effect-queue-manager/HttpMiddleware"
import * as RedisStore from "effect-queue-manager/RedisStore"
import { Bot } from "grammy"
import { Redis } from "ioredis"
import { createServer } from "node:http"

const listen = (server) => new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server.address().port)))

// the Redis store
const prefix = "versions-test-" + process.pid
const redis = await Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const queue = yield* RedisStore.make({ maxUserQueue: 1, redis: process.env.REDIS_URL, prefix })
      const granted = [yield* queue.tryAcquire("a"), yield* queue.tryAcquire("a")]
      yield* queue.release("a")
      return granted.join(" ") + " " + (yield* queue.activeCount("a"))
    })
  )
)
const client = new Redis(process.env.REDIS_URL)
const keys = await client.keys("{" + prefix + "}*")
if (keys.length > 0) await client.del(...keys)
await client.quit()
console.log("redis:", redis)

// an HTTP server with the middleware: a second request of the same user while the first runs
const http = await Effect.runPromise(
  Effect.scoped(
    Effect.gen(function* () {
      const entered = yield* Deferred.make()
      const gate = yield* Deferred.make()
      const work = Effect.zipRight(Deferred.succeed(entered, undefined), Deferred.await(gate)).pipe(
        Effect.as(HttpServerResponse.text("done"))
      )
      const app = HttpRouter.empty.pipe(
        HttpRouter.get("/work", work.pipe(QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id") })))
      )
      yield* HttpServer.serveEffect(app)
      const { port } = (yield* HttpServer.HttpServer).address
      const get = () => fetch("http://127.0.0.1:" + port + "/work", { headers: { "x-user-id": "a" } })
      const first = get()
      yield* Deferred.await(entered)
      const second = yield* Effect.promise(get)
      yield* Deferred.succeed(gate, undefined)
      const done = yield* Effect.promise(() => first)
      return [done.status, second.status, second.headers.get("retry-after")].join(" ")
    })
  ).pipe(
    Effect.provide(NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })),
    Effect.provide(QueueManager.layer({ maxUserQueue: 1 }))
  )
)
console.log("http:", http)

// a grammY bot with the middleware: two updates of one chat at once, limit 1
const runtime = ManagedRuntime.make(QueueManager.layer({ maxUserQueue: 1 }))
const bot = new Bot("42:TEST", {
  botInfo: { id: 42, is_bot: true, first_name: "Test", username: "test_bot", can_join_groups: true,
    can_read_all_group_messages: false, supports_inline_queries: false, can_connect_to_business: false,
    has_main_web_app: false }
})
const seen = []
let release
const held = new Promise((resolve) => (release = resolve))
bot.use(QueueGrammy.middleware(runtime, { onRefused: (_ctx, refusal) => void seen.push("refused " + refusal.reason) }))
bot.on("message", async () => {
  seen.push("handled")
  await held
})
const update = (id) => ({
  update_id: id,
  message: { message_id: id, date: 0, chat: { id: 7, type: "private", first_name: "a" }, from: { id: 7, is_bot: false, first_name: "a" }, text: "hi" }
})
const first = bot.handleUpdate(update(1))
await bot.handleUpdate(update(2))
release()
await first
await runtime.dispose()
console.log("grammy:", seen.join(", "))

// metrics to Prometheus, spans over OTLP
const spans = []
const collector = createServer((request, response) => {
  let body = ""
  request.on("data", (chunk) => (body += chunk))
  request.on("end", () => {
    for (const r of JSON.parse(body).resourceSpans) for (const s of r.scopeSpans) for (const span of s.spans) spans.push(span.name)
    response.end("{}")
  })
})
const collectorPort = await listen(collector)
const probe = createServer()
const metricsPort = await listen(probe)
await new Promise((resolve) => probe.close(resolve))
const scraped = await Effect.runPromise(
  Effect.gen(function* () {
    const queue = yield* QueueManager.QueueManager
    yield* queue.withSlot(1)(Effect.void)
    return yield* Effect.promise(() => fetch("http://127.0.0.1:" + metricsPort + "/metrics").then((r) => r.text()))
  }).pipe(
    Effect.provide(QueueManager.layer({ maxUserQueue: 1 })),
    Effect.provide(
      NodeSdk.layer(() => ({
        metricReader: new PrometheusExporter({ host: "127.0.0.1", port: metricsPort }),
        spanProcessor: new SimpleSpanProcessor(
          new OTLPTraceExporter({ url: "http://127.0.0.1:" + collectorPort + "/v1/traces" })
        )
      }))
    )
  )
)
collector.close()
console.log("prometheus:", scraped.split("\\n").find((line) => line.startsWith("queue_manager_acquisitions_total")))
console.log("otlp:", spans.join(", "))
process.exit(0)
`

/** A test of the user's own, run by vitest with @effect/vitest: a waiter gets the slot when the clock moves. */
const userTest = `
import { expect, it } from "@effect/vitest"
import { Effect, Fiber, TestClock } from "effect"
import { QueueManager } from "effect-queue-manager"

it.effect("a waiter gets the slot when its holder is done", () =>
  Effect.gen(function* () {
    const queue = yield* QueueManager.make({ maxUserQueue: 1 })
    yield* Effect.fork(queue.withSlot(1)(Effect.sleep("1 second")))
    yield* Effect.yieldNow()
    const waiter = yield* Effect.fork(queue.withSlot(1, { onFull: "wait" })(Effect.succeed("second")))
    yield* Effect.yieldNow()
    expect(yield* queue.stats).toMatchObject({ inFlight: 1, waiting: 1 })
    yield* TestClock.adjust("1 second")
    expect(yield* Fiber.join(waiter)).toBe("second")
  })
)
`

describe("the README's version table", () => {
  it("is what this repository is built and tested with", async () => {
    const table = await versionTable()
    const { devDependencies } = JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as {
      devDependencies: Record<string, string>
    }
    expect(table.length).toBeGreaterThanOrEqual(19)
    for (const { name, version } of table) expect(devDependencies[name], name).toBe(version)
  })

  it("installs from the registry with the packed tarball, and every part works with it", async () => {
    const project = await mkdtemp(path.join(tmpdir(), "eqm-versions-"))
    try {
      const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", project], { cwd: root })
      const tarball = path.join(project, stdout.trim().split("\n").pop()!)
      await writeFile(
        path.join(project, "package.json"),
        JSON.stringify({ name: "user", private: true, type: "module" })
      )
      const table = await versionTable()
      await run(
        "npm",
        [
          "install",
          "--no-audit",
          "--no-fund",
          "--prefer-offline",
          tarball,
          ...table.map((p) => `${p.name}@${p.version}`)
        ],
        { cwd: project, timeout: 240_000 }
      )
      await writeFile(path.join(project, "use.mjs"), useEveryPart)
      const { stdout: used } = await run(process.execPath, ["use.mjs"], {
        cwd: project,
        timeout: 60_000,
        env: { ...process.env, REDIS_URL: redisUrl }
      })
      expect(used.trim().split("\n")).toEqual([
        "redis: true false 0",
        "http: 200 429 1",
        "grammy: handled, refused user",
        // the process's metrics: the acquisitions of the four parts above add up
        'prometheus: queue_manager_acquisitions_total{otel_scope_name="@effect/opentelemetry/Metrics"} 4',
        expect.stringMatching(/^otlp: .*QueueManager\.withSlot/)
      ])

      await writeFile(path.join(project, "queue.test.js"), userTest)
      const { stdout: tested } = await run(path.join(project, "node_modules", ".bin", "vitest"), ["run"], {
        cwd: project,
        timeout: 60_000,
        env: { ...process.env, CI: "true", NO_COLOR: "1", FORCE_COLOR: "0" }
      })
      expect(tested).toMatch(/Tests\s+1 passed \(1\)/)
    } finally {
      await rm(project, { recursive: true, force: true })
    }
  }, 300_000)
})
