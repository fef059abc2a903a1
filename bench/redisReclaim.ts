import { Duration, Effect } from "effect"
import { spawn } from "node:child_process"
import { once } from "node:events"
import { setTimeout as sleep } from "node:timers/promises"
import { fileURLToPath } from "node:url"
import { LIMIT, median } from "./harness.js"
import { withPeers, redisUrl, type HolderArgs, type RedisPeers } from "./redisPeers.js"
import { num, type Benchmark } from "./report.js"

const OURS = "QueueManager, Redis store (lease renewed every third of a lease)"
const PEER = "redis-semaphore (`lockTimeout` = the lease, refreshed every 0.8 of it)"

/** The killed process's user. */
const USER = 1

/** How often the survivor tries to take the freed slots. */
const PROBE_MILLIS = 5

const holderScript = fileURLToPath(new URL("./redisHolder.js", import.meta.url))

/** Starts `bench/redisHolder.ts` and waits until it holds every slot of the user. */
const startHolder = async (kind: "ours" | "peer", args: HolderArgs) => {
  const child = spawn(process.execPath, [holderScript, kind, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`the ${kind} holder exited (${String(code)}) before it held its slots`)
  })
  await Promise.race([once(child.stdout, "data"), exited])
  exited.catch(() => {})
  return child
}

/** Takes one slot of the user if it is free: the survivor's probe. */
type Probe = () => Promise<boolean>

/**
 * One sample: a holder process takes all `LIMIT` slots, is killed with SIGKILL at a random
 * point of its renewal cycle, and the survivor probes every `PROBE_MILLIS` until it has taken
 * every slot again. Milliseconds from the kill to the last slot taken.
 */
const reclaimOnce = async (kind: "ours" | "peer", args: HolderArgs, probe: Probe, giveBack: () => Promise<void>) => {
  const child = await startHolder(kind, args)
  await sleep(Math.random() * args.leaseMillis)
  child.kill("SIGKILL")
  const killedAt = performance.now()
  await once(child, "exit")
  let taken = 0
  while (taken < args.limit) {
    if (await probe()) taken++
    else await sleep(PROBE_MILLIS)
  }
  const millis = performance.now() - killedAt
  await giveBack()
  return millis
}

const ourSample = async (peers: RedisPeers, leaseMillis: number) => {
  const args: HolderArgs = { redis: redisUrl, prefix: peers.newPrefix(), user: USER, limit: LIMIT, leaseMillis }
  const queue = await peers.ours({ prefix: args.prefix, maxUserQueue: LIMIT, leaseTime: Duration.millis(leaseMillis) })
  return reclaimOnce(
    "ours",
    args,
    () => Effect.runPromise(queue.tryAcquire(USER)),
    () => Effect.runPromise(Effect.repeatN(queue.release(USER), LIMIT - 1))
  )
}

const peerSample = async (peers: RedisPeers, leaseMillis: number) => {
  const args: HolderArgs = { redis: redisUrl, prefix: peers.prefix, user: USER, limit: LIMIT, leaseMillis }
  const taken: Array<ReturnType<RedisPeers["semaphore"]>> = []
  return reclaimOnce(
    "peer",
    args,
    async () => {
      const semaphore = peers.semaphore(USER, LIMIT, { lockTimeout: leaseMillis })
      const ok = await semaphore.tryAcquire()
      if (ok) taken.push(semaphore)
      return ok
    },
    async () => {
      for (const semaphore of taken.splice(0)) await semaphore.release()
    }
  )
}

/**
 * Issue 4, item 8: how long the slots of a process killed with SIGKILL take to come back,
 * with no cleanup by anyone, against redis-semaphore's lock expiry.
 */
export const redisReclaim: Benchmark = {
  id: "redis-reclaim",
  needsRedis: true,
  rows: [OURS, PEER],
  run: async (quick) => {
    const leaseMillis = quick ? 600 : 2_000
    const repeats = quick ? 1 : 5
    return withPeers(async (peers) => {
      const ours: Array<number> = []
      const peer: Array<number> = []
      for (let i = 0; i < repeats; i++) {
        ours.push(await ourSample(peers, leaseMillis))
        peer.push(await peerSample(peers, leaseMillis))
      }
      const cells = (times: ReadonlyArray<number>) => [
        `${num(median(times))} ms`,
        `${num(Math.max(...times))} ms`,
        `${num(Math.max(...times) / leaseMillis, 2)}`
      ]
      return {
        title: "10. Redis: the slots of a killed process come back by themselves",
        setup:
          `A separate Node process takes all ${LIMIT} slots of a user (lease ${num(leaseMillis)} ms), then is killed with ` +
          `SIGKILL at a random moment within a lease time (so at a random point of its renewal cycle). This process ` +
          `then tries to take the user's slots every ${PROBE_MILLIS} ms (\`tryAcquire\` / redis-semaphore's ` +
          `\`tryAcquire()\` with the same \`lockTimeout\`) until it has all ${LIMIT}; the time is from the kill to the ` +
          `last slot taken. ${repeats} kill(s) per contender, alternating. Nobody cleans up: the leases expire.`,
        header: ["contender", "median", "longest", "longest, in lease times"],
        rows: [
          [OURS, ...cells(ours)],
          [PEER, ...cells(peer)]
        ],
        targets: [
          {
            what: "Redis: a killed process's slots free again, QueueManager (longest)",
            goal: `≤ 1 lease time (+ the ${PROBE_MILLIS} ms between probes)`,
            value: `${num(Math.max(...ours))} ms of ${num(leaseMillis)}`,
            met: Math.max(...ours) <= leaseMillis + PROBE_MILLIS
          }
        ],
        notes: []
      }
    })
  }
}
