'use strict';
// Shared helpers of the Node.js peers of loopd-bench: argument parsing and the
// one JSON result line every peer prints on stdout.

function parseArgs(argv) {
  const args = { n: 0, inflight: 1, conns: 1, chunk: 65536, file: null, sum: null };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    if (key === '--file' && argv[i + 1] !== undefined) {
      args.file = argv[i + 1];
      continue;
    }
    if (key === '--sum' && /^[0-9]+$/.test(argv[i + 1] || '')) {
      args.sum = BigInt(argv[i + 1]);
      continue;
    }
    const value = Number(argv[i + 1]);
    if (!['--n', '--inflight', '--conns', '--chunk'].includes(key) ||
        !Number.isSafeInteger(value) || value <= 0) {
      process.stderr.write(`node-peer: bad argument ${key} ${argv[i + 1]}\n` +
        'usage: node SCENARIO.js --n N [--inflight K] [--conns C] ' +
        '[--chunk B --file PATH --sum S]\n');
      process.exit(64);
    }
    args[key.slice(2)] = value;
  }
  if (args.n === 0) {
    process.stderr.write('node-peer: --n is required\n');
    process.exit(64);
  }
  return args;
}

function now() {
  return process.hrtime.bigint();
}

function seconds(from, to) {
  return Number(to - from) / 1e9;
}

function emit(scenario, ops, secs, extra = {}) {
  const line = {
    scenario,
    peer: 'node',
    ops,
    seconds: secs,
    extra: { node_version: process.version, ...extra },
  };
  process.stdout.write(JSON.stringify(line) + '\n');
}

function check(cond, what) {
  if (!cond) {
    process.stderr.write(`node-peer: check failed: ${what}\n`);
    process.exit(2);
  }
}

module.exports = { parseArgs, now, seconds, emit, check };
