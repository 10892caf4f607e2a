// A js-libp2p peer for interop tests with p2pd: TCP (Noise, yamux) and QUIC-v1 on 127.0.0.1,
// identify and ping. Prints one JSON object per line on stdout:
//   {"event":"listening","peer_id":..., "addrs":[...]}
//   {"event":"identified","peer_id":..., "agent":..., "protocols":[...]}   for every peer identified
//   {"event":"pinged","addr":..., "rtt_ms":...}                              after --dial ADDR
//   {"event":"error", "message":...}
//   {"event":"message","topic":...,"from":...,"data":...,"seqno":...}        for every pub/sub message
// Commands on stdin, one per line: "dial ADDR" (dial and ping), "sub TOPIC", "pub TOPIC DATA",
// and "quit".
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { quic } from '@chainsafe/libp2p-quic'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { gossipsub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import readline from 'node:readline'

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/udp/0/quic-v1'] },
  transports: [tcp(), quic()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify({ agentVersion: 'js-interop-peer' }),
    ping: ping(),
    pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', allowPublishToZeroTopicPeers: false })
  }
})

node.addEventListener('peer:identify', (evt) => {
  const d = evt.detail
  out({ event: 'identified', peer_id: d.peerId.toString(), agent: d.agentVersion, protocols: d.protocols })
})

node.services.pubsub.addEventListener('message', (evt) => {
  const m = evt.detail
  out({
    event: 'message',
    topic: m.topic,
    from: m.from ? m.from.toString() : null,
    data: new TextDecoder().decode(m.data),
    seqno: m.sequenceNumber !== undefined ? m.sequenceNumber.toString() : null
  })
})

await node.start()
out({ event: 'listening', peer_id: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })

const rl = readline.createInterface({ input: process.stdin })
for await (const line of rl) {
  const [cmd, arg, ...rest] = line.trim().split(/\s+/)
  if (cmd === 'quit') break
  if (cmd === 'sub') {
    node.services.pubsub.subscribe(arg)
    out({ event: 'subscribed', topic: arg })
    continue
  }
  if (cmd === 'pub') {
    try {
      const r = await node.services.pubsub.publish(arg, new TextEncoder().encode(rest.join(' ')))
      out({ event: 'published', topic: arg, recipients: r.recipients.map(String) })
    } catch (e) {
      out({ event: 'error', topic: arg, message: String(e && e.message || e) })
    }
    continue
  }
  if (cmd !== 'dial') continue
  try {
    const ma = multiaddr(arg)
    const rtt = await node.services.ping.ping(ma, { signal: AbortSignal.timeout(10000) })
    out({ event: 'pinged', addr: arg, rtt_ms: rtt })
  } catch (e) {
    out({ event: 'error', addr: arg, message: String(e && e.message || e) })
  }
}
await node.stop()
process.exit(0)
