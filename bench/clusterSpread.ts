/**
 * `npm run bench:spread`: what spreading the store's keys over a Redis Cluster's masters could
 * gain, measured before building a layout that does (docs/sharding.md). On a cluster of three
 * masters of its own, 64 callers cycle slots (`withSlot` in wait mode, an empty body) for
 * `SECONDS` (default 5) over three prefixes whose slots sit either all on one master or one on
 * each, from one client process and from three. Today's layout puts each prefix on one master,
 * so prefixes spread over the masters are the most a layout spreading one prefix's users could
 * reach (it would add a round trip where `maxTotal` is set). Prints two lines per round (one
 * client process, then three).
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Effect } from "effect"
import { Cluster } from "ioredis"
import * as RedisStore from "../src/RedisStore.js"
import { startCluster } from "../test/cluster/setup.js"

const CALLERS = 64
const ROUNDS = 3
const SECONDS = Number(process.env["SECONDS"] ?? 5)

/** A client process: `callers` loops over `prefixes` for `SECONDS`; prints the cycles done. */
const client = async (ports: ReadonlyArray<number>, prefixes: ReadonlyArray<string>, callers: number) => {
  const redis = new Cluster(ports.map((port) => ({ host: "127.0.0.1", port })))
  const cycles = await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const queues = yield* Effect.forEach(prefixes, (prefix) => RedisStore.make({ maxUserQueue: 3, redis, prefix }))
        let done = 0
        const end = performance.now() + SECONDS * 1000
        yield* Effect.forEach(
          Array.from({ length: callers }, (_, caller) => caller),
          (caller) =>
            Effect.whileLoop({
              while: () => performance.now() < end,
              body: () => queues[caller % queues.length]!.withSlot(caller, { onFull: "wait" })(Effect.void),
              step: () => void done++
            }),
          { concurrency: "unbounded", discard: true }
        )
        return done
      })
    )
  )
  await redis.quit()
  process.stdout.write(`${cycles}\n`)
}

/** Cycles per second of client processes, one per group of prefixes, the 64 callers shared out (22, 21, 21). */
const cyclesPerSecond = async (ports: ReadonlyArray<number>, groups: ReadonlyArray<ReadonlyArray<string>>) => {
  const script = new URL(import.meta.url).pathname
  const callersOf = (i: number) => Math.floor(CALLERS / groups.length) + (i < CALLERS % groups.length ? 1 : 0)
  const runs = await Promise.all(
    groups.map((prefixes, i) =>
      promisify(execFile)(process.execPath, [
        "--import",
        "tsx",
        script,
        "client",
        ports.join(","),
        prefixes.join(","),
        String(callersOf(i))
      ])
    )
  )
  return runs.reduce((sum, run) => sum + Number(run.stdout.trim()), 0) / SECONDS
}

const main = async () => {
  const cluster = await startCluster(3)
  try {
    // prefixes by the master their slot sits on
    const probe = new Cluster(cluster.masters.map((port) => ({ host: "127.0.0.1", port })))
    const byMaster = new Map<string, Array<string>>()
    for (let i = 0; i < 1000; i++) {
      const slot = Number(await probe.cluster("KEYSLOT", `{spread-${i}}:h`))
      const master = probe.slots[slot]![0]!
      byMaster.set(master, [...(byMaster.get(master) ?? []), `spread-${i}`])
    }
    await probe.quit()
    const masters = Array.from(byMaster.values())
    // fresh prefixes for every measurement: nothing left over from the one before
    let next = 0
    const onOne = () => [0, 1, 2].map(() => masters[0]![next++]!)
    const onEach = () => masters.map((prefixes) => prefixes[next++]!)
    for (let round = 1; round <= ROUNDS; round++) {
      const one = await cyclesPerSecond(cluster.masters, [onOne()])
      const spread = await cyclesPerSecond(cluster.masters, [onEach()])
      const oneBy3 = await cyclesPerSecond(
        cluster.masters,
        onOne().map((prefix) => [prefix])
      )
      const spreadBy3 = await cyclesPerSecond(
        cluster.masters,
        onEach().map((prefix) => [prefix])
      )
      const fmt = (a: number, b: number) => `${Math.round(a)} vs ${Math.round(b)} cycles/s: ${(b / a).toFixed(2)}×`
      console.log(`round ${round}: one client process, one master vs three: ${fmt(one, spread)}`)
      console.log(`round ${round}: three client processes, one master vs three: ${fmt(oneBy3, spreadBy3)}`)
    }
  } finally {
    await cluster.stop()
  }
}

if (process.argv[2] === "client") {
  const [ports, prefixes, callers] = process.argv.slice(3)
  void client(ports!.split(",").map(Number), prefixes!.split(","), Number(callers))
} else void main()
