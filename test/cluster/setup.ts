/**
 * Vitest global setup of `vitest.cluster.config.ts`: a Redis Cluster of three masters on free
 * loopback ports, made with `redis-cli --cluster create`, for the contract suite to run on;
 * its ports go to the tests as `REDIS_CLUSTER_PORTS`. Its servers are stopped by pid at the end.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import path from "node:path"
import { promisify } from "node:util"

const run = promisify(execFile)

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

/** Asks `port` a question with `redis-cli`: its answer's text, or "" if it failed. */
export const cli = (port: number, ...args: ReadonlyArray<string>) =>
  run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args]).then(
    (out) => out.stdout,
    () => ""
  )

/** A running cluster: its masters' and replicas' ports, and how to stop it. */
export interface LocalCluster {
  readonly masters: ReadonlyArray<number>
  readonly replicas: ReadonlyArray<number>
  readonly stop: () => Promise<void>
}

/**
 * A Redis Cluster on free loopback ports: `masters` masters with `replicas` replicas each, made
 * with `redis-cli --cluster create`, once every node says the cluster is ok. `stop` kills its
 * servers by pid and removes their files.
 */
export const startCluster = async (masters: number, replicas = 0): Promise<LocalCluster> => {
  const dir = await mkdtemp(path.join(tmpdir(), "eqm-cluster-"))
  const servers: Array<ChildProcess> = []
  const ports: Array<number> = []
  const stop = async () => {
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (server.exitCode !== null || server.signalCode !== null) return resolve()
            server.once("exit", () => resolve())
            server.kill("SIGKILL")
          })
      )
    )
    await rm(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort()
      const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir]
      const cluster = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        path.join(dir, `nodes-${port}.conf`),
        "--cluster-node-timeout",
        "2000",
        // a replica's first sync starts at once, not after the default 5 s wait for other replicas
        "--repl-diskless-sync-delay",
        "0"
      ]
      servers.push(spawn("redis-server", [...args, ...cluster], { stdio: "ignore" }))
      ports.push(port)
    }
    for (const port of ports) {
      for (let attempt = 0; (await cli(port, "PING")).trim() !== "PONG"; attempt++) {
        if (attempt > 100) throw new Error(`redis-server on port ${port} did not start`)
        await sleep(50)
      }
    }
    const nodes = ports.map((port) => `127.0.0.1:${port}`)
    await run("redis-cli", ["--cluster", "create", ...nodes, "--cluster-replicas", String(replicas), "--cluster-yes"])
    for (let attempt = 0; ; attempt++) {
      const states = await Promise.all(ports.map((port) => cli(port, "CLUSTER", "INFO")))
      if (states.every((info) => info.includes("cluster_state:ok"))) break
      if (attempt > 100) throw new Error(`the cluster on ${ports.join(", ")} never became ok`)
      await sleep(100)
    }
  } catch (error) {
    await stop()
    throw error
  }
  // redis-cli makes the first `masters` nodes the masters
  return { masters: ports.slice(0, masters), replicas: ports.slice(masters), stop }
}

/** The suite's cluster: three masters, their ports in `REDIS_CLUSTER_PORTS`. */
export default async function setup(): Promise<() => Promise<void>> {
  const cluster = await startCluster(3)
  process.env["REDIS_CLUSTER_PORTS"] = cluster.masters.join(",")
  return cluster.stop
}
