#!/usr/bin/env python3
"""Dev server for board work before the hub serves it: serves BOARD_DIR at / and /board/*,
proxies everything else (/api/v1/..., incl. the SSE stream) to a running hub.
usage: devserve.py BOARD_DIR HUB_BASE PORT   e.g. devserve.py hub/board http://127.0.0.1:18080 18180"""
import http.client, mimetypes, os, sys, urllib.parse
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

BOARD, HUB, PORT = sys.argv[1], urllib.parse.urlparse(sys.argv[2]), int(sys.argv[3])

class H(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def static(self, rel):
        p = os.path.normpath(os.path.join(BOARD, rel))
        if not p.startswith(os.path.abspath(BOARD)) and not p.startswith(BOARD) or not os.path.isfile(p):
            self.send_response(404); self.send_header('content-length', '0'); self.end_headers(); return
        body = open(p, 'rb').read()
        ct = mimetypes.guess_type(p)[0] or 'application/octet-stream'
        if p.endswith('.js'): ct = 'text/javascript'
        self.send_response(200); self.send_header('content-type', ct)
        self.send_header('content-length', str(len(body))); self.send_header('cache-control', 'no-cache')
        self.end_headers(); self.wfile.write(body)
    def proxy(self):
        n = int(self.headers.get('content-length') or 0)
        body = self.rfile.read(n) if n else None
        c = http.client.HTTPConnection(HUB.hostname, HUB.port, timeout=3600)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ('host', 'connection')}
        c.request(self.command, self.path, body=body, headers=hdrs)
        r = c.getresponse()
        self.send_response(r.status)
        stream = 'event-stream' in (r.getheader('content-type') or '')
        for k, v in r.getheaders():
            if k.lower() in ('transfer-encoding', 'connection', 'content-length'): continue
            self.send_header(k, v)
        if stream:
            self.send_header('connection', 'close'); self.end_headers()
            try:
                while True:
                    chunk = r.read1(65536)
                    if not chunk: break
                    self.wfile.write(chunk); self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError): pass
            self.close_connection = True
        else:
            data = r.read(); self.send_header('content-length', str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        path = urllib.parse.urlparse(self.path).path
        if path == '/': return self.static('index.html')
        if path.startswith('/board/'): return self.static(path[len('/board/'):])
        return self.proxy()
    do_POST = do_DELETE = do_PUT = proxy

ThreadingHTTPServer(('127.0.0.1', PORT), H).serve_forever()
