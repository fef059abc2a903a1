/**
 * A loopback TCP proxy in front of a redis-server, whose behaviour a test switches while
 * clients are connected: pass-through, added latency, blackhole, or a cut of every connection.
 */
import { connect, createServer, type Socket } from "node:net"
import { Effect } from "effect"
import type { Scope } from "effect"

/** What the proxy does with the bytes it receives. */
export type Mode =
  | { readonly _tag: "pass" }
  | { readonly _tag: "latency"; readonly ms: number }
  | { readonly _tag: "blackhole" }

/** The proxy; clients connect to `port`. */
export interface Proxy {
  readonly port: number
  readonly mode: () => Mode
  /** Forward at once. Connections that lost bytes in a blackhole are cut first (see `blackhole`). */
  readonly passThrough: Effect.Effect<void>
  /** Delay every chunk by `ms`, in each direction, keeping the order of each connection's bytes. */
  readonly latency: (ms: number) => Effect.Effect<void>
  /**
   * Keep every connection open (new ones are accepted too) but forward nothing: what arrives
   * is dropped, nothing is buffered, so no one hears anything, as behind a dead link. TCP never
   * delivers a stream with a hole in it, so when forwarding resumes the connections that lost
   * bytes are cut (their clients see the connection end and reconnect).
   */
  readonly blackhole: Effect.Effect<void>
  /** Destroys every current connection (a reset to the client). */
  readonly cut: Effect.Effect<void>
  /** Connections open now. */
  readonly connections: () => number
}

/** One direction of one connection: chunks waiting for their time, in order. */
class Lane {
  private queue: Array<{ readonly at: number; readonly chunk: Buffer }> = []
  private timer: ReturnType<typeof setTimeout> | undefined
  constructor(private readonly to: Socket) {}
  send(chunk: Buffer, delay: number) {
    if (delay <= 0 && this.queue.length === 0) {
      this.to.write(chunk)
      return
    }
    this.queue.push({ at: performance.now() + delay, chunk })
    if (this.timer === undefined) this.arm()
  }
  /** Forgets what waits; whether anything did. */
  drop(): boolean {
    const had = this.queue.length > 0
    this.queue = []
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    return had
  }
  private arm() {
    this.timer = setTimeout(() => this.flush(), Math.max(0, this.queue[0]!.at - performance.now()))
  }
  private flush() {
    this.timer = undefined
    const t = performance.now()
    while (this.queue.length > 0 && this.queue[0]!.at <= t) this.to.write(this.queue.shift()!.chunk)
    if (this.queue.length > 0) this.arm()
  }
}

interface Link {
  readonly client: Socket
  readonly upstream: Socket
  readonly up: Lane
  readonly down: Lane
  /** Bytes of it were dropped: it can no longer carry a consistent stream. */
  tainted: boolean
}

/** A proxy on a free loopback port forwarding to the redis-server on `target`, until the scope closes. */
export const makeProxy = (target: number): Effect.Effect<Proxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Proxy & { readonly close: (done: () => void) => void }>((resume) => {
      let mode: Mode = { _tag: "pass" }
      const links = new Set<Link>()
      const end = (link: Link) => {
        links.delete(link)
        link.up.drop()
        link.down.drop()
        link.client.destroy()
        link.upstream.destroy()
      }
      const forward = (link: Link, lane: Lane, chunk: Buffer) => {
        if (mode._tag === "blackhole") link.tainted = true
        else lane.send(chunk, mode._tag === "latency" ? mode.ms : 0)
      }
      const server = createServer((client) => {
        const upstream = connect({ host: "127.0.0.1", port: target })
        client.setNoDelay(true)
        upstream.setNoDelay(true)
        const link: Link = { client, upstream, up: new Lane(upstream), down: new Lane(client), tainted: false }
        links.add(link)
        client.on("data", (chunk: Buffer) => forward(link, link.up, chunk))
        upstream.on("data", (chunk: Buffer) => forward(link, link.down, chunk))
        for (const socket of [client, upstream]) {
          socket.on("error", () => end(link))
          socket.on("close", () => end(link))
        }
      })
      const heal = () => {
        if (mode._tag !== "blackhole") return
        for (const link of links) if (link.tainted) end(link)
      }
      server.listen(0, "127.0.0.1", () =>
        resume(
          Effect.succeed({
            port: (server.address() as { port: number }).port,
            mode: () => mode,
            passThrough: Effect.sync(() => {
              heal()
              mode = { _tag: "pass" }
            }),
            latency: (ms) =>
              Effect.sync(() => {
                heal()
                mode = { _tag: "latency", ms }
              }),
            blackhole: Effect.sync(() => {
              mode = { _tag: "blackhole" }
              for (const link of links) {
                const dropped = link.up.drop()
                if (link.down.drop() || dropped) link.tainted = true
              }
            }),
            cut: Effect.sync(() => {
              for (const link of links) {
                link.client.resetAndDestroy()
                end(link)
              }
            }),
            connections: () => links.size,
            close: (done) => {
              for (const link of links) end(link)
              server.close(() => done())
            }
          })
        )
      )
    }),
    (proxy) => Effect.async<void>((resume) => proxy.close(() => resume(Effect.void)))
  )
