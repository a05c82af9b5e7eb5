'use strict';
// async1: a ping-pong between the main thread and one worker_threads Worker over
// its MessagePort (Node's cross-thread wake-up, built on uv_async_send), n round
// trips. Not the same primitive as libuv's async1: each message is also
// serialized, queued and delivered to JS. The clock starts at the worker's first
// message, so the worker's start-up (tens of ms) is not counted.
const { Worker, isMainThread, parentPort } = require('node:worker_threads');

if (isMainThread) {
  const { parseArgs, now, seconds, emit, check } = require('./peer.js');
  const { n } = parseArgs(process.argv.slice(2));
  const worker = new Worker(__filename);
  let seen = -1; // the first message is the worker's hello
  let start;
  worker.on('message', () => {
    if (seen === -1) start = now();
    seen++;
    if (seen < n) {
      worker.postMessage(0);
    } else {
      const end = now();
      worker.postMessage(-1);
      emit('async1', n, seconds(start, end), { transport: 'worker_threads MessagePort' });
    }
  });
  worker.on('error', (e) => check(false, `worker error ${e}`));
  process.on('exit', () => check(seen === n, `saw ${seen} of ${n}`));
} else {
  parentPort.on('message', (m) => {
    if (m === -1) parentPort.close();
    else parentPort.postMessage(0);
  });
  parentPort.postMessage(0);
}
