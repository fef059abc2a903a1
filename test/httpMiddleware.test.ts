import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpApp } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Data, Deferred, Effect, Fiber, HashMap, Option, Queue, Stream } from "effect"
import { createServer } from "node:http"
import type { Server } from "node:http"
import type { AddressInfo } from "node:net"
import * as QueueHttp from "../src/HttpMiddleware.js"
import { QueueManager } from "../src/index.js"
import { eventually } from "./eventually.js"
import { runExample } from "./exampleProcess.js"

type Middleware = ReturnType<typeof QueueHttp.make<never, never>>

/** Where the middleware is applied: on the one route, on the router, or as the server's middleware. */
type Placement = "route" | "router" | "server"

interface Served {
  readonly url: string
  readonly node: Server
}

/** Serves `handler` at `/work` on a real Node server on a free loopback port, guarded by `middleware`. */
const serve = <E, R>(
  handler: HttpApp.Default<E, R>,
  middleware: Middleware,
  placement: Placement = "route",
  plainApp = false
) =>
  Effect.gen(function* () {
    const node = createServer()
    const server = yield* NodeHttpServer.make(() => node, { port: 0, host: "127.0.0.1" })
    // a failed test may leave a request open: drop every connection before the server closes
    yield* Effect.addFinalizer(() => Effect.sync(() => node.closeAllConnections()))
    const guarded = placement === "route" ? middleware(handler) : handler
    const router = HttpRouter.empty.pipe(HttpRouter.get("/work", guarded))
    const app = plainApp ? guarded : placement === "router" ? router.pipe(HttpRouter.use(middleware)) : router
    yield* placement === "server" ? server.serve(app, middleware) : server.serve(app)
    const address = server.address
    if (address._tag !== "TcpAddress") return yield* Effect.die("expected a TCP address")
    return { url: `http://127.0.0.1:${address.port}/work`, node } satisfies Served
  })

const userHeader = QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id") })

const headersOf = (userId: string | undefined): Record<string, string> =>
  userId === undefined ? {} : { "x-user-id": userId }

/** Sends a request as `userId` and reads the whole answer. */
const get = (url: string, userId?: string) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers: headersOf(userId) })
    return {
      status: response.status,
      type: response.headers.get("content-type"),
      headers: Object.fromEntries(response.headers),
      body: await response.text()
    }
  })

/** Sends a request as `userId` and waits until it is inside the handler; gives the fiber of its answer. */
const insideHandler = (url: string, entered: Queue.Queue<string>, userId?: string) =>
  Effect.zipLeft(Effect.fork(get(url, userId)), Queue.take(entered))

/** A handler that reports who entered it on `entered`, then waits for `gate`. */
const gatedHandler = (entered: Queue.Queue<string>, gate: Deferred.Deferred<void>) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    yield* Queue.offer(entered, request.headers["x-user-id"] ?? "(none)")
    yield* Deferred.await(gate)
    return HttpServerResponse.text("done")
  })

/** A gate opened when the test's scope closes at the latest, so a failing test still lets its requests end. */
const makeGate = Effect.acquireRelease(Deferred.make<void>(), (gate) => Deferred.succeed(gate, undefined))

const counts = Effect.flatMap(QueueManager.QueueManager, (queue) =>
  Effect.map(queue.snapshot, (snapshot) => Object.fromEntries(HashMap.toEntries(snapshot)))
)

const allReleased = eventually("every slot released", counts, (now) => Object.keys(now).length === 0)

/** Opens the gate, then checks that the request held inside the handler is answered and every slot returns. */
const openAndFinish = (gate: Deferred.Deferred<void>, held: Fiber.Fiber<{ readonly status: number }>) =>
  Effect.gen(function* () {
    yield* Deferred.succeed(gate, undefined)
    expect((yield* Fiber.join(held)).status).toBe(200)
    yield* allReleased
  })

