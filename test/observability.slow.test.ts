/**
 * `npm run example:observability` (examples/observability.ts) as a process: its `/metrics` is
 * scraped over HTTP as Prometheus would, and its spans are received over OTLP/HTTP by a stand-in
 * collector (a real HTTP server that keeps each JSON export). In the slow suite: it starts a
 * process.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { runExample } from "./exampleProcess.js"
import { freePort } from "./redis/server.js"

interface OtlpSpan {
  readonly name: string
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: Record<string, unknown> }>
  readonly status?: { readonly code?: number }
}

/** A stand-in OpenTelemetry collector: keeps every span posted to `/v1/traces`. Closed with the scope. */
const startCollector = Effect.gen(function* () {
  const spans: Array<OtlpSpan> = []
  const server = createServer((request, response) => {
    let body = ""
    request.on("data", (chunk: Buffer) => (body += chunk.toString()))
    request.on("end", () => {
      if (request.url === "/v1/traces") {
        const exported = JSON.parse(body) as {
          resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<OtlpSpan> }> }>
        }
        exported.resourceSpans.forEach((r) => r.scopeSpans.forEach((s) => spans.push(...s.spans)))
      }
      response.writeHead(200, { "content-type": "application/json" })
      response.end("{}")
    })
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
    () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans }
})

const attribute = (span: OtlpSpan, key: string) => span.attributes.find((a) => a.key === key)?.value

/** The value of the series `name{labels…}` in a Prometheus text exposition, when it is there. */
const sample = (exposition: string, name: string, label = "") => {
  const line = exposition.split("\n").find((l) => l.startsWith(`${name}{`) && l.includes(label))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1))
}

describe("the observability example (npm run example:observability)", () => {
  it.scopedLive("serves the queue's metrics to a Prometheus scrape and sends its spans over OTLP", () =>
    Effect.gen(function* () {
      const collector = yield* startCollector
      const port = yield* freePort
      const example = yield* runExample("examples/observability.ts", {
        METRICS_PORT: String(port),
        OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint
      })
      const [, url] = yield* example.waitFor(/metrics: (http:\/\/\S+\/metrics)/)
      const [, accepted] = yield* example.waitFor(/accepted (\d+)/)
      const [, refused] = yield* example.waitFor(/refused (\d+)\)/)

      const scraped = yield* Effect.promise(() => fetch(url!))
      expect(scraped.headers.get("content-type")).toMatch(/^text\/plain/)
      const metrics = yield* Effect.promise(() => scraped.text())
      expect(metrics).toContain("# TYPE queue_manager_acquisitions_total counter")
      // the simulation's acquisitions plus the six queued downloads of the burst
      expect(sample(metrics, "queue_manager_acquisitions_total")).toBe(Number(accepted) + 6)
      expect(sample(metrics, "queue_manager_refusals_total", 'reason="user"')).toBe(Number(refused))
      expect(sample(metrics, "queue_manager_slots_in_flight")).toBe(0)
      expect(sample(metrics, "queue_manager_requests_waiting")).toBe(0)
      expect(metrics).toContain("# TYPE queue_manager_wait_seconds histogram")
      expect(metrics).toContain("# UNIT queue_manager_wait_seconds s")
      // of the burst's six, three got a slot at once and three waited
      expect(sample(metrics, "queue_manager_wait_seconds_count")).toBe(3)

      example.child.kill("SIGINT")
      expect(yield* example.exited).toBe(0)
      // the spans still buffered are sent as the process stops
      const withSlot = collector.spans.filter((s) => s.name === "QueueManager.withSlot")
      expect(withSlot.length).toBeGreaterThanOrEqual(Number(accepted) + Number(refused))
      expect(withSlot.every((s) => attribute(s, "userId") !== undefined)).toBe(true)
      const refusals = withSlot.filter((s) => attribute(s, "refused") !== undefined)
      expect(refusals.length).toBe(Number(refused))
      // a refusal is the limiter doing its job: its span is not an error (2 is ERROR in OTLP)
      expect(refusals.every((s) => s.status?.code !== 2)).toBe(true)
      expect(attribute(refusals[0]!, "refused")).toEqual({ stringValue: "user" })
    })
  )
})
