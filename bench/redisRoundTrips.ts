import { Effect } from "effect"
import { Redis } from "ioredis"
import { LIMIT } from "./harness.js"
import { withPeers, redisUrl } from "./redisPeers.js"
import { num, type Benchmark } from "./report.js"

const OURS = "QueueManager, Redis store (`tryAcquire`, `release`)"
const PEER = "redis-semaphore (`acquire()`, `release()`)"

/**
 * Counts the commands clients send whose arguments contain `marker` while `phase` runs, with
 * Redis's MONITOR (commands run inside a Lua script are not counted: they are no round trip).
 */
const countCommands = async (marker: string, phase: () => Promise<void>): Promise<number> => {
  const base = new Redis(redisUrl)
  const monitor = await base.monitor()
  let count = 0
  let sawEnd: () => void = () => {}
  let noEnd: (error: Error) => void = () => {}
  const end = new Promise<void>((resolve, reject) => ((sawEnd = resolve), (noEnd = reject)))
  const endMarker = `${marker}:end`
  monitor.on("monitor", (_time: string, args: ReadonlyArray<string>, source: string) => {
    if (source === "lua") return
    if (args.includes(endMarker)) sawEnd()
    else if (args.some((arg) => arg.includes(marker))) count++
  })
  await phase()
  // MONITOR reports commands in the order Redis ran them: once it shows this one, it has shown the phase's
  const probe = new Redis(redisUrl)
  await probe.echo(endMarker)
  const timeout = setTimeout(() => noEnd(new Error("MONITOR did not show the end of the phase within 10 s")), 10_000)
  await end
  clearTimeout(timeout)
  await probe.quit()
  monitor.disconnect()
  base.disconnect()
  return count
}

/**
 * Issue 4, item 8: round trips per acquire and per release, counted on the server, against
 * redis-semaphore.
 */
export const redisRoundTrips: Benchmark = {
  id: "redis-round-trips",
  needsRedis: true,
  rows: [OURS, PEER],
  run: async (quick) => {
    const operations = quick ? 20 : 500
    const users = Array.from({ length: operations }, (_, i) => i)
    return withPeers(async (peers) => {
      const queue = await peers.ours({ maxUserQueue: LIMIT })
      // warm up: load the scripts on both connections, so that each call is its cached EVALSHA
      await Effect.runPromise(queue.withSlot(-1)(Effect.void))
      const warm = peers.semaphore(-1, LIMIT)
      await warm.acquire()
      await warm.release()
      const ours = {
        acquire: await countCommands(peers.prefix, () =>
          Effect.runPromise(Effect.forEach(users, (user) => queue.tryAcquire(user), { discard: true }))
        ),
        // a release is not waited for: it goes out on the next turn of the event loop, so give each its own turn
        release: await countCommands(peers.prefix, async () => {
          for (const user of users) {
            await Effect.runPromise(queue.release(user))
            await new Promise((resolve) => setImmediate(resolve))
          }
        })
      }
      const semaphores = users.map((user) => peers.semaphore(user, LIMIT))
      const peer = {
        acquire: await countCommands(peers.prefix, async () => {
          for (const semaphore of semaphores) await semaphore.acquire()
        }),
        release: await countCommands(peers.prefix, async () => {
          for (const semaphore of semaphores) await semaphore.release()
        })
      }
      const perOperation = (count: number) => num(count / operations, 2)
      return {
        title: "8. Redis: round trips per acquire and per release",
        setup:
          `${num(operations)} acquisitions (one per user, none refused), then their ${num(operations)} releases, one ` +
          `after the other; Redis's \`MONITOR\` counts the commands each contender's connections send (each awaited ` +
          `on its own, so one command is one round trip; the commands a Lua script runs are not counted). Our ` +
          `release is not waited for: it is sent on the next turn of Node's event loop, together with whatever ` +
          `else this process asked for meanwhile, so here each release is given a turn of its own. Under load one round trip carries many operations (up to 16).`,
        header: ["contender", "round trips per acquire", "round trips per release"],
        rows: [
          [OURS, perOperation(ours.acquire), perOperation(ours.release)],
          [PEER, perOperation(peer.acquire), perOperation(peer.release)]
        ],
        targets: [
          {
            what: "Redis: round trips per acquire + release, QueueManager",
            goal: "≤ 1 + ≤ 1",
            value: `${perOperation(ours.acquire)} + ${perOperation(ours.release)}`,
            met: ours.acquire <= operations && ours.release <= operations
          }
        ],
        notes: []
      }
    })
  }
}
