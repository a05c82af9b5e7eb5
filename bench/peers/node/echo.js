'use strict';
// echo: the server side of the network scenarios (pingpong, pingpong100, pound,
// pump, idle_memory): a `net` echo server on 127.0.0.1:0 (`s.on('data', d =>
// s.write(d))`, pausing reads while the write buffer is full). Prints the
// port on stdout (first line), serves `conns` connections, closes the listener
// after the last accept and exits when every connection has closed. The client
// (in the harness) measures.
const net = require('node:net');
const { parseArgs, check } = require('./peer.js');

const { conns } = parseArgs(process.argv.slice(2));
let accepted = 0;
let closed = 0;
const server = net.createServer((s) => {
  accepted++;
  if (accepted === conns) server.close();
  // Backpressure as in stream.pipe(): a write that leaves more than the socket's
  // highWaterMark (16 KiB) buffered returns false; reads pause until 'drain'.
  s.on('data', (d) => {
    if (!s.write(d)) {
      s.pause();
      s.once('drain', () => s.resume());
    }
  });
  s.on('error', () => {}); // a reset by the client (pound) just closes the socket
  s.on('close', () => closed++);
});
server.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.on('exit', () => {
  check(accepted === conns && closed === conns, `accepted ${accepted}, closed ${closed} of ${conns}`);
  process.stdout.write(JSON.stringify({ accepted }) + '\n');
});