const provide = (maxUserQueue: number) => Effect.provide(QueueManager.layer({ maxUserQueue }))

describe("HttpMiddleware over a real Node server", () => {
  it.scopedLive("refuses requests over the limit with 429 and a JSON body; other users are unaffected", () =>
    Effect.gen(function* () {
      const entered = yield* Queue.unbounded<string>()
      const gate = yield* makeGate
      const { url } = yield* serve(gatedHandler(entered, gate), userHeader)

      const inFlight = yield* Effect.forEach(["alice", "alice", "bob"], (user) => Effect.fork(get(url, user)))
      expect(Array.from(yield* Queue.takeBetween(entered, 3, 3)).sort()).toEqual(["alice", "alice", "bob"])
      expect(yield* counts).toEqual({ alice: 2, bob: 1 })

      const refused = yield* get(url, "alice")
      expect(refused.status).toBe(429)
      expect(refused.headers["retry-after"]).toBe("1")
      expect(refused.headers["ratelimit"]).toBeUndefined() // the IETF fields are opt-in
      expect(refused.type).toMatch(/^application\/json/)
      expect(JSON.parse(refused.body)).toEqual({
        error: "QueueFull",
        userId: "alice",
        reason: "user",
        active: 2,
        limit: 2,
        message: "user alice already holds 2 of 2 slots"
      })
      expect(yield* Queue.size(entered)).toBe(0)

      yield* Deferred.succeed(gate, undefined)
      const answers = yield* Fiber.joinAll(inFlight)
      expect(answers.map((a) => [a.status, a.body])).toEqual([
        [200, "done"],
        [200, "done"],
        [200, "done"]
      ])
      yield* allReleased
      expect((yield* get(url, "alice")).status).toBe(200)
    }).pipe(provide(2))
  )

  describe.each<Placement>(["route", "router", "server"])("applied to the %s", (placement) => {
    it.scopedLive("holds the slot until a streaming body has been written", () =>
      Effect.gen(function* () {
        const gate = yield* makeGate
        const body = Stream.concat(
          Stream.make("first;"),
          Stream.fromEffect(Effect.as(Deferred.await(gate), "last"))
        ).pipe(Stream.encodeText)
        const { url } = yield* serve(Effect.succeed(HttpServerResponse.stream(body)), userHeader, placement)

        const response = yield* Effect.promise(() => fetch(url, { headers: headersOf("alice") }))
        const reader = response.body!.getReader()
        const decoder = new TextDecoder()
        const first = yield* Effect.promise(() => reader.read())
        expect(decoder.decode(first.value)).toBe("first;")
        // the handler has returned its response; the body is still being written
        expect(yield* counts).toEqual({ alice: 1 })
        expect((yield* get(url, "alice")).status).toBe(429)

        yield* Deferred.succeed(gate, undefined)
        const rest = yield* Effect.promise(() => reader.read())
        expect(decoder.decode(rest.value)).toBe("last")
        expect((yield* Effect.promise(() => reader.read())).done).toBe(true)
        yield* allReleased
      }).pipe(provide(1))
    )
  })

  it.scopedLive("a client that disconnects releases its slot: the server interrupts the route's handler", () =>
    Effect.gen(function* () {
      const entered = yield* Queue.unbounded<string>()
      const interrupted = yield* Deferred.make<void>()
      const handler = Effect.zipRight(
        Queue.offer(entered, "alice"),
        Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, undefined))
      )
      const { url } = yield* serve(handler, userHeader)

      const abort = new AbortController()
      const request = fetch(url, { headers: headersOf("alice"), signal: abort.signal }).catch((e: Error) => e.name)
      yield* Queue.take(entered)
      expect(yield* counts).toEqual({ alice: 1 })
      abort.abort()
      expect(yield* Effect.promise(() => request)).toBe("AbortError")
      yield* Deferred.await(interrupted)
      yield* allReleased
    }).pipe(provide(1))
  )

  it.scopedLive.each<Placement>(["route", "server"])(
    "a client that disconnects from an uninterruptible app (middleware on the %s): the slot is held while the handler runs, released when it ends",
    (placement) =>
      Effect.gen(function* () {
        const entered = yield* Queue.unbounded<string>()
        const gate = yield* makeGate
        const { url, node } = yield* serve(gatedHandler(entered, gate), userHeader, placement, true)
        const closedOnServer = yield* Deferred.make<void>()
        node.on("request", (_request, response) =>
          response.on("close", () => Deferred.unsafeDone(closedOnServer, Effect.void))
        )

        const abort = new AbortController()
        const request = fetch(url, { headers: headersOf("alice"), signal: abort.signal }).catch((e: Error) => e.name)
        yield* Queue.take(entered)
        abort.abort()
        expect(yield* Effect.promise(() => request)).toBe("AbortError")
        yield* Deferred.await(closedOnServer)
        // the platform runs a plain app to its end: its work still counts
        expect(yield* counts).toEqual({ alice: 1 })
        expect((yield* get(url, "alice")).status).toBe(429)

        yield* Deferred.succeed(gate, undefined)
        yield* allReleased
      }).pipe(provide(1))
  )

  describe("requests without a user key", () => {
    it.scopedLive("are refused with 400 by default, naming what was wrong; the handler never runs", () =>
      Effect.gen(function* () {
        const entered = yield* Queue.unbounded<string>()
        const gate = yield* makeGate
        yield* Deferred.succeed(gate, undefined)
        const { url } = yield* serve(gatedHandler(entered, gate), userHeader)

        const missing = yield* get(url)
        expect(missing.status).toBe(400)
        expect(missing.headers["retry-after"]).toBeUndefined() // trying again will not help
        expect(JSON.parse(missing.body)).toEqual({
          error: "MissingUserKey",
          detail: "no key given",
          message: "no valid user key: no key given"
        })
        const empty = yield* get(url, "")
        expect(empty.status).toBe(400)
        expect(JSON.parse(empty.body).detail).toBe('QueueManager: invalid userId "": a string id must not be empty')
        expect(yield* Queue.size(entered)).toBe(0)
      }).pipe(provide(1))
    )

    it.scopedLive("run without a slot under onMissingKey: allow", () =>
      Effect.gen(function* () {
        const entered = yield* Queue.unbounded<string>()
        const gate = yield* makeGate
        const allow = QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id"), onMissingKey: "allow" })
        const { url } = yield* serve(gatedHandler(entered, gate), allow)

        const inFlight = yield* Effect.forEach([1, 2, 3], () => Effect.fork(get(url)))
        yield* Queue.takeBetween(entered, 3, 3)
        expect(yield* counts).toEqual({})
        yield* Deferred.succeed(gate, undefined)
        expect((yield* Fiber.joinAll(inFlight)).map((a) => a.status)).toEqual([200, 200, 200])
      }).pipe(provide(1))
    )

    it.scopedLive("share one allowance under onMissingKey: { shared }", () =>
      Effect.gen(function* () {
        const entered = yield* Queue.unbounded<string>()
        const gate = yield* makeGate
        const shared = QueueHttp.make({
          userKey: QueueHttp.fromHeader("x-user-id"),
          onMissingKey: { shared: "anonymous" }
        })
        const { url } = yield* serve(gatedHandler(entered, gate), shared)

        const first = yield* insideHandler(url, entered)
        expect(yield* counts).toEqual({ anonymous: 1 })
        const second = yield* get(url)
        expect(second.status).toBe(429)
        expect(JSON.parse(second.body)).toMatchObject({ userId: "anonymous", limit: 1 })
        yield* openAndFinish(gate, first)
      }).pipe(provide(1))
    )
  })

  it.scopedLive("answers with a custom response, and takes the key from an Effect", () =>
    Effect.gen(function* () {
      const entered = yield* Queue.unbounded<string>()
      const gate = yield* makeGate
      class Unauthorized extends Data.TaggedError("Unauthorized") {}
      const custom = QueueHttp.make({
        // a numeric account id from a "token"; a token of "bad" fails authentication
        userKey: (request) => {
          const token = request.headers["x-user-id"]
          return token === "bad" ? Effect.fail(new Unauthorized()) : Effect.succeed(Option.some(Number(token)))
        },
        onRefused: (refusal) =>
          Effect.succeed(
            HttpServerResponse.text(
              refusal._tag === "QueueFull"
                ? `busy: ${refusal.active}/${refusal.limit}`
                : refusal._tag === "MissingUserKey"
                  ? `who are you? ${refusal.detail}`
                  : refusal.message,
              { status: 503 }
            )
          )
      })
      const handler = gatedHandler(entered, gate)
      const { url } = yield* serve(handler, ((self) =>
        custom(self).pipe(
          Effect.catchTag("Unauthorized", () => Effect.succeed(HttpServerResponse.empty({ status: 401 })))
        )) as Middleware)

      const first = yield* insideHandler(url, entered, "7")
      expect(yield* counts).toEqual({ 7: 1 })
      expect(yield* get(url, "7")).toMatchObject({ status: 503, body: "busy: 1/1" })
      expect(yield* get(url, "x")).toMatchObject({
        status: 503,
        body: "who are you? QueueManager: invalid userId NaN: a number id must be a safe integer"
      })
      expect((yield* get(url, "bad")).status).toBe(401)
      yield* openAndFinish(gate, first)
    }).pipe(provide(1))
  )

  it.scopedLive("passes slot options through: with onFull wait, a request over the limit waits for a slot", () =>
    Effect.gen(function* () {
      const entered = yield* Queue.unbounded<string>()
      const gate = yield* makeGate
      const waiting = QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id"), slotOptions: { onFull: "wait" } })
      const { url } = yield* serve(gatedHandler(entered, gate), waiting)

      const first = yield* insideHandler(url, entered, "alice")
      const second = yield* Effect.fork(get(url, "alice"))
      const queue = yield* QueueManager.QueueManager
      yield* eventually("the second request waits", Effect.orDie(queue.stats), (s) => s.waiting === 1)
      expect(yield* Queue.size(entered)).toBe(0)

      yield* Deferred.succeed(gate, undefined)
      expect((yield* Fiber.join(first)).status).toBe(200)
      expect(yield* Queue.take(entered)).toBe("alice")
      expect((yield* Fiber.join(second)).status).toBe(200)
      yield* allReleased
    }).pipe(provide(1))
  )

  it.scopedLive("answers 503 once the manager is shut down", () =>
    Effect.gen(function* () {
      const entered = yield* Queue.unbounded<string>()
      const gate = yield* makeGate
      const { url } = yield* serve(gatedHandler(entered, gate), userHeader)
      yield* Effect.flatMap(QueueManager.QueueManager, (queue) => queue.shutdown)

      const refused = yield* get(url, "alice")
      expect(refused.status).toBe(503)
      expect(refused.headers["retry-after"]).toBe("1")
      expect(JSON.parse(refused.body)).toEqual({
        error: "QueueShutdown",
        userId: "alice",
        message: "the queue manager is shut down (request of user alice)"
      })
      expect(yield* Queue.size(entered)).toBe(0)
    }).pipe(provide(1))
  )

  describe("headers telling a client when to come back", () => {
    const full = (middleware: Middleware) =>
      Effect.gen(function* () {
        const entered = yield* Queue.unbounded<string>()
        const gate = yield* makeGate
        const { url } = yield* serve(gatedHandler(entered, gate), middleware)
        const first = yield* insideHandler(url, entered, "alice")
        return { url, finish: openAndFinish(gate, first) }
      })

    it.scopedLive("retryAfter sets the seconds for every refusal, per refusal, or not at all", () =>
      Effect.gen(function* () {
        const userKey = QueueHttp.fromHeader("x-user-id")
        const seconds = yield* full(QueueHttp.make({ userKey, retryAfter: 7 }))
        expect((yield* get(seconds.url, "alice")).headers["retry-after"]).toBe("7")
        yield* seconds.finish
        const perRefusal = yield* full(
          // with jitter: rounded up to whole seconds
          QueueHttp.make({
            userKey,
            retryAfter: (refusal) => (refusal._tag === "QueueFull" ? refusal.limit * 1.5 : 30)
          })
        )
        expect((yield* get(perRefusal.url, "alice")).headers["retry-after"]).toBe("2")
        yield* perRefusal.finish
        const never = yield* full(QueueHttp.make({ userKey, retryAfter: false }))
        const refused = yield* get(never.url, "alice")
        expect([refused.status, refused.headers["retry-after"]]).toEqual([429, undefined])
        yield* never.finish
      }).pipe(provide(1))
    )

    it.scopedLive("a custom refusal response keeps its own Retry-After", () =>
      Effect.gen(function* () {
        const { url, finish } = yield* full(
          QueueHttp.make({
            userKey: QueueHttp.fromHeader("x-user-id"),
            onRefused: () => HttpServerResponse.text("later", { status: 429, headers: { "retry-after": "120" } })
          })
        )
        expect(yield* get(url, "alice")).toMatchObject({
          status: 429,
          body: "later",
          headers: { "retry-after": "120" }
        })
        yield* finish
      }).pipe(provide(1))
    )

    it.scopedLive("rateLimitHeaders: each answer tells the user's quota and what remains, 0 on a 429", () =>
      Effect.gen(function* () {
        const entered = yield* Queue.unbounded<string>()
        const gate = yield* makeGate
        const middleware = QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id"), rateLimitHeaders: true })
        const { url } = yield* serve(gatedHandler(entered, gate), middleware)
        const held = yield* insideHandler(url, entered, "alice")
        // bob's request, served (the gate open): bob holds one of his two, one remains
        yield* Deferred.succeed(gate, undefined)
        const served = yield* get(url, "bob")
        expect(served.headers["ratelimit-policy"]).toBe('"user";q=2;qu="concurrent-requests"')
        expect(served.headers["ratelimit"]).toBe('"user";r=1')
        expect((yield* Fiber.join(held)).status).toBe(200)
        yield* allReleased
      }).pipe(provide(2))
    )

    it.scopedLive("rateLimitHeaders on refusals: the user's limit, or maxTotal's", () =>
      Effect.gen(function* () {
        const entered = yield* Queue.unbounded<string>()
        const gate = yield* makeGate
        const middleware = QueueHttp.make({ userKey: QueueHttp.fromHeader("x-user-id"), rateLimitHeaders: true })
        const { url } = yield* serve(gatedHandler(entered, gate), middleware)
        const first = yield* insideHandler(url, entered, "alice")
        const second = yield* insideHandler(url, entered, "bob")
        const user = yield* get(url, "alice")
        expect([user.status, user.headers["ratelimit-policy"], user.headers["ratelimit"]]).toEqual([
          429,
          '"user";q=1;qu="concurrent-requests"',
          '"user";r=0'
        ])
        const global = yield* get(url, "carol")
        expect([global.status, global.headers["ratelimit-policy"], global.headers["ratelimit"]]).toEqual([
          429,
          '"global";q=2;qu="concurrent-requests"',
          '"global";r=0'
        ])
        yield* openAndFinish(gate, first)
        expect((yield* Fiber.join(second)).status).toBe(200)
      }).pipe(Effect.provide(QueueManager.layer({ maxUserQueue: 1, maxTotal: 2 })))
    )
  })

  it("rejects invalid options, naming the option and the value", () => {
    const make = QueueHttp.make as (options: unknown) => unknown
    expect(() => make({ userKey: "x-user-id" })).toThrow(
      'effect-queue-manager/HttpMiddleware: userKey must be a function, got "x-user-id"'
    )
    expect(() => make(undefined)).toThrow("options must be an object, got undefined")
    expect(() => make({ userKey: () => 1, onMissingKey: "deny" })).toThrow(
      'onMissingKey must be "allow", "reject" or { shared: <a valid user id> }, got "deny"'
    )
    expect(() => make({ userKey: () => 1, onMissingKey: { shared: "" } })).toThrow('got {"shared":""}')
    expect(() => make({ userKey: () => 1, onRefused: 429 })).toThrow("onRefused must be a function, got 429")
    expect(() => make({ userKey: () => 1, retryAfter: -1 })).toThrow(
      "retryAfter must be whole seconds >= 0, a function of the refusal, or false, got -1"
    )
    expect(() => make({ userKey: () => 1, retryAfter: true })).toThrow("retryAfter must be whole seconds")
    expect(() => make({ userKey: () => 1, rateLimitHeaders: "yes" })).toThrow(
      'rateLimitHeaders must be a boolean, got "yes"'
    )
  })
})

