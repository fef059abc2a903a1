import { type ChildProcess, spawn } from "node:child_process"
import { createServer } from "node:net"
import { Effect } from "effect"
import { Redis } from "ioredis"

/** A free loopback port. */
export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as { port: number }
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Waits until a Redis on `port` answers PING. */
const answering = (port: number) =>
  Effect.promise(async () => {
    for (let i = 0; i < 100; i++) {
      const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null })
      probe.on("error", () => {})
      const ok = await probe
        .connect()
        .then(() => probe.ping())
        .then(
          () => true,
          () => false
        )
      probe.disconnect()
      if (ok) return
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error(`redis-server on port ${port} did not start`)
  })

/** Spawns `redis-server` on loopback `port`, keeping nothing on disk, with the extra arguments `args`. */
const spawnServer = (port: number, args: ReadonlyArray<string>) =>
  Effect.sync(() => {
    const loopbackNoDisk = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return spawn("redis-server", [...loopbackNoDisk, ...args], { stdio: "ignore" })
  })

/**
 * A `redis-server` of the test's own on `port` (never the shared one), with the extra arguments
 * `args`, until the scope closes or it is stopped.
 */
export const startRedis = (port: number, args: ReadonlyArray<string> = []) =>
  Effect.acquireRelease(
    Effect.tap(spawnServer(port, args), () => answering(port)),
    (child) => stop(child)
  )

/** Stops a redis-server started by `startRedis` (SIGKILL: no goodbye to its clients). */
export const stop = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

/**
 * Starts a `redis-server` of the test's own on `port` (no persistence) and waits until it
 * answers. Unlike `startRedis`, no scope stops it: for the fault tests, which kill and restart
 * a server in place and stop it by its pid themselves.
 */
export const spawnRedis = (port: number) =>
  Effect.flatMap(
    spawnServer(port, []),
    // a server that never answers is not left behind
    (child) =>
      Effect.as(
        Effect.onError(answering(port), () => stop(child)),
        child
      )
  )
