import { Effect } from "effect"
import { Cluster } from "ioredis"
import { cli as askNode, startCluster } from "./setup.js"

/** Asks `port` a question with `redis-cli`: its answer's text ("" if it failed). */
export const cli = (port: number, ...args: ReadonlyArray<string>) => Effect.promise(() => askNode(port, ...args))

/** The ports of the masters of the suite's cluster (`test/cluster/setup.ts`). */
export const clusterPorts = (): ReadonlyArray<number> => {
  const ports = process.env["REDIS_CLUSTER_PORTS"]
  if (ports === undefined) throw new Error("the cluster tests need REDIS_CLUSTER_PORTS (vitest.cluster.config.ts)")
  return ports.split(",").map(Number)
}

/** An ioredis `Cluster` client of the suite's cluster, closed when the scope closes. */
export const clusterClient = Effect.suspend(() => clientOf(clusterPorts()))

/** The port of the master serving `key`'s slot, as `client` (connected) knows the cluster. */
export const masterOf = (client: Cluster, key: string) =>
  Effect.promise(async () => {
    const slot = Number(await client.cluster("KEYSLOT", key))
    return Number(client.slots[slot]![0]!.split(":")[1])
  })

/** A client of `ports` (any of the cluster's nodes), closed when the scope closes. */
export const clientOf = (ports: ReadonlyArray<number>) =>
  Effect.acquireRelease(
    Effect.sync(() => new Cluster(ports.map((port) => ({ host: "127.0.0.1", port })))),
    (client) => Effect.promise(() => client.quit().catch(() => client.disconnect()))
  )

/**
 * A cluster of the test's own (three masters with a replica each, stopped with the scope), two
 * clients of it (two processes), and the ports of the master serving `prefix` and of its replica.
 */
export const failoverCluster = (prefix: string) =>
  Effect.gen(function* () {
    const cluster = yield* Effect.acquireRelease(
      Effect.promise(() => startCluster(3, 1)),
      (started) => Effect.promise(() => started.stop())
    )
    const first = yield* clientOf(cluster.masters)
    const second = yield* clientOf(cluster.masters)
    yield* Effect.promise(() => Promise.all([first.ping(), second.ping()]))
    const master = yield* masterOf(first, `{${prefix}}:h`)
    const replica = Number(/slave0:ip=[^,]+,port=(\d+)/.exec(yield* cli(master, "INFO", "replication"))![1])
    return { first, second, master, replica }
  })
