// Node.js peer of loopd's `http` service: static files with http + fs.createReadStream.
// usage: node static.js ROOT  — listens on 127.0.0.1:0 and prints the port on stdout.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');

const root = path.resolve(process.argv[2] || '.');
const types = { '.html': 'text/html', '.txt': 'text/plain', '.json': 'application/json' };

const server = http.createServer((req, res) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { Allow: 'GET, HEAD' });
    return res.end();
  }
  const file = path.join(root, decodeURIComponent(req.url.split('?')[0]));
  if (!file.startsWith(root + path.sep)) {
    res.writeHead(403);
    return res.end();
  }
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) {
      res.writeHead(err ? 404 : 403);
      return res.end();
    }
    res.writeHead(200, {
      'Content-Type': types[path.extname(file)] || 'application/octet-stream',
      'Content-Length': st.size,
    });
    if (req.method === 'HEAD') return res.end();
    fs.createReadStream(file, { highWaterMark: 64 * 1024 }).pipe(res);
  });
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
