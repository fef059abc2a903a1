/**
 * `npm run example:observability`: the simulated bot of `npm start`, observed. Its metrics are
 * served to Prometheus at `http://127.0.0.1:9464/metrics` (`METRICS_HOST`, `METRICS_PORT`) and its spans go to
 * an OpenTelemetry collector over OTLP/HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT`, default
 * `http://localhost:4318`; nothing breaks if none listens). After the run it keeps serving the
 * metrics until Ctrl+C, which sends the spans still buffered before the process exits.
 *
 * The library needs nothing for this: its metrics are Effect `Metric`s and its spans Effect
 * spans, so `@effect/opentelemetry`'s `NodeSdk.layer` with the OpenTelemetry SDK's Prometheus
 * exporter and OTLP span exporter is all there is to it (the versions are in the README).
 */
import { NodeSdk } from "@effect/opentelemetry"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Config, Console, Effect } from "effect"
import { QueueManager } from "../src/index.js"
import { runMain } from "./main.js"
import { botLoad, formatReport, simulate } from "./simulation.js"

const metricsPort = Config.integer("METRICS_PORT").pipe(
  Config.withDefault(9464),
  Config.validate({
    message: "METRICS_PORT must be a whole number from 1 to 65535",
    validation: (port) => port >= 1 && port <= 65535
  })
)

// loopback by default; METRICS_HOST=0.0.0.0 lets a Prometheus in a container or on another host scrape it
const metricsHost = Config.string("METRICS_HOST").pipe(Config.withDefault("127.0.0.1"))

const Observability = NodeSdk.layer(
  Effect.map(Config.all([metricsHost, metricsPort]), ([host, port]) => ({
    resource: { serviceName: "downloader-bot" },
    metricReader: new PrometheusExporter({ host, port }),
    spanProcessor: new BatchSpanProcessor(new OTLPTraceExporter())
  }))
)

/** One chat sends six links at once and queues them (`onFull: "wait"`), so the wait histogram fills. */
const queuedBurst = Effect.gen(function* () {
  const queue = yield* QueueManager.QueueManager
  const download = queue.withSlot(1, { onFull: "wait" })(Effect.sleep("50 millis"))
  yield* Effect.all(
    Array.from({ length: 6 }, () => download),
    { concurrency: "unbounded" }
  )
})

const program = Effect.gen(function* () {
  const report = yield* simulate(botLoad)
  yield* queuedBurst
  yield* Console.log(formatReport(report))
  yield* Console.log(`metrics: http://${yield* metricsHost}:${yield* metricsPort}/metrics (Ctrl+C stops)`)
  return yield* Effect.never
}).pipe(Effect.provide(QueueManager.layerConfig()), Effect.provide(Observability))

runMain(program)
