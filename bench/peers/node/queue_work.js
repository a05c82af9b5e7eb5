'use strict';
// queue_work: thread-pool jobs from the loop, `inflight` kept in flight until n
// have completed. Node exposes no bare uv_queue_work to JS; the smallest job that
// runs on libuv's pool is crypto.pbkdf2 with 1 iteration and a 1-byte key (one
// HMAC-SHA1, well under a microsecond), so this measures Node's pool round trip
// *including* the JS -> C++ binding, the job object and the Buffer result.
const crypto = require('node:crypto');
const { parseArgs, now, seconds, emit, check } = require('./peer.js');

const { n, inflight: wanted } = parseArgs(process.argv.slice(2));
const inflight = Math.min(wanted, n);
const password = Buffer.from('loopd');
const salt = Buffer.from('bench');
let started = 0;
let completed = 0;

function afterWork(err) {
  check(!err, `pbkdf2 failed: ${err}`);
  completed++;
  if (started < n) {
    started++;
    crypto.pbkdf2(password, salt, 1, 1, 'sha1', afterWork);
  } else if (completed === n) {
    emit('queue_work', n, seconds(begin, now()), {
      inflight,
      job: 'crypto.pbkdf2 sha1 1 iteration',
      threadpool_size: process.env.UV_THREADPOOL_SIZE || 'default',
    });
  }
}

const begin = now();
for (let i = 0; i < inflight; i++) {
  started++;
  crypto.pbkdf2(password, salt, 1, 1, 'sha1', afterWork);
}
process.on('exit', () => check(completed === n, `completed ${completed} of ${n}`));