describe("the example server (npm run example:http)", () => {
  it.scopedLive("limits downloads per x-user-id, reports the state on /stats, and frees a slot on disconnect", () =>
    Effect.gen(function* () {
      const example = yield* runExample("examples/http-server.ts", { PORT: "0", MAX_USER_QUEUE_SIZE: "1" })
      const [, base] = yield* example.waitFor(/Listening on (http:\/\/127\.0\.0\.1:\d+)/)
      const stats = Effect.promise(() =>
        fetch(`${base}/stats`).then((r) => r.json() as Promise<{ activeUsers: number }>)
      )

      const abort = new AbortController()
      const download = yield* Effect.promise(() =>
        fetch(`${base}/download/a.mp4`, { headers: headersOf("alice"), signal: abort.signal })
      )
      const reader = download.body!.getReader()
      const first = yield* Effect.promise(() => reader.read())
      expect(new TextDecoder().decode(first.value)).toBe("a.mp4: 10%\n")
      expect(yield* stats).toMatchObject({ maxUserQueue: 1, activeUsers: 1, inFlight: 1, users: { alice: 1 } })

      const refused = yield* get(`${base}/download/b.mp4`, "alice")
      expect(refused.status).toBe(429)
      expect(JSON.parse(refused.body)).toMatchObject({ error: "QueueFull", reason: "user", active: 1, limit: 1 })
      expect((yield* get(`${base}/download/b.mp4`)).status).toBe(400)

      abort.abort()
      yield* eventually("the example released alice's slot", stats, (s) => s.activeUsers === 0)
      expect(yield* stats).toMatchObject({ maxUserQueue: 1, activeUsers: 0, inFlight: 0, users: {} })

      example.child.kill("SIGTERM")
      expect(yield* example.exited).toBe(0)
    })
  )

  it.scopedLive("a PORT already in use stops it at start, saying so", () =>
    Effect.gen(function* () {
      const taken = createServer()
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void taken.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.async<void>((resume) => void taken.close(() => resume(Effect.void)))
      )
      const { port } = taken.address() as AddressInfo
      const example = yield* runExample("examples/http-server.ts", { PORT: String(port) })
      expect(yield* example.exited).toBe(1)
      expect(example.output()).toBe(`ServeError: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`)
    })
  )

  it.scopedLive("a bad PORT stops it at start, saying which setting and why", () =>
    Effect.gen(function* () {
      const example = yield* runExample("examples/http-server.ts", { PORT: "70000" })
      expect(yield* example.exited).toBe(1)
      expect(example.output()).toBe("bad configuration:\nPORT must be a whole number from 0 to 65535\n")
    })
  )
})
