"""A real SMTP server for the hub's e-mail tests (aiosmtpd on loopback).

Usage: smtp_sink.py MODE CERT KEY OUT_DIR
  MODE: starttls (STARTTLS required before MAIL) or tls (TLS from the first byte).
  Env SMTP_SINK_USER / SMTP_SINK_PASSWORD: when set, AUTH is required and checked.

Binds 127.0.0.1 on a port the OS picks and prints `PORT <n>` on stdout. Each message
received is written to OUT_DIR as <n>.eml (the bytes as received) and <n>.json (parsed
with the standard library: subject decoded, from, to, the envelope, each body part's
content type and decoded text). Runs until killed or stdin closes.
"""

import asyncio
import json
import os
import socket
import ssl
import sys
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # A mailbox the server does not have: a permanent refusal with its code.
        if address.startswith("nobody@"):
            return "550 5.1.1 <" + address + ">: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        raw = envelope.original_content or envelope.content
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                parts.append({"content_type": part.get_content_type(), "multipart": True})
            else:
                parts.append({
                    "content_type": part.get_content_type(),
                    "charset": part.get_content_charset(),
                    "text": part.get_content(),
                })
        parsed = {
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "content_type": msg.get_content_type(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": bool(session.authenticated),
            # STARTTLS sets session.ssl; implicit TLS only shows on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "parts": parts,
        }
        base = os.path.join(self.out_dir, str(self.count))
        with open(base + ".eml", "wb") as f:
            f.write(raw)
        # Written last, under a temporary name: the test reads only complete files.
        with open(base + ".json.tmp", "w", encoding="utf-8") as f:
            json.dump(parsed, f, ensure_ascii=False)
        os.replace(base + ".json.tmp", base + ".json")
        return "250 OK queued"


def authenticator_for(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd answers 535 itself on a failure.
        return AuthResult(success=ok, handled=False)

    return check


async def main():
    mode, cert, key, out_dir = sys.argv[1:5]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    user = os.environ.get("SMTP_SINK_USER")
    password = os.environ.get("SMTP_SINK_PASSWORD")
    handler = Sink(out_dir)
    auth = {}
    if user and password:
        auth = {"authenticator": authenticator_for(user, password), "auth_required": True}

    def factory():
        if mode == "starttls":
            return SMTP(handler, hostname="sink.test", tls_context=ctx, require_starttls=True,
                        auth_require_tls=True, **auth)
        # Implicit TLS: the connection is TLS already, which aiosmtpd's STARTTLS-based
        # check cannot see.
        return SMTP(handler, hostname="sink.test", auth_require_tls=False, **auth)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, sock=sock, ssl=ctx if mode == "tls" else None)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    # Stop when the test (our parent) closes stdin or exits.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
