// KafkaJS against Keel: one scenario per invocation, its findings as one JSON
// line on stdout for tests/interop/test_kafkajs.py to check. Usage:
//   node client.js BROKER admin TOPIC
//   node client.js BROKER produce TOPIC COUNT FIRST
//   node client.js BROKER consume-split TOPIC GROUP COUNT
//   node client.js BROKER consume TOPIC GROUP COUNT
//   node client.js BROKERS stream TOPIC GROUP COUNT   (BROKERS comma-separated)
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1'
const { Kafka, logLevel, CompressionTypes } = require('kafkajs')

const [broker, scenario, ...args] = process.argv.slice(2)
const kafka = new Kafka({
  clientId: 'keel-interop',
  brokers: broker.split(','),
  logLevel: process.env.KAFKAJS_LOG ? logLevel.INFO : logLevel.ERROR,
  retry: { retries: 8 }
})

async function admin (topic) {
  const a = kafka.admin()
  await a.connect()
  const out = {}
  out.created = await a.createTopics({
    topics: [{ topic, numPartitions: 3, configEntries: [{ name: 'retention.ms', value: '3600000' }] }]
  })
  // KafkaJS answers false for a topic that already exists.
  out.createdAgain = await a.createTopics({ topics: [{ topic, numPartitions: 3 }] })
  try {
    await a.createTopics({ topics: [{ topic: 'bad name!', numPartitions: 1 }] })
    out.badName = 'accepted'
  } catch (e) {
    out.badName = e.type || (e.errors && e.errors[0] && e.errors[0].type) || String(e)
  }
  out.listed = (await a.listTopics()).includes(topic)
  await a.createPartitions({ topicPartitions: [{ topic, count: 5 }] })
  const meta = await a.fetchTopicMetadata({ topics: [topic] })
  out.partitions = meta.topics[0].partitions.map(p => [p.partitionId, p.leader]).sort((x, y) => x[0] - y[0])
  await a.alterConfigs({
    resources: [{ type: 2, name: topic, configEntries: [{ name: 'retention.ms', value: '7200000' }] }]
  })
  const described = await a.describeConfigs({
    resources: [{ type: 2, name: topic, configNames: ['retention.ms', 'cleanup.policy'] }]
  })
  out.configs = Object.fromEntries(described.resources[0].configEntries.map(c => [c.configName, c.configValue]))
  out.offsets = (await a.fetchTopicOffsets(topic)).map(p => [p.partition, p.low, p.high]).sort((x, y) => x[0] - y[0])
  const cluster = await a.describeCluster()
  out.brokers = cluster.brokers.map(b => b.nodeId)
  out.controller = cluster.controller
  await a.deleteTopics({ topics: [topic] })
  out.listedAfterDelete = (await a.listTopics()).includes(topic)
  await a.disconnect()
  return out
}

async function produce (topic, count, first) {
  const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await p.connect()
  const sent = []
  for (let i = first; i < first + count; i += 10) {
    const messages = []
    for (let j = i; j < Math.min(i + 10, first + count); j++) {
      messages.push({ key: `k${j % 17}`, value: `v${j}`, headers: { n: `${j}` } })
    }
    const r = await p.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages })
    for (const m of r) sent.push([m.partition, m.baseOffset, m.errorCode])
  }
  await p.disconnect()
  return { sent }
}

// Consumers in one group, each collecting what it gets, until `count` records
// have arrived in all; then every member leaves, committing on the way out.
async function consume (topic, group, count, members) {
  const consumers = []
  const got = []
  let done
  const all = new Promise(resolve => { done = resolve })
  for (let m = 0; m < members; m++) {
    const c = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 })
    await c.connect()
    await c.subscribe({ topic, fromBeginning: true })
    got.push([])
    consumers.push(c)
  }
  for (let m = 0; m < members; m++) {
    consumers[m].run({
      eachMessage: async ({ partition, message }) => {
        got[m].push([partition, Number(message.offset), message.key.toString(), message.value.toString(),
          message.headers.n.toString()])
        if (got.reduce((n, g) => n + g.length, 0) >= count) done()
      }
    })
  }
  await all
  for (const c of consumers) await c.disconnect()
  const a = kafka.admin()
  await a.connect()
  const committed = await a.fetchOffsets({ groupId: group, topics: [topic] })
  const groups = await a.describeGroups([group])
  await a.disconnect()
  return {
    got,
    committed: committed[0].partitions.map(p => [p.partition, Number(p.offset)]).sort((x, y) => x[0] - y[0]),
    state: groups.groups[0].state
  }
}

// An idempotent acks=all producer paced at ~500 records/s and a group member
// reading alongside, both kept running through whatever the test does to the
// brokers meanwhile (a leader's kill -9): no client is restarted. Reports
// where each record was acknowledged and what the consumer saw.
async function stream (topic, group, count) {
  const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await p.connect()
  const c = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 })
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  const seen = new Map()
  const reads = [] // [partition, offset, value], in the order read
  let received = 0
  let done
  const all = new Promise(resolve => { done = resolve })
  c.run({
    eachMessage: async ({ partition, message }) => {
      received++
      seen.set(message.value.toString(), [partition, Number(message.offset)])
      reads.push([partition, Number(message.offset), message.value.toString()])
      if (seen.size >= count) done()
    }
  })
  let acked = 0
  const acks = [] // [value, partition, offset]
  // Progress on stderr, for a test that has to say where a run stalled.
  const progress = setInterval(() => {
    const missing = []
    for (let j = 0; j < acked && missing.length < 10; j++) if (!seen.has(`v${j}`)) missing.push(j)
    process.stderr.write(`progress acked=${acked} seen=${seen.size} missing=${missing}\n`)
  }, 1000)
  for (let i = 0; i < count; i += 10) {
    // Each send() to one partition: KafkaJS 2.2.4 keeps, across the retries
    // of one send(), the answers of brokers that succeeded, so when a failed
    // partition's new leader is such a broker its records are never sent and
    // send() still resolves (kafkajs#1303, fixed by kafkajs PR #1798). A
    // send() to several leaders can lose records on any broker when a leader dies.
    const partition = (i / 10) % 3
    const messages = []
    for (let j = i; j < Math.min(i + 10, count); j++) messages.push({ key: `k${j % 13}`, value: `v${j}`, partition })
    // Resolves once every record of the call is acknowledged (retrying as needed).
    const [r] = await p.send({ topic, acks: -1, messages })
    messages.forEach((m, k) => acks.push([m.value, r.partition, Number(r.baseOffset) + k]))
    acked += messages.length
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  await all
  clearInterval(progress)
  await c.disconnect()
  await p.disconnect()
  return { acked, seen: Object.fromEntries(seen), received, acks, reads }
}

async function main () {
  switch (scenario) {
    case 'admin': return admin(args[0])
    case 'produce': return produce(args[0], Number(args[1]), Number(args[2]))
    case 'consume-split': return consume(args[0], args[1], Number(args[2]), 2)
    case 'consume': return consume(args[0], args[1], Number(args[2]), 1)
    case 'stream': return stream(args[0], args[1], Number(args[2]))
    default: throw new Error(`unknown scenario ${scenario}`)
  }
}

main().then(
  // Exit once the answer is written: stdout to a pipe is asynchronous in
  // Node, and exiting at once cut a long answer at 128 KiB.
  out => { process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0)) },
  e => { process.stderr.write(`kafkajs ${scenario} failed: ${e.stack || e}\n`); process.exit(1) }
)
