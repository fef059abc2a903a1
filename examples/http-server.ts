/**
 * `npm run example:http`: an HTTP server where each user (the `x-user-id` header) may run at
 * most `MAX_USER_QUEUE_SIZE` (default 3) downloads at once.
 *
 * - `GET /download/:file` streams ten progress lines, one every 300 ms; a user over the limit
 *   gets `429` with a JSON body, a request without `x-user-id` gets `400`.
 * - `GET /stats` returns the limiter's state: its `stats` (`inFlight`, `activeUsers`, `waiting`,
 *   refusals by reason, the limits…) and `users: { id: count }`.
 *
 * Listens on `HOST` (default `127.0.0.1`) and `PORT` (default 3000; `0` picks a free port).
 *
 * ```sh
 * curl -N -H 'x-user-id: alice' localhost:3000/download/video.mp4
 * curl localhost:3000/stats
 * ```
 */
import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Config, Effect, HashMap, Layer, Schedule, Stream } from "effect"
import { createServer } from "node:http"
import * as QueueHttp from "../src/HttpMiddleware.js"
import { QueueManager } from "../src/index.js"
import { runMain } from "./main.js"

const perUser = QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id") })

/** A slow download: its slot is held until the last line has been written. */
const download = Effect.map(HttpRouter.params, ({ file }) =>
  HttpServerResponse.stream(
    Stream.range(1, 10).pipe(
      Stream.schedule(Schedule.spaced("300 millis")),
      Stream.map((step) => `${file}: ${step * 10}%\n`),
      Stream.encodeText
    ),
    { contentType: "text/plain" }
  )
)

const stats = Effect.gen(function* () {
  const queue = yield* QueueManager.QueueManager
  return yield* HttpServerResponse.json({
    ...(yield* queue.stats),
    users: Object.fromEntries(HashMap.toEntries(yield* queue.snapshot))
  })
})

const router = HttpRouter.empty.pipe(
  HttpRouter.get("/download/:file", download.pipe(perUser)),
  HttpRouter.get("/stats", stats)
)

const ServerLive = NodeHttpServer.layerConfig(createServer, {
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.integer("PORT").pipe(
    Config.withDefault(3000),
    Config.validate({ message: "PORT must be a whole number from 0 to 65535", validation: (p) => p >= 0 && p <= 65535 })
  )
})

router.pipe(
  HttpServer.serve(),
  HttpServer.withLogAddress,
  Layer.provide(ServerLive),
  Layer.provide(QueueManager.layerConfig()),
  Layer.launch,
  runMain
)
