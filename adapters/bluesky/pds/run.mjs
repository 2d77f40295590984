// hashbridge's local AT Protocol network for tests and the demo: an in-memory PLC
// directory and the reference PDS, in this one Node process, on 127.0.0.1 only.
//
// adapters/bluesky/testserver.py runs it with `node --input-type=module -e <this file>`
// from the folder that holds node_modules (.bluesky/), so bare imports resolve there.
// Input (environment): DATA_DIR (required: the PDS's SQLite files and blobs),
// PDS_RATE_LIMITS_ENABLED=true (off by default, as in the PDS's own dev setup),
// PDS_PORT and LISTEN_PORT (default: one free port for both): the PDS names
// http://localhost:PDS_PORT in its DID documents (clients follow it after login)
// and listens on LISTEN_PORT, so a fault proxy can stand on PDS_PORT.
// Output: one JSON line on stdout once both servers listen; then it runs until
// SIGTERM/SIGINT, when it closes both servers and exits.
import net from 'node:net'
import path from 'node:path'
import { Secp256k1Keypair } from '@atproto/crypto'
import * as plc from '@did-plc/server'
import { PDS } from '@atproto/pds'

const HOST = '127.0.0.1'
const dataDir = process.env.DATA_DIR
if (!dataDir) throw new Error('DATA_DIR is required')

// Both servers call app.listen(port), which binds every interface: add the host
// (and, where given, the port to listen on instead).
const onLoopback = (app, listenPort) => {
  const listen = app.listen.bind(app)
  app.listen = (port, ...rest) => listen(listenPort ?? port, HOST, ...rest)
}

const freePort = () => new Promise((resolve, reject) => {
  const srv = net.createServer().on('error', reject)
  srv.listen(0, HOST, () => { const { port } = srv.address(); srv.close(() => resolve(port)) })
})

const plcPort = await freePort()
const pdsPort = Number(process.env.PDS_PORT) || (await freePort())
const listenPort = Number(process.env.LISTEN_PORT) || pdsPort

const plcServer = plc.PlcServer.create({ db: plc.Database.mock(), port: plcPort })
onLoopback(plcServer.app)
await plcServer.start()

const rotationKey = await Secp256k1Keypair.create({ exportable: true })
const recoveryKey = await Secp256k1Keypair.create()
const pds = await PDS.fromEnv({
  devMode: true,
  hostname: 'localhost', // public URL http://localhost:<port>; `localhost` is 127.0.0.1 here
  port: pdsPort,
  dataDirectory: dataDir,
  blobstoreDiskLocation: path.join(dataDir, 'blobs'),
  didPlcUrl: `http://localhost:${plcPort}`,
  recoveryDidKey: recoveryKey.did(),
  plcRotationKeyK256PrivateKeyHex: Buffer.from(await rotationKey.export()).toString('hex'),
  adminPassword: 'admin-pass',
  jwtSecret: 'jwt-secret',
  serviceHandleDomains: ['.test'],
  inviteRequired: false,
  disableSsrfProtection: true,
  rateLimitsEnabled: process.env.PDS_RATE_LIMITS_ENABLED === 'true',
  crawlers: [], // tell no relay about us
})
onLoopback(pds.app, listenPort)
await pds.start()

console.log(JSON.stringify({
  pds: `http://localhost:${pdsPort}`,
  plc: `http://localhost:${plcPort}`,
  firehose: `ws://localhost:${pdsPort}/xrpc/com.atproto.sync.subscribeRepos`,
  listen: `http://localhost:${listenPort}`,
  pid: process.pid,
}))

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  try {
    await pds.destroy()
    await plcServer.destroy()
  } finally {
    process.exit(0)
  }
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
