'use strict';
// fs_read: sequential file read through Node's async fs with callbacks (not streams):
// fs.open, then fs.read of one chunk at a time at the running position into one
// Buffer (each read a libuv pool round trip, as uv_fs_read), until a read returns 0,
// then fs.close. Checks the byte count (n chunks) and the checksum: the sum of the
// bytes at file offsets divisible by 64, as every peer computes it (below 2^53 for
// any file this harness writes, so a Number holds it exactly).
const fs = require('node:fs');
const { parseArgs, now, seconds, emit, check } = require('./peer.js');

const STRIDE = 64;
const { n, chunk, file, sum: wantSum } = parseArgs(process.argv.slice(2));
check(file !== null, '--file is required');
check(wantSum !== null, '--sum is required');
const buf = Buffer.allocUnsafe(chunk);
let offset = 0;
let sum = 0;
let reads = 0;
let begin;

function onRead(err, got) {
  check(!err, `read failed: ${err}`);
  reads++;
  if (got === 0) {
    fs.close(fd, onClose);
    return;
  }
  for (let i = (STRIDE - (offset % STRIDE)) % STRIDE; i < got; i += STRIDE) sum += buf[i];
  offset += got;
  fs.read(fd, buf, 0, chunk, offset, onRead);
}

function onClose(err) {
  check(!err, `close failed: ${err}`);
  const secs = seconds(begin, now());
  check(offset === n * chunk, `read ${offset} of ${n * chunk} bytes`);
  check(BigInt(sum) === wantSum, `checksum ${sum}, expected ${wantSum}`);
  emit('fs_read', n, secs, {
    bytes: offset,
    reads,
    chunk,
    threadpool_size: process.env.UV_THREADPOOL_SIZE || 'default',
  });
}

let fd;
begin = now();
fs.open(file, 'r', (err, f) => {
  check(!err, `open failed: ${err}`);
  fd = f;
  fs.read(fd, buf, 0, chunk, offset, onRead);
});
