import { Effect } from "effect"
import { Cluster } from "ioredis"
import { execFile } from "node:child_process"
import { promisify } from "node:util"

const run = promisify(execFile)

/** Asks `port` a question with `redis-cli`, answering its text. */
export const cli = (port: number, ...args: ReadonlyArray<string>) =>
  Effect.promise(() => run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args]).then((out) => out.stdout))

/** The ports of the masters of the suite's cluster (`test/cluster/setup.ts`). */
export const clusterPorts = (): ReadonlyArray<number> => {
  const ports = process.env["REDIS_CLUSTER_PORTS"]
  if (ports === undefined) throw new Error("the cluster tests need REDIS_CLUSTER_PORTS (vitest.cluster.config.ts)")
  return ports.split(",").map(Number)
}

/** An ioredis `Cluster` client of the suite's cluster, closed when the scope closes. */
export const clusterClient = Effect.acquireRelease(
  Effect.sync(() => new Cluster(clusterPorts().map((port) => ({ host: "127.0.0.1", port })))),
  (client) => Effect.promise(() => client.quit().catch(() => client.disconnect()))
)

/** The port of the master serving `key`'s slot, as `client` (connected) knows the cluster. */
export const masterOf = (client: Cluster, key: string) =>
  Effect.promise(async () => {
    const slot = Number(await client.cluster("KEYSLOT", key))
    return Number(client.slots[slot]![0]!.split(":")[1])
  })
