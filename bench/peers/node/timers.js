'use strict';
// timers: libuv's benchmark-million-timers.c in Node: n setTimeout calls, the
// timeout 1 ms for the first 1000, 2 ms for the next 1000, ...; done when the
// last one has fired. Node keeps one list per distinct duration (1000 lists
// here) on top of a single libuv timer, and a fired timer needs no close.
const { parseArgs, now, seconds, emit, check } = require('./peer.js');

const { n } = parseArgs(process.argv.slice(2));
let fired = 0;
let beforeRun;

function onTimeout() {
  fired++;
  if (fired === n) {
    const end = now();
    emit('timers', n, seconds(beforeAll, end), {
      init_seconds: seconds(beforeAll, beforeRun),
      dispatch_seconds: seconds(beforeRun, end),
    });
  }
}

const beforeAll = now();
let timeout = 0;
for (let i = 0; i < n; i++) {
  if (i % 1000 === 0) timeout++;
  setTimeout(onTimeout, timeout);
}
beforeRun = now();
process.on('exit', () => check(fired === n, `fired ${fired} of ${n}`));
